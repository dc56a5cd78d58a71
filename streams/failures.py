"""The failure policy, in one place.

- A store or broker that is down is *retried* (with backoff, for as long as it takes):
  the batch's offsets stay uncommitted, so nothing is lost and nothing is skipped.
- Anything else is a bug or a poison message: the batch is split and retried message by
  message, and only the message that still fails goes to the dead-letter topic with reason
  ``processing_error``, logged with its topic, partition and offset. The worker keeps going.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from profiles import StoreUnavailable
from streams.metrics import Metrics
from triggers import BatchResult, DeadLetter, Incoming
from triggers.engine import ConcurrentUpdate

__all__ = ["RETRYABLE", "is_retryable", "process_safely", "retry_forever"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: errors that mean "try again later", never "this message is bad"
RETRYABLE: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    ConcurrentUpdate,
    KafkaError,
    ConnectionError,
    TimeoutError,
)


#: broker errors that no retry passes: a record larger than the producer or broker takes
TOO_LARGE: tuple[type[BaseException], ...] = (MessageSizeTooLargeError,)


def is_retryable(exc: BaseException) -> bool:
    """An outage to wait out, as opposed to a message or state that is bad."""
    # faust wraps producer failures in its own ProducerSendError (from KafkaError)
    return not is_too_large(exc) and _caused_by(exc, RETRYABLE)


def is_too_large(exc: BaseException) -> bool:
    """A record the broker refuses for its size: waiting changes nothing."""
    return _caused_by(exc, TOO_LARGE)


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """``exc``, or the error it was raised from, is one of ``kinds``."""
    return isinstance(exc, kinds) or isinstance(exc.__cause__, kinds)


async def retry_forever(
    action: Callable[[], Awaitable[T]],
    *,
    stage: str,
    metrics: Metrics,
    first_delay: float = 0.2,
    max_delay: float = 10.0,
) -> T:
    delay = first_delay
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            metrics.retries.labels(stage).inc()
            metrics.failed(stage, exc)
            log.warning("%s failed (%s); retrying in %.1fs", stage, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


Process = Callable[[Sequence[Incoming]], Awaitable[BatchResult]]
PublishDeadLetter = Callable[[DeadLetter], Awaitable[None]]


async def process_safely(
    process: Process,
    dead_letter: PublishDeadLetter,
    batch: Sequence[Incoming],
    metrics: Metrics,
) -> BatchResult:
    """Process ``batch`` durably; never raise for a bad message, never drop one.

    ``process`` is one attempt; between attempts nothing is held (the caller's lock is
    taken per attempt, so an outage does not block the timer sweep, nor it this).
    """
    try:
        return await retry_forever(partial(process, batch), stage="batch", metrics=metrics)
    except Exception:
        log.exception("batch of %d failed; retrying message by message", len(batch))
    merged = BatchResult()
    for message in batch:
        try:
            result = await retry_forever(
                partial(process, [message]), stage="message", metrics=metrics
            )
        except Exception as exc:
            log.exception(
                "dead-lettering %s[%d]@%d",
                message.topic,
                message.partition,
                message.offset,
                extra=_where(message),
            )
            letter = DeadLetter(
                key=message.key,
                value=message.value,
                reason="processing_error",
                detail=f"{type(exc).__name__}: {exc}",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            await _publish_dead_letter(dead_letter, letter, metrics)
            result = BatchResult(dead_letters=[letter])
        merged.add(result)
    return merged


async def _publish_dead_letter(
    dead_letter: PublishDeadLetter, letter: DeadLetter, metrics: Metrics
) -> None:
    """Publish ``letter``; one the broker refuses for its size goes with the start of
    its value only (its detail says so), rather than holding the partition forever."""
    try:
        await retry_forever(partial(dead_letter, letter), stage="dead_letter", metrics=metrics)
    except Exception as exc:
        if not is_too_large(exc):
            raise
        cut = letter.cut()
        await retry_forever(partial(dead_letter, cut), stage="dead_letter", metrics=metrics)


def _where(message: Incoming) -> dict[str, Any]:
    """The fields of a JSON log line that say which message it is about (the key is the
    user id: events are keyed by it)."""
    where: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
    }
    if message.key:
        where["user_id"] = message.key.decode(errors="replace")
    return where

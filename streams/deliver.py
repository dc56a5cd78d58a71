"""One send request, from claim to settled: the mailer's delivery policy in one place.

- **2xx** to the message: delivered.
- **5xx**: reported to the send-failures topic (``hard_bounce`` to RCPT, with a
  ``bounce`` event; ``rejected`` to MAIL or the message). Never retried.
- **4xx**: retried with exponential backoff and jitter, up to ``max_attempts`` answers;
  then reported ``deferred``.
- **No server** (refused, lost or timed out before DATA): retried without limit, the
  wait capped at ``max_delay``: an outage delays mail, never drops it.
- **Cut off after DATA began**: reported ``interrupted``, never resent (see
  :mod:`streams.smtp`).

Every outcome is written to the ledger (:mod:`streams.deliveries`) before the caller
commits the offset; a failure is written, then reported, then marked reported, so a
crash between the two repeats the report rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError

from streams.deliveries import Delivery, DeliveryLedger, LedgerUnavailable
from streams.errors import StreamsError
from streams.mailer_metrics import MailerMetrics
from streams.mime import MessageError, build_message, envelope
from streams.ratelimit import DomainRateLimiter
from streams.send_failures import FailureReason, Reporter, SendFailure, Source, bounce_event
from streams.smtp import (
    DeliveryUnknown,
    Envelope,
    SmtpReply,
    SmtpUnavailable,
    SmtpUnsupported,
    Transport,
)
from triggers import SendRequest

__all__ = ["Abandoned", "Deliverer", "Outcome", "RetryPolicy"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: what became of a request: sent now, given up on (and reported), or settled before
Outcome = Literal["delivered", "failed", "duplicate"]

#: errors of Redis or Kafka that mean "try again later"
_OUTAGES = (LedgerUnavailable, KafkaError)


def _passing(exc: Exception) -> bool:
    """Whether an outage error may pass if waited out: Redis away, or a Kafka error that
    says so (a timeout included); not one that would fail again (a report too large for
    the topic): that one stops the mailer, its record uncommitted."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    return True


class Abandoned(StreamsError):
    """The mailer is stopping: the request was left as it was (its offset stays
    uncommitted, so the next mailer takes it up)."""


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 1.0
    max_delay: float = 60.0
    #: 4xx answers to one message before it is reported ``deferred``
    max_attempts: int = 10

    def delay(self, retry: int, jitter: float) -> float:
        """The wait before retry number ``retry`` (1, 2, ...); ``jitter`` in [0, 1)
        takes it down to as little as half."""
        base = min(self.max_delay, self.first_delay * 2.0 ** min(retry - 1, 30))
        return base * (0.5 + jitter / 2)


@dataclass
class _Tries:
    transactions: int = 0
    deferrals: int = 0
    waits: int = 0


class Deliverer:
    def __init__(
        self,
        *,
        ledger: DeliveryLedger,
        transport: Transport,
        reporter: Reporter,
        limiter: DomainRateLimiter,
        metrics: MailerMetrics,
        policy: RetryPolicy,
        stop: asyncio.Event,
        lease_poll: float = 0.2,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._ledger = ledger
        self._transport = transport
        self._reporter = reporter
        self._limiter = limiter
        self._metrics = metrics
        self._policy = policy
        self._stop = stop
        self._lease_poll = lease_poll
        self._now = now
        self._jitter = jitter

    async def deliver(self, request: SendRequest, source: Source) -> Outcome:
        """Settle ``request``; raise :class:`Abandoned` if the mailer stops first."""
        tries = _Tries()
        domain = request.to.rpartition("@")[2].lower()
        while True:
            await self._pause(self._limiter.reserve(domain))
            held = Delivery.sending()
            found = await self._claim(request.request_id, held)
            if found is None:
                outcome = await self._send(request, source, held, tries)
            else:
                outcome = await self._found(request, source, found)
            if outcome is not None:
                return outcome

    async def _claim(self, request_id: str, held: Delivery) -> Delivery | None:
        return await self._durably(lambda: self._ledger.claim(request_id, held))

    async def report_invalid(self, key: bytes | None, detail: str, source: Source) -> None:
        """A record that is no send request: reported, nothing else to do."""
        failure = SendFailure("invalid_request", detail, self._now(), source, key=key)
        await self._durably(lambda: self._reporter.report(failure))
        self._metrics.send_failures.labels("invalid_request").inc()
        log.warning("%s[%d]@%d is no send request: %s", *_where(source), detail)

    async def _send(
        self, request: SendRequest, source: Source, held: Delivery, tries: _Tries
    ) -> Outcome | None:
        """One transaction on a claim held; ``None``: released, to be tried again."""
        try:
            mail = envelope(request, build_message(request, self._now()))
        except MessageError as exc:
            return await self._fail(request, source, tries, "invalid_request", str(exc))
        tries.transactions += 1
        started = time.perf_counter()
        try:
            reply = await self._transport.send(mail)
        except SmtpUnavailable as exc:
            await self._retry_later(request, held, tries, "unavailable", str(exc))
            return None
        except DeliveryUnknown as exc:
            return await self._fail(request, source, tries, "interrupted", str(exc))
        except SmtpUnsupported as exc:
            return await self._fail(request, source, tries, "unsupported", str(exc))
        finally:
            self._metrics.smtp_seconds.observe(time.perf_counter() - started)
        return await self._answered(request, source, held, tries, reply, mail)

    async def _answered(
        self,
        request: SendRequest,
        source: Source,
        held: Delivery,
        tries: _Tries,
        reply: SmtpReply,
        mail: Envelope,
    ) -> Outcome | None:
        rid = request.request_id
        if reply.accepted:
            await self._durably(lambda: self._ledger.finish(rid, Delivery("delivered", reply.code)))
            self._metrics.deliveries.labels("delivered").inc()
            log.debug("delivered %s (%s, %d bytes)", rid, _domain(request), len(mail.data))
            return "delivered"
        if reply.permanent:
            reason: FailureReason = "hard_bounce" if reply.stage == "rcpt" else "rejected"
            return await self._fail(request, source, tries, reason, reply.text, reply)
        tries.deferrals += 1
        if tries.deferrals >= self._policy.max_attempts:
            return await self._fail(request, source, tries, "deferred", reply.text, reply)
        await self._retry_later(request, held, tries, "deferred", f"{reply.code} at {reply.stage}")
        return None

    async def _retry_later(
        self, request: SendRequest, held: Delivery, tries: _Tries, why: str, detail: str
    ) -> None:
        """Nothing was sent: give the claim back, then wait."""
        await self._durably(lambda: self._ledger.release(request.request_id, held))
        self._metrics.retries.labels(why).inc()
        tries.waits += 1
        delay = self._policy.delay(tries.waits, self._jitter())
        log.warning(
            "%s %s to %s (%s); retrying in %.1fs",
            why,
            request.request_id,
            _domain(request),
            detail,
            delay,
        )
        await self._pause(delay)

    async def _fail(
        self,
        request: SendRequest,
        source: Source,
        tries: _Tries,
        reason: FailureReason,
        detail: str,
        reply: SmtpReply | None = None,
    ) -> Outcome:
        code = reply.code if reply else None
        outcome = Delivery("failed", code=code, reason=reason, detail=detail)
        await self._durably(lambda: self._ledger.finish(request.request_id, outcome))
        stage = reply.stage if reply else None
        await self._report(request, source, outcome, stage=stage, attempts=tries.transactions)
        return "failed"

    async def _report(
        self,
        request: SendRequest,
        source: Source,
        outcome: Delivery,
        *,
        stage: str | None,
        attempts: int,
    ) -> None:
        reason: FailureReason = outcome.reason  # type: ignore[assignment]
        detail = outcome.detail or ""
        at = self._now()
        failure = SendFailure(
            reason, detail, at, source, request, outcome.code, stage, attempts=attempts
        )
        bounce = None
        if reason == "hard_bounce" and outcome.code is not None:
            bounce = bounce_event(request, outcome.code, detail, at)
        await self._durably(lambda: self._reporter.report(failure, bounce))
        done = replace(outcome, reported=True, detail=None)
        await self._durably(lambda: self._ledger.finish(request.request_id, done))
        self._metrics.send_failures.labels(reason).inc()
        self._metrics.deliveries.labels("failed").inc()
        code = f" ({outcome.code})" if outcome.code is not None else ""
        log.warning("%s: %s to %s%s", reason, request.request_id, _domain(request), code)

    async def _found(self, request: SendRequest, source: Source, found: Delivery) -> Outcome | None:
        """The request has a record: wait out a live claim, report an interrupted or
        unreported one, skip a settled one; ``None``: claim again."""
        rid = request.request_id
        while found.state == "sending" and found.leased:
            await self._pause(self._lease_poll)
            current = await self._durably(lambda: self._ledger.get(rid))
            if current is None:
                return None  # released: nothing was sent
            found = current
        if found.settled:
            self._metrics.duplicates.inc()
            log.debug("skipping %s: %s before", rid, found.state)
            return "duplicate"
        if found.state == "sending":
            if not await self._durably(lambda: self._ledger.interrupt(rid, found)):
                return None  # someone else settled it meanwhile: read it again
            found = Delivery.interrupted()
        await self._report(request, source, found, stage=None, attempts=0)
        return "failed"

    async def _durably(self, action: Callable[[], Awaitable[T]]) -> T:
        """``action``, retried while Redis or Kafka is down."""
        waits = 0
        while True:
            try:
                return await action()
            except _OUTAGES as exc:
                if not _passing(exc):
                    raise
                waits += 1
                self._metrics.retries.labels("store").inc()
                delay = self._policy.delay(waits, self._jitter())
                log.warning("%s; retrying in %.1fs", exc, delay)
                await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or raise :class:`Abandoned` as soon as the mailer stops."""
        if self._stop.is_set():
            raise Abandoned("stopping")
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return
        raise Abandoned("stopping")


def _domain(request: SendRequest) -> str:
    """The recipient's domain: what logs may say about the address."""
    return request.to.rpartition("@")[2]


def _where(source: Source) -> tuple[Any, ...]:
    return source.topic, source.partition, source.offset

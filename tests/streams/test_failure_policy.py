"""The failure policy in-process (streams/failures.py): what is waited out, what is
dead-lettered, and a record too large for the broker never holding a partition."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.errors import MessageSizeTooLargeError

from streams.failures import is_retryable, process_safely
from streams.metrics import Metrics
from triggers import BatchResult, DeadLetter, Incoming
from triggers.contracts import DEAD_LETTER_KEEP


def sending_failed(cause: BaseException) -> Exception:
    """What faust raises when its producer fails: the Kafka error as the cause."""
    error = RuntimeError(f"Error while sending: {cause!r}")
    error.__cause__ = cause
    return error


def test_a_record_too_large_is_no_outage_to_wait_out() -> None:
    assert not is_retryable(sending_failed(MessageSizeTooLargeError()))
    assert is_retryable(ConnectionError())


async def test_a_message_whose_output_is_too_large_is_dead_lettered_not_retried() -> None:
    huge = Incoming(b"x" * (DEAD_LETTER_KEEP * 3), b"ada", "events", 2, 7)
    fine = Incoming(b"{}", b"bob", "events", 2, 8)
    published: list[DeadLetter] = []

    async def process(batch: Sequence[Incoming]) -> BatchResult:
        if huge in batch:  # e.g. a send request rendered larger than the broker takes
            raise sending_failed(MessageSizeTooLargeError())
        return BatchResult(events=len(batch))

    async def dead_letter(letter: DeadLetter) -> None:
        if letter.value is not None and len(letter.value) > DEAD_LETTER_KEEP:
            raise sending_failed(MessageSizeTooLargeError())  # the whole value is refused
        published.append(letter)

    result = await process_safely(process, dead_letter, [huge, fine], Metrics())
    assert result.events == 1  # the other message went on
    [letter] = published
    assert (letter.reason, letter.partition, letter.offset) == ("processing_error", 2, 7)
    assert letter.value == huge.value[:DEAD_LETTER_KEEP]  # its start, to tell it by
    assert f"first {DEAD_LETTER_KEEP} of {DEAD_LETTER_KEEP * 3} bytes" in letter.detail

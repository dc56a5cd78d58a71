"""The per-partition clock that decides when timers are due on a live worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from streams.app import FUTURE_SKEW_MS, PartitionClock

LONG_AGO_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


def test_a_partition_with_a_backlog_follows_event_time() -> None:
    clock = PartitionClock()
    clock.processed(3, offset=9)
    clock.saw_event_time(3, LONG_AGO_MS)
    # 10 processed, 50 on the broker: the clock stays at the newest event processed,
    # so a purchase still in the backlog cancels a cart timer before it may fire
    assert clock.now(3, highwater=50) == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_caught_up_partition_follows_the_wall_clock() -> None:
    clock = PartitionClock()
    clock.processed(3, offset=49)
    clock.saw_event_time(3, LONG_AGO_MS)
    before = int(time.time() * 1000) / 1000  # the clock counts whole milliseconds
    assert clock.now(3, highwater=50).timestamp() >= before
    assert clock.now(4, highwater=None).timestamp() >= before  # nothing known yet


def test_event_time_a_little_ahead_of_the_wall_clock_wins() -> None:
    clock = PartitionClock()
    ahead_ms = int((time.time() + 2) * 1000)
    clock.saw_event_time(0, ahead_ms)
    assert clock.now(0, highwater=None) == datetime.fromtimestamp(ahead_ms / 1000, tz=UTC)


def test_an_event_dated_far_ahead_moves_the_clock_only_a_little() -> None:
    # a client with a clock years ahead must not make every timer of its partition due
    clock = PartitionClock()
    clock.saw_event_time(0, int(datetime(2099, 1, 1, tzinfo=UTC).timestamp() * 1000))
    limit = time.time() + FUTURE_SKEW_MS / 1000
    assert clock.now(0, highwater=None).timestamp() <= limit
    clock.processed(0, offset=9)
    assert clock.now(0, highwater=50).timestamp() <= limit  # in a backlog too


def test_a_partition_just_assigned_waits_until_its_committed_offset_is_known() -> None:
    clock = PartitionClock()
    clock.processed(3, offset=49)
    clock.saw_event_time(3, LONG_AGO_MS)
    clock.assigned([3])  # a rebalance: what this worker knew of it may be stale
    assert clock.now(3, highwater=80) is None
    clock.committed(3, 60)  # 20 events still to process, none of them seen yet
    assert clock.now(3, highwater=80) is None
    clock.processed(3, offset=60)
    clock.saw_event_time(3, LONG_AGO_MS)
    assert clock.now(3, highwater=80) == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_partition_assigned_with_nothing_to_catch_up_follows_the_wall_clock() -> None:
    clock = PartitionClock()
    clock.assigned([1])
    clock.committed(1, 80)
    before = int(time.time() * 1000) / 1000
    now = clock.now(1, highwater=80)
    assert now is not None and now.timestamp() >= before


def test_a_caught_up_partition_stops_where_the_broker_stopped_answering() -> None:
    clock = PartitionClock(answer_within_ms=270)
    clock.processed(3, offset=49)
    wall_ms = int(time.time() * 1000)
    # answered 100 ms ago: the next answer is not late yet, the clock is the wall's
    assert clock.now(3, highwater=50, polled_ms=wall_ms - 100).timestamp() >= wall_ms / 1000
    # silent for 30 s (a stalled broker): the events it holds back may be dated any
    # time since, so the clock waits just after its last answer
    stalled = clock.now(3, highwater=50, polled_ms=wall_ms - 30_000)
    assert stalled == datetime.fromtimestamp((wall_ms - 30_000 + 270) / 1000, tz=UTC)
    clock.saw_event_time(3, wall_ms - 10_000)  # an event processed is known time
    assert clock.now(3, highwater=50, polled_ms=wall_ms - 30_000) == datetime.fromtimestamp(
        (wall_ms - 10_000) / 1000, tz=UTC
    )

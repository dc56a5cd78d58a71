"""How the agent gathers taken events into batches for the engine."""

from __future__ import annotations

from streams.app import Gathered


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_caught_up_worker_hands_over_what_it_has_at_once() -> None:
    gathered = Gathered(500, 0.2, clock=Clock())
    gathered.add(["e1", "e2"])
    assert gathered.ready(more_on_broker=False)
    assert gathered.take() == ["e1", "e2"]
    assert gathered.take() == []


def test_a_backlog_waits_for_a_whole_batch() -> None:
    clock = Clock()
    gathered = Gathered(5, 0.2, clock=clock)
    gathered.add(["e1", "e2", "e3"])
    assert not gathered.ready(more_on_broker=True)
    gathered.add(["e4", "e5", "e6"])
    assert gathered.ready(more_on_broker=True)
    assert gathered.take() == ["e1", "e2", "e3", "e4", "e5", "e6"]  # in order, none lost


def test_held_events_wait_at_most_max_wait() -> None:
    clock = Clock()
    gathered = Gathered(500, 0.25, clock=clock)
    gathered.add(["e1"])
    clock.now += 0.125
    gathered.add(["e2"])
    assert not gathered.ready(more_on_broker=True)
    clock.now += 0.125  # 0.25 s since the first event was taken
    assert gathered.ready(more_on_broker=True)

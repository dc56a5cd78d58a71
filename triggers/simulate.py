"""Replay recorded events through the real rule, profile and render code, on virtual time.

The simulator runs the same :class:`~triggers.engine.Engine` as the worker, over the
in-memory profile and timer stores. Events are applied in event-time order; before each
event, every timer due by its time fires at its own due time; ``until`` fires the rest.
The output is deterministic: the same events and config give byte-identical files.

Recommendations and the population's best hour read shop-wide statistics; the simulator
learns them from the replayed events themselves, as a worker learns them from the
stream, over the catalog it is given (the ``catalog.jsonl`` of the config directory for
``nudge simulate``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from profiles import (
    InMemoryCatalog,
    InMemoryProfileStore,
    InMemoryStatistics,
    InMemoryTimerStore,
    InvalidEvent,
    LookupSource,
    Product,
    parse_event,
)
from triggers.arms import DEFAULT_ARM
from triggers.contracts import DeadLetter, SendRequest
from triggers.engine import Engine, Incoming, InMemoryOutbox
from triggers.firing import MOMENT_MS, end_of_previous_moment
from triggers.loader import RuleSet

__all__ = ["Simulation", "compare", "simulate"]

SIMULATED_TOPIC = "simulate"
_PARTITION = 0


@dataclass
class Simulation(InMemoryOutbox):
    """What a simulation published (it is the engine's outbox), and its stores."""

    profiles: InMemoryProfileStore = field(default_factory=InMemoryProfileStore)
    timers: InMemoryTimerStore = field(default_factory=InMemoryTimerStore)

    def table(self) -> dict[str, Counter[str]]:
        """Per rule: ``fired``, ``deferred``, ``scheduled``, ``rescheduled``,
        ``suppressed:<reason>`` and ``cancelled:<reason>`` counts."""
        rows: dict[str, Counter[str]] = {}
        for d in self.decisions:
            with_reason = d.outcome in ("suppressed", "cancelled")
            label = f"{d.outcome}:{d.reason}" if with_reason else d.outcome
            rows.setdefault(d.rule_id, Counter())[label] += 1
        return dict(sorted(rows.items()))

    def arms(self) -> dict[str, Counter[str]]:
        """Per experiment: the sends of each arm (``holdout``: the sends it withheld).
        Rules without variants or holdout are left out."""
        rows: dict[str, Counter[str]] = {}
        for d in self.decisions:
            assigned = d.outcome == "fired" or d.reason == "holdout"
            if assigned and d.experiment is not None and d.arm is not None:
                rows.setdefault(d.experiment, Counter())[d.arm] += 1
        experimental = {e: arms for e, arms in rows.items() if set(arms) != {DEFAULT_ARM}}
        return dict(sorted(experimental.items()))


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.fromtimestamp(0, tz=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, to: datetime) -> None:
        self.now = max(self.now, to)


async def simulate(
    ruleset: RuleSet,
    lines: Iterable[bytes],
    *,
    until: datetime | None = None,
    catalog: Sequence[Product] = (),
    lookups: LookupSource | None = None,
) -> Simulation:
    """Run ``lines`` (one JSON event each) through the rules on virtual time.

    Renders and ``send_at`` read the ``catalog`` and the statistics learnt from
    ``lines``; ``lookups`` replaces both with fixed ones.
    """
    sim = Simulation()
    clock = _Clock()
    statistics = None
    if lookups is None:  # learn them from the replayed events
        statistics = InMemoryStatistics(
            InMemoryCatalog(catalog),
            config=ruleset.config.recommendations,
            clock_ms=lambda: int(clock.now.timestamp() * 1000),
        )
    engine = Engine(
        rules=ruleset,
        profiles=sim.profiles,
        timers=sim.timers,
        outbox=sim,
        clock=clock,
        lookups=lookups or statistics,
        statistics=statistics,
    )
    ordered: list[tuple[datetime, int, bytes, bytes | None]] = []
    for offset, raw in enumerate(lines):
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            sim.dead_letters.append(
                DeadLetter(None, raw, exc.reason, exc.detail, SIMULATED_TOPIC, 0, offset)
            )
            continue
        ordered.append((event.ts, offset, raw, event.user_id.encode()))
    ordered.sort(key=lambda item: (item[0], item[1]))
    for ts, offset, raw, key in ordered:
        # a moment's events come before the timers due in it, as on a live worker
        await _fire_until(engine, sim, clock, end_of_previous_moment(ts))
        clock.advance(ts)
        await engine.process([Incoming(raw, key, SIMULATED_TOPIC, _PARTITION, offset)])
        await engine.settle()  # the next event's renders see this one in the statistics
    if until is not None:
        await _fire_until(engine, sim, clock, until)
    return sim


async def _fire_until(engine: Engine, sim: Simulation, clock: _Clock, limit: datetime) -> None:
    limit_ms = int(limit.timestamp() * 1000)
    while True:
        due_ms = sim.timers.next_due_ms(_PARTITION)
        if due_ms is None or due_ms > limit_ms:
            return
        clock.advance(datetime.fromtimestamp(due_ms / 1000, tz=UTC))
        # the rest of that second is the same moment (see triggers.firing.MOMENT_MS)
        moment_end_ms = (due_ms // MOMENT_MS + 1) * MOMENT_MS - 1
        horizon = datetime.fromtimestamp(min(moment_end_ms, limit_ms) / 1000, tz=UTC)
        await engine.fire_due(_PARTITION, clock.now, horizon=horizon)


@dataclass(frozen=True)
class Comparison:
    added: list[SendRequest]
    removed: list[SendRequest]


def compare(base: Simulation, other: Simulation) -> Comparison:
    """Which send requests ``other``'s config adds to, or removes from, ``base``'s."""
    before = {s.request_id: s for s in base.sends}
    after = {s.request_id: s for s in other.sends}
    return Comparison(
        added=[s for rid, s in after.items() if rid not in before],
        removed=[s for rid, s in before.items() if rid not in after],
    )

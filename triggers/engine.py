"""The engine: a batch of raw messages in, durable effects out, in a safe order.

For each batch the engine reads every user's profile in one round trip, folds the
events in (pure), decides and renders what fires, and then makes the effects durable
in the order that keeps at-least-once honest:

1. publish send requests and dead letters, and wait until the broker has them;
2. write timer changes (idempotent);
3. compare-and-set the profiles together with the ids of the events applied.

A crash anywhere before step 3 leaves the events unseen, so their redelivery redoes the
same work and yields the same request ids; a crash after step 3 makes the redelivery a
no-op. The caller commits offsets only after :meth:`Engine.process` returns.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from profiles import (
    Event,
    InvalidEvent,
    Profile,
    ProfileStore,
    ProfileWrite,
    Timer,
    TimerOps,
    TimerStore,
    parse_event,
)
from triggers.contracts import DeadLetter, Decision, SendRequest
from triggers.errors import TriggerError
from triggers.evaluate import Firing, apply_user_events, decide
from triggers.loader import RuleSet

__all__ = ["BatchResult", "Engine", "Incoming", "Outbox"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One raw message from the events topic."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


class Outbox(Protocol):
    async def publish(
        self, sends: Sequence[SendRequest], dead_letters: Sequence[DeadLetter]
    ) -> None:
        """Return once every message is durable on the broker."""
        ...


@dataclass
class BatchResult:
    events: int = 0
    duplicates: int = 0
    timers_fired: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    sends: list[SendRequest] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    #: newest event time (epoch ms) seen per partition in this batch
    watermarks: dict[int, int] = field(default_factory=dict)


class ConcurrentUpdate(TriggerError):
    """Profiles kept changing under this worker (another worker owns the partition)."""


class Engine:
    def __init__(
        self,
        *,
        rules: RuleSet,
        profiles: ProfileStore,
        timers: TimerStore,
        outbox: Outbox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cas_attempts: int = 5,
    ) -> None:
        self.rules = rules
        self.profiles = profiles
        self.timers = timers
        self.outbox = outbox
        self.clock = clock
        self.cas_attempts = cas_attempts

    async def process(self, batch: Sequence[Incoming]) -> BatchResult:
        result = BatchResult()
        by_user: dict[str, list[tuple[Event, int]]] = {}
        for message in batch:
            try:
                event = parse_event(message.value, key=message.key)
            except InvalidEvent as exc:
                result.dead_letters.append(_dead_letter(message, exc.reason, exc.detail))
                continue
            by_user.setdefault(event.user_id, []).append((event, message.partition))
            mark = result.watermarks.get(message.partition, 0)
            result.watermarks[message.partition] = max(mark, event.ts_ms)
        dead_letters = result.dead_letters
        for _ in range(self.cas_attempts):
            conflicts = await self._apply(by_user, dead_letters, result)
            if not conflicts:
                return result
            log.warning("profiles changed under us, retrying %d users", len(conflicts))
            by_user = {user_id: by_user[user_id] for user_id in conflicts}
            dead_letters = []
        raise ConcurrentUpdate(f"gave up on {sorted(by_user)} after {self.cas_attempts} tries")

    async def _apply(
        self,
        by_user: dict[str, list[tuple[Event, int]]],
        dead_letters: list[DeadLetter],
        result: BatchResult,
    ) -> list[str]:
        wanted = {user_id: [e.event_id for e, _ in events] for user_id, events in by_user.items()}
        snapshots = await self.profiles.load(wanted)
        now = self.clock()
        ops = TimerOps()
        writes: list[ProfileWrite] = []
        sends: list[SendRequest] = []
        for user_id, events in by_user.items():
            snapshot = snapshots[user_id]
            step = apply_user_events(self.rules, snapshot, events)
            result.duplicates += step.duplicates
            result.events += len(step.applied)
            result.by_type.update(e.type for e, _ in events if e.event_id not in snapshot.seen)
            ops.schedule.update(step.ops.schedule)
            ops.cancel |= step.ops.cancel
            for firing, profile in step.firings:
                decision, send = decide(self.rules, firing, profile, now)
                result.decisions.append(decision)
                sends += [send] if send else []
            if step.applied:
                writes.append(
                    ProfileWrite(user_id, snapshot.version, step.profile, tuple(step.applied))
                )
        await self.outbox.publish(sends, dead_letters)
        result.sends += sends
        await self.timers.apply(ops)
        return await self.profiles.save(writes)

    async def fire_due(self, partition: int, now: datetime, *, limit: int = 500) -> BatchResult:
        """Fire the timers of ``partition`` that are due at ``now``."""
        result = BatchResult()
        lease_ms = int(self.rules.config.timer_lease.total_seconds() * 1000)
        now_ms = int(now.timestamp() * 1000)
        claimed = await self.timers.claim_due(partition, now_ms, limit=limit, lease_ms=lease_ms)
        if not claimed:
            return result
        snapshots = await self.profiles.load({t.user_id: [] for t in claimed})
        created = self.clock()
        for timer in claimed:
            decision, send = self._fire(timer, snapshots[timer.user_id].profile, created)
            result.decisions.append(decision)
            result.sends += [send] if send else []
        await self.outbox.publish(result.sends, [])
        await self.timers.complete(claimed)
        result.timers_fired = len(claimed)
        return result

    def _fire(
        self, timer: Timer, profile: Profile | None, now: datetime
    ) -> tuple[Decision, SendRequest | None]:
        rule = self.rules.rule(timer.rule_id)
        if rule is None:
            reason = "rule_removed"
            return Decision(timer.rule_id, timer.user_id, "suppressed", reason, "", now), None
        firing = Firing(rule, timer.user_id, timer.trigger_event, timer.key)
        return decide(self.rules, firing, profile, now)


def _dead_letter(message: Incoming, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        key=message.key,
        value=message.value,
        reason=reason,
        detail=detail,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )

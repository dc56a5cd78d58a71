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

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from profiles import (
    DEFAULT_MAX_EVENT_BYTES,
    NO_LOOKUPS,
    Activity,
    CorruptProfile,
    Event,
    InMemorySuppressionList,
    InvalidEvent,
    Lookups,
    LookupSource,
    ProfileStore,
    ProfileWrite,
    Snapshot,
    Statistics,
    StoreUnavailable,
    SuppressionList,
    SuppressionOps,
    Timer,
    TimerOps,
    TimerStore,
    parse_event,
)
from profiles.fold import ADDRESS_EVENTS, address_set_by
from triggers.arms import COUNTER_PREFIX
from triggers.contracts import DeadLetter, Decision, SendRequest
from triggers.errors import TriggerError
from triggers.firing import RECHECK, ms
from triggers.fold import (
    UserStep,
    apply_user_events,
    fire_user_timers,
    overdue_before,
    overdue_ids,
)
from triggers.loader import RuleSet
from triggers.picks import seed_products
from triggers.replan import Replan, replan_timer
from triggers.scoring import Scored, score_changed, score_rechecked

__all__ = ["BatchResult", "Engine", "InMemoryOutbox", "Incoming", "Outbox"]

log = logging.getLogger(__name__)

#: how often the experiment counters are read again for ``strategy: thompson`` (seconds
#: of the engine's clock): a fresher posterior is worth little more than a read per batch
COUNTERS_REFRESH_S = 5.0
#: statistics count events dated at most this far ahead of the engine's clock (ms) ...
STATS_FUTURE_MS = 86_400_000
#: ... and at most this many half-lives behind it (their weight would be below 2**-200)
STATS_PAST_HALF_LIVES = 200


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
        self,
        sends: Sequence[SendRequest],
        dead_letters: Sequence[DeadLetter],
        decisions: Sequence[Decision] = (),
    ) -> None:
        """Return once every message is durable on the broker."""
        ...


@dataclass
class InMemoryOutbox:
    """The in-memory twin of :class:`Outbox`: keeps what was published, in order."""

    sends: list[SendRequest] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    async def publish(
        self,
        sends: Sequence[SendRequest],
        dead_letters: Sequence[DeadLetter],
        decisions: Sequence[Decision] = (),
    ) -> None:
        self.sends += sends
        self.dead_letters += dead_letters
        self.decisions += decisions


#: how a send came about: straight from an event, or from a timer that fell due
SendKind = Literal["immediate", "timer"]


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
    #: the prediction model's work: what it scored, and its calls that failed
    scored: Scored = field(default_factory=Scored)
    #: per send, in order: ``immediate`` or ``timer``, and when it became due (epoch ms:
    #: its trigger event's time, or its timer's due time), for the send latency metric
    sends_due: list[tuple[SendKind, int]] = field(default_factory=list)
    #: per fired timer, how long after its due time it fired (ms; the sweep's clock)
    timer_lateness_ms: list[int] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        """Count ``other``'s work into this one (the parts of a batch split up)."""
        self.events += other.events
        self.duplicates += other.duplicates
        self.timers_fired += other.timers_fired
        self.dead_letters += other.dead_letters
        self.sends += other.sends
        self.decisions += other.decisions
        self.by_type.update(other.by_type)
        self.sends_due += other.sends_due
        self.timer_lateness_ms += other.timer_lateness_ms
        self.scored += other.scored
        for partition, mark in other.watermarks.items():
            self.watermarks[partition] = max(self.watermarks.get(partition, 0), mark)


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
        lookups: LookupSource | None = None,
        statistics: Statistics | None = None,
        suppression: SuppressionList | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.rules = rules
        #: a larger message is dead-lettered ``too_large`` before it is parsed
        self.max_event_bytes = max_event_bytes
        self.suppression = suppression or InMemorySuppressionList()
        self.lookups = lookups
        self.statistics = statistics
        self._recording: asyncio.Task[None] | None = None
        #: the experiment counters last read, and when (``strategy: thompson``)
        self._counters: tuple[datetime, dict[str, float]] | None = None
        self.profiles = profiles
        self.timers = timers
        self.outbox = outbox
        self.clock = clock
        self.cas_attempts = cas_attempts

    async def process(self, batch: Sequence[Incoming]) -> BatchResult:
        result = BatchResult()
        by_user: dict[str, list[tuple[Event, int]]] = {}
        limit = self.max_event_bytes
        for message in batch:
            try:
                event = parse_event(message.value, key=message.key, max_bytes=limit)
            except InvalidEvent as exc:
                result.dead_letters.append(_dead_letter(message, exc.reason, exc.detail))
                continue
            by_user.setdefault(event.user_id, []).append((event, message.partition))
            mark = result.watermarks.get(message.partition, 0)
            result.watermarks[message.partition] = max(mark, event.ts_ms)
        dead_letters = result.dead_letters
        parsed = by_user
        fired: list[Timer] = []
        for _ in range(self.cas_attempts):
            conflicts = await self._apply(by_user, dead_letters, result, fired)
            if not conflicts:
                result.sends_due = _sends_due(result.sends, parsed, fired)
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
        fired: list[Timer],
    ) -> list[str]:
        """Fold ``by_user`` into their profiles and commit; the users whose profile
        changed meanwhile (to try again). The timers fired before the users' events are
        added to ``fired``."""
        wanted = {user_id: [e.event_id for e, _ in events] for user_id, events in by_user.items()}
        incoming = [event for batch in by_user.values() for event, _ in batch]
        snapshots, erased = await asyncio.gather(
            self.profiles.load(wanted), self.suppression.erased(_addresses_set(incoming))
        )
        now = self.clock()
        overdue = await self._overdue(by_user, snapshots, now)
        triggers = [timer.trigger_event for timers in overdue.values() for timer in timers.values()]
        lookups = await self._lookups([*incoming, *triggers], snapshots.values(), now)
        if erased:
            lookups = replace(lookups, erased_addresses=erased)
        steps = {}
        for user_id, events in by_user.items():
            snapshot, stored = snapshots[user_id], overdue.get(user_id)
            steps[user_id] = step = apply_user_events(
                self.rules, snapshot, events, now, lookups, stored
            )
            result.duplicates += step.duplicates
            result.events += step.types.total()
            result.by_type.update(step.types)
        if self.rules.model is not None:
            result.scored += score_changed(self.rules, list(steps.values()), now, lookups)
        writes = [
            ProfileWrite(
                user_id,
                snapshots[user_id].version,
                step.profile,
                tuple(step.applied),
                step.erased_ms,
                counters=tuple(step.counters.items()),
            )
            for user_id, step in steps.items()
            if step.applied or step.erased_ms is not None
        ]
        conflicts = await self._commit(steps.values(), writes, dead_letters, result)
        committed = [step for user_id, step in steps.items() if user_id not in conflicts]
        # published even for a user tried again: the store no longer holds those timers
        now_fired = [timer for step in steps.values() for timer in step.fired]
        fired += now_fired
        result.timers_fired += len(now_fired)
        result.timer_lateness_ms += [ms(now) - timer.due_ms for timer in now_fired]
        await self._record(committed, now)
        return conflicts

    async def _overdue(
        self,
        by_user: dict[str, list[tuple[Event, int]]],
        snapshots: dict[str, Snapshot],
        now: datetime,
    ) -> dict[str, dict[str, Timer]]:
        """Per user, by id, the stored timers already due before one of their events in
        the batch (see :func:`triggers.fold.apply_user_events`): one read per partition,
        and none for a batch without any (a worker keeping up)."""
        wanted: dict[int, list[str]] = {}
        for user_id, events in by_user.items():
            profile = snapshots[user_id].profile
            if profile is None or not profile.timers:
                continue
            latest = max(event.ts_ms for event, _ in events)
            ids = overdue_ids(profile, overdue_before(latest, now))
            if ids:
                partition = events[0][1] if profile.partition is None else profile.partition
                wanted.setdefault(partition, []).extend(ids)
        if not wanted:
            return {}
        found = await asyncio.gather(*(self.timers.find(p, ids) for p, ids in wanted.items()))
        overdue: dict[str, dict[str, Timer]] = {}
        for timers in found:
            for timer in timers:
                overdue.setdefault(timer.user_id, {})[timer.id] = timer
        return overdue

    async def _record(self, steps: list[UserStep], now: datetime) -> None:
        """Add what the committed steps applied to the shop-wide statistics.

        Statistics are not part of the at-least-once promise (they are decayed sums that
        steer recommendations, not sends), so they are recorded behind the batch: the
        next batch starts while this one's are written, and waits only for the previous
        recording. A crash loses at most one batch's contribution.

        Events dated more than ``STATS_FUTURE`` after ``now``, or more than
        ``STATS_PAST_HALF_LIVES`` half-lives before it, are left out: one event years
        ahead would move the statistics' epoch there for good (every read then
        overflows), and weights ``2 ** (spread / half-life)`` apart overflow a float.
        """
        if self.statistics is None:
            return
        config = self.rules.config.recommendations
        now_ms = int(now.timestamp() * 1000)
        earliest = now_ms - STATS_PAST_HALF_LIVES * config.half_life_ms
        latest = now_ms + STATS_FUTURE_MS
        activity = Activity(config)
        for step in steps:
            for seen in step.observed:
                if earliest <= seen.event.ts_ms <= latest:
                    activity.add_event(seen.event, in_cart=seen.in_cart, local_hour=seen.local_hour)
        await self.settle()
        if activity:
            self._recording = asyncio.create_task(self._record_now(self.statistics, activity))

    @staticmethod
    async def _record_now(statistics: Statistics, activity: Activity) -> None:
        try:
            await statistics.record(activity)
        except StoreUnavailable as exc:
            log.warning("a batch's statistics were not recorded: %s", exc)
        except Exception:
            # best effort: never fail the next batch (which awaits this task) for it
            log.exception("a batch's statistics were not recorded")

    async def settle(self) -> None:
        """Wait until the statistics of the batches processed so far are recorded."""
        recording, self._recording = self._recording, None
        if recording is not None:
            await recording

    async def _commit(
        self,
        steps: Iterable[UserStep],
        writes: list[ProfileWrite],
        dead_letters: Sequence[DeadLetter],
        result: BatchResult,
    ) -> list[str]:
        """Make the effects durable: publish, then timers, then what an erasure or a fresh
        consent changes elsewhere, then profiles (see module doc)."""
        ops = TimerOps()
        suppression = SuppressionOps()
        forget: dict[str, set[str]] = {}
        sends: list[SendRequest] = []
        decisions: list[Decision] = []
        for step in steps:
            ops.merge(step.ops)
            suppression.merge(step.suppression)
            for user_id, products in step.forget.items():
                forget.setdefault(user_id, set()).update(products)
            sends += step.sends
            decisions += step.decisions
        await self.outbox.publish(sends, dead_letters, decisions)
        result.sends += sends
        result.decisions += decisions
        await self.timers.apply(ops)
        await self.suppression.apply(suppression)
        if forget and self.statistics is not None:
            await self.settle()  # a recording still in flight may name the user
            await self.statistics.forget(forget)
        return await self.profiles.save(writes)

    async def fire_due(
        self,
        partition: int,
        now: datetime,
        *,
        limit: int = 500,
        horizon: datetime | None = None,
    ) -> BatchResult:
        """Fire the timers of ``partition`` due by ``horizon`` (default ``now``) at ``now``.

        Timers are completed only for users whose profile write succeeded; the others
        stay leased and fire again, with the same request ids, when the lease runs out.
        """
        result = BatchResult()
        lease_ms = int(self.rules.config.timer_lease.total_seconds() * 1000)
        horizon_ms = int((horizon or now).timestamp() * 1000)
        claimed = await self.timers.claim_due(partition, horizon_ms, limit=limit, lease_ms=lease_ms)
        if not claimed:
            return result
        by_user: dict[str, list[Timer]] = {}
        for timer in claimed:
            by_user.setdefault(timer.user_id, []).append(timer)
        snapshots, broken = await self._load_for_timers(list(by_user))
        if self.rules.model is not None:
            # scores depend on recency: a re-check sees the user's scores as of now
            rechecked = [
                snapshots[user_id].profile
                for user_id, timers in by_user.items()
                if user_id in snapshots and any(t.rule_id == RECHECK for t in timers)
            ]
            profiles = [p for p in rechecked if p is not None]
            result.scored += score_rechecked(self.rules, profiles, now)
        events = (t.trigger_event for t in claimed)
        lookups = await self._lookups(events, snapshots.values(), now)
        steps = {
            user_id: fire_user_timers(self.rules, snapshots[user_id].profile, timers, now, lookups)
            for user_id, timers in by_user.items()
            if user_id in snapshots
        }
        for user_id, problem in broken.items():
            # suppressed loudly and completed, rather than failing every sweep forever
            for timer in by_user[user_id]:
                where = {"partition": partition, "user_id": user_id, "rule_id": timer.rule_id}
                log.error("a timer cannot fire: %s", problem, extra=where)
            steps[user_id] = UserStep(
                profile=None,
                decisions=[
                    Decision(
                        t.rule_id,
                        user_id,
                        "suppressed",
                        "corrupt_profile",
                        t.trigger_event_id,
                        now,
                        detail=problem,
                        step=t.step,
                        model_version=self.rules.model_version,
                    )
                    for t in by_user[user_id]
                ],
            )
        writes = _timer_writes(snapshots, steps)
        conflicts = set(await self._commit(steps.values(), writes, [], result))
        if conflicts:
            log.warning("profiles changed under %d users' timers; they fire again", len(conflicts))
        await self.timers.complete([t for t in claimed if t.user_id not in conflicts])
        result.timers_fired = len(claimed)
        now_ms = int(now.timestamp() * 1000)
        result.timer_lateness_ms = [now_ms - t.due_ms for t in claimed]
        due_ms = {(t.rule_id, t.trigger_event_id): t.due_ms for t in claimed}
        result.sends_due = [
            ("timer", due_ms.get((s.rule_id, s.trigger_event_id), now_ms)) for s in result.sends
        ]
        return result

    async def replan(self, partition: int, previous: RuleSet, now: datetime) -> BatchResult:
        """Bring the pending timers of ``partition`` in line with the rules just loaded.

        Timers of removed rules are cancelled and timers whose delay changed move (see
        :mod:`triggers.replan`); each change is a decision. Users whose profile moved
        meanwhile are left as they are: their timers are judged again when they fall due.
        """
        result = BatchResult()
        changes: dict[str, list[tuple[Timer, Replan]]] = {}
        for timer in await self.timers.pending(partition):
            change = replan_timer(previous, self.rules, timer)
            if change is not None:
                changes.setdefault(timer.user_id, []).append((timer, change))
        if not changes:
            return result
        snapshots, _ = await self._load_for_timers(list(changes))
        steps = {}
        for user_id, planned in changes.items():
            snapshot = snapshots.get(user_id, Snapshot(None))
            steps[user_id] = step = UserStep(
                profile=snapshot.profile, model=self.rules.model_version
            )
            timeline = step.timeline(snapshot.profile, now)
            for timer, change in planned:
                if change.due_ms is None:
                    timeline.cancel(partition, timer.id, change.cancel, detail=change.detail)
                else:
                    timeline.schedule(replace(timer, due_ms=change.due_ms), "rule_changed")
        writes = _timer_writes(snapshots, steps)
        conflicts = await self._commit(steps.values(), writes, [], result)
        if conflicts:
            log.warning("profiles changed under %d users while re-planning", len(conflicts))
        return result

    async def _lookups(
        self,
        events: Iterable[Event | dict[str, Any]],
        snapshots: Iterable[Snapshot],
        now: datetime,
    ) -> Lookups:
        """What the folds and renders of ``events`` for these users may read: the
        products the events name and those the users' recommendations start from, and
        the experiment counters when a rule samples its variants from them."""
        found = NO_LOOKUPS
        if self.lookups is not None:
            wanted = set(_products_named(events))
            for snapshot in snapshots:
                if snapshot.profile is not None:
                    wanted.update(seed_products(snapshot.profile))
            found = await self.lookups.lookups(wanted)
        if self.rules.samples_arms:
            found = replace(found, counters=await self._live_counters(now))
        return found

    async def _live_counters(self, now: datetime) -> dict[str, float]:
        """The experiment counters, read again when older than :data:`COUNTERS_REFRESH_S`."""
        if self._counters is not None:
            read_at, counters = self._counters
            if 0 <= (now - read_at).total_seconds() < COUNTERS_REFRESH_S:
                return counters
        counters = await self.profiles.counters(COUNTER_PREFIX)
        self._counters = (now, counters)
        return counters

    async def _load_for_timers(
        self, user_ids: list[str]
    ) -> tuple[dict[str, Snapshot], dict[str, str]]:
        """Snapshots of ``user_ids``; users whose stored profile is corrupt come apart."""
        try:
            return await self.profiles.load({u: [] for u in user_ids}), {}
        except CorruptProfile:
            pass
        snapshots: dict[str, Snapshot] = {}
        broken: dict[str, str] = {}
        for user_id in user_ids:
            try:
                snapshots.update(await self.profiles.load({user_id: []}))
            except CorruptProfile as exc:
                broken[user_id] = str(exc)
        return snapshots, broken


def _addresses_set(events: Iterable[Event]) -> set[str]:
    """The addresses ``events`` give their users (checked against the suppression list)."""
    found = (address_set_by(e) for e in events if e.type in ADDRESS_EVENTS)
    return {address for address in found if address is not None}


def _products_named(events: Iterable[Event | dict[str, Any]]) -> Iterator[str]:
    """The product ids events name (viewed, carted, bought), parsed or as timer data."""
    for event in events:
        props = event.properties if isinstance(event, Event) else event.get("properties") or {}
        product_id = props.get("product_id")
        if isinstance(product_id, str):
            yield product_id
        for item in props.get("items") or ():
            if isinstance(item, dict) and isinstance(item.get("product_id"), str):
                yield item["product_id"]


def _sends_due(
    sends: Sequence[SendRequest],
    events: dict[str, list[tuple[Event, int]]],
    fired: Sequence[Timer],
) -> list[tuple[SendKind, int]]:
    """When each of a batch's sends became due: the due time of the timer it came from,
    else its trigger event's time (most batches send nothing, and pay nothing for this)."""
    if not sends:
        return []
    event_ms = {e.event_id: e.ts_ms for user_events in events.values() for e, _ in user_events}
    timer_ms = {(t.rule_id, t.trigger_event_id): t.due_ms for t in fired}
    due: list[tuple[SendKind, int]] = []
    for send in sends:
        when = timer_ms.get((send.rule_id, send.trigger_event_id))
        if when is not None:
            due.append(("timer", when))
        else:
            due.append(("immediate", event_ms.get(send.trigger_event_id, 0)))
    return due


def _timer_writes(snapshots: dict[str, Snapshot], steps: dict[str, UserStep]) -> list[ProfileWrite]:
    """The profile writes of timer work: every user who still has a profile, and the
    deletion of every expired one (with its dedup records)."""
    return [
        ProfileWrite(
            user_id,
            snapshots[user_id].version,
            step.profile,
            forget=step.expired,
            counters=tuple(step.counters.items()),
        )
        for user_id, step in steps.items()
        if step.profile is not None or step.expired
    ]


def _dead_letter(message: Incoming, reason: str, detail: str) -> DeadLetter:
    letter = DeadLetter(
        key=message.key,
        value=message.value,
        reason=reason,
        detail=detail,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
    # a value over the limit may be over what the broker takes too: keep its start
    return letter.cut() if reason == "too_large" else letter

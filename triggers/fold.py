"""Fold one user's events, or one user's due timers, into a profile and its effects.

Both functions are pure: the same snapshot, events and time give the same profile,
timer changes, decisions and send requests. The engine makes the results durable; the
simulator keeps them in memory.

With a profile retention (:attr:`RuleSet.retention`), every event keeps the user's
retention timer at their last event plus the retention; when it falls due the profile
expires (:func:`_expire`) unless the user came back meanwhile.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from profiles import (
    NO_LOOKUPS,
    Event,
    Lookups,
    Predicted,
    Profile,
    Snapshot,
    SuppressionOps,
    Timer,
    TimerOps,
    apply_event,
    attribute,
    personal_products,
    timer_id,
)
from profiles.fold import ADDRESS_EVENTS, check_address
from profiles.hours import local_hour
from triggers.arms import counter_field
from triggers.conditions import CompiledProbe
from triggers.context import Memberships, context, memberships
from triggers.contracts import Decision, SendRequest
from triggers.decide import Resolution, resolve
from triggers.evaluate import Before, entered, evaluate_event
from triggers.firing import (
    FUTURE_SKEW_MS,
    MOMENT_MS,
    OWN_TIMERS,
    RECHECK,
    RETENTION,
    Firing,
    from_ms,
    ms,
    recheck_timer,
    retention_due_ms,
    retention_timer,
)
from triggers.loader import RuleSet
from triggers.predict import prediction_trigger, rescore_at, used_model
from triggers.rules import Rule
from triggers.timeline import Timeline

__all__ = [
    "ALL_RULES",
    "FOR_KNOWN_USERS",
    "Observed",
    "Probed",
    "UserStep",
    "apply_user_events",
    "fire_user_timers",
    "overdue_before",
    "overdue_ids",
    "rebaseline",
    "rescored",
]


@dataclass(frozen=True)
class Observed:
    """An applied event as the shop-wide statistics see it (``profiles.Activity``)."""

    event: Event
    #: the cart's products before an ``add_to_cart`` (co-carted pairs), oldest first
    in_cart: tuple[str, ...] = ()
    #: the local hour of a mail open or click, in the user's time zone
    local_hour: int | None = None


@dataclass
class UserStep:
    """The result of folding events or timers into one user's profile."""

    profile: Profile | None
    applied: list[tuple[str, int]] = field(default_factory=list)
    #: event types applied (duplicates excluded)
    types: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    ops: TimerOps = field(default_factory=TimerOps)
    sends: list[SendRequest] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    #: the last evaluation of the probe, while the profile it read may still match it
    probed: Probed | None = None
    #: what the applied events tell the shop-wide statistics (see :class:`Observed`)
    observed: list[Observed] = field(default_factory=list)
    #: the loaded prediction model's version (decisions record the one they used)
    model: str | None = None
    #: events up to this time (epoch ms) are not applied: the user was erased then
    tombstone_ms: int | None = None
    #: when an ``erase`` among the events erased the user (epoch ms; see
    #: :class:`profiles.ProfileWrite`)
    erased_ms: int | None = None
    #: addresses to put on (an erasure) or take off (a fresh consent) the suppression list
    suppression: SuppressionOps = field(default_factory=SuppressionOps)
    #: user id -> products whose watcher lists must forget them (an erasure, an expiry)
    forget: dict[str, set[str]] = field(default_factory=dict)
    #: the profile expired (no event for the retention): it is deleted with its dedup
    #: records, and without a tombstone (see :class:`profiles.ProfileWrite`)
    expired: bool = False
    #: store counter increments written with the profile (see :mod:`triggers.arms`)
    counters: dict[str, float] = field(default_factory=dict)
    #: the user's timers fired before one of the events (see :func:`apply_user_events`)
    fired: list[Timer] = field(default_factory=list)

    def absorb(self, resolution: Resolution) -> None:
        self.sends += resolution.sends
        self.decisions += resolution.decisions
        self.ops.merge(resolution.ops)
        self.count(resolution.counters)

    def count(self, counters: dict[str, float]) -> None:
        for name, amount in counters.items():
            self.counters[name] = self.counters.get(name, 0.0) + amount

    def timeline(self, profile: Profile | None, now: datetime) -> Timeline:
        return Timeline(profile, self.ops, self.decisions, now, self.model)


def apply_user_events(
    ruleset: RuleSet,
    snapshot: Snapshot,
    events: Sequence[tuple[Event, int]],
    now: datetime,
    lookups: Lookups = NO_LOOKUPS,
    stored: Mapping[str, Timer] | None = None,
) -> UserStep:
    """Apply ``(event, partition)`` pairs in order, skipping events already applied.

    Before an event, the user's rule timers due before its moment fire, as they would
    have had the sweep kept up (see :func:`overdue_before`); ``stored`` holds those
    timers from the store by id (:func:`overdue_ids` says which to fetch), the timers
    scheduled by the events before come from the step itself.

    The snapshot's profile is updated in place and becomes ``UserStep.profile``: the
    caller hands over a profile it owns (a fresh load), which saves a copy per event.
    """
    step = UserStep(
        profile=snapshot.profile, model=ruleset.model_version, tombstone_ms=snapshot.erased_ms
    )
    stored = stored or {}
    seen = set(snapshot.seen)
    for event, partition in events:
        if event.event_id in seen:
            step.duplicates += 1
            continue
        seen.add(event.event_id)
        if step.tombstone_ms is not None and event.ts_ms <= step.tombstone_ms:
            step.decisions.append(_erased(step, event, now))
            continue
        if step.profile is None and event.type in FOR_KNOWN_USERS:
            continue
        _fire_overdue(ruleset, step, stored, overdue_before(event.ts_ms, now), lookups)
        _apply_one(ruleset, step, event, partition, now, lookups)
        if event.type != "erase":  # an erasure forgets the events applied before it
            step.applied.append((event.event_id, event.ts_ms))
        step.types[event.type] += 1
    return step


def overdue_before(event_ms: int, now: datetime) -> int:
    """Timers due before this time (epoch ms) are overdue for an event at ``event_ms``:
    the start of its moment (a moment's events come before its timers, as in the sweep),
    and for an event from a clock running ahead, no later than :data:`FUTURE_SKEW_MS`
    after ``now``."""
    return min(event_ms, ms(now) + FUTURE_SKEW_MS) // MOMENT_MS * MOMENT_MS


def overdue_ids(profile: Profile | None, before_ms: int) -> list[str]:
    """The ids of the profile's pending rule timers due before ``before_ms``.

    The engine's own timers are left to the sweep: re-checks score users as of the
    batch, and a retention timer's expiry is judged against the user's last event.
    """
    if profile is None or not profile.timers or min(profile.timers.values()) >= before_ms:
        return []
    return [
        tid
        for tid, due_ms in profile.timers.items()
        if due_ms < before_ms and tid.partition("|")[0] not in OWN_TIMERS
    ]


#: most moments fired before one event (a series whose every step is overdue fires them
#: all; this bounds a rule that would keep scheduling itself into the past)
MAX_OVERDUE_MOMENTS = 100


def _fire_overdue(
    ruleset: RuleSet,
    step: UserStep,
    stored: Mapping[str, Timer],
    before_ms: int,
    lookups: Lookups,
) -> None:
    """Fire the user's rule timers due before ``before_ms``, a moment at a time, earliest
    first, each at its due time (or the user's last event, if later); a timer a firing
    schedules (the next step of a series) fires too if it is due before ``before_ms``.

    A worker behind its partition (a backlog, a stalled broker, a sweep waiting for the
    lock) would otherwise apply the event first: a purchase cancels the cart reminder
    that was due before it, any event moves the winback that was due. ``nudge simulate``
    fires them first; so does the worker, with the same request ids.
    """
    for _ in range(MAX_OVERDUE_MOMENTS):
        timers = _earliest_overdue(step, stored, before_ms)
        if not timers or step.profile is None:
            return
        for timer in timers:
            step.ops.remove(timer.partition, timer.id)
        at = max(timers[0].due_ms, ms(step.profile.last_seen))
        _fire_moment(ruleset, step, timers, from_ms(at), lookups)
        step.fired += timers


def _earliest_overdue(step: UserStep, stored: Mapping[str, Timer], before_ms: int) -> list[Timer]:
    """The user's overdue rule timers of the earliest moment, soonest first: scheduled in
    this step, or else read from the store (one the store no longer has was fired or
    cancelled by an earlier try of the batch)."""
    profile = step.profile
    ids = overdue_ids(profile, before_ms)
    if not ids or profile is None:
        return []
    scheduled = {timer.id: timer for timer in step.ops.schedule.values()}
    found = [scheduled.get(tid) or stored.get(tid) for tid in ids]
    due = sorted(
        (t for t in found if t is not None and t.due_ms == profile.timers[t.id]),
        key=lambda t: (t.due_ms, t.id),
    )
    if not due:
        return []
    moment = due[0].due_ms // MOMENT_MS
    return [t for t in due if t.due_ms // MOMENT_MS == moment]


#: the rule id of decisions about an event rather than a rule (every rule alike)
ALL_RULES = "*"

#: events raised about users nudge knows, by nudge itself (a price drop for a product's
#: watcher) or by its mailer (a bounce of a mail nudge sent): for a user without a
#: profile (erased or expired since) they are dropped, not the start of a new one
FOR_KNOWN_USERS = frozenset({"price.alert", "bounce"})  # streams.catalog.ALERT_EVENT


def _erased(step: UserStep, event: Event, now: datetime) -> Decision:
    """The decision that an event dated before the user's erasure is not applied."""
    assert step.tombstone_ms is not None
    return Decision(
        ALL_RULES,
        event.user_id,
        "suppressed",
        "erased",
        event.event_id,
        now,
        detail=f"dated before the erasure at {from_ms(step.tombstone_ms).isoformat()}",
        model_version=step.model,
    )


def _erase(step: UserStep, profile: Profile | None, event: Event) -> None:
    """Record what erasing the user takes along: the events applied so far (their dedup
    records), the address (onto the suppression list), the watcher lists naming them,
    and what the statistics would learn from them in this batch.

    The erase time covers every event the erased profile held, so no redelivery of one
    of them dated after the ``erase`` event can rebuild it.
    """
    at = event.ts_ms if profile is None else max(event.ts_ms, ms(profile.last_seen))
    step.erased_ms = step.tombstone_ms = max(at, step.tombstone_ms or at)
    step.applied.clear()
    step.observed.clear()
    if profile is not None:
        if profile.email is not None:
            step.suppression.suppress(profile.email, at)
        _forget_watching(step, profile)


def _forget_watching(step: UserStep, profile: Profile) -> None:
    """Take the leaving user off the watcher lists their profile knows of."""
    step.forget.setdefault(profile.user_id, set()).update(personal_products(profile))


def _partitions(partition: int, profile: Profile) -> list[int]:
    """Where a leaving user's timers may be: ``partition`` and the one their profile
    recorded (their events may have moved since it was scheduled)."""
    known = {partition} if profile.partition is None else {partition, profile.partition}
    return sorted(known)


def _apply_one(
    ruleset: RuleSet,
    step: UserStep,
    event: Event,
    partition: int,
    now: datetime,
    lookups: Lookups,
) -> None:
    previous = step.profile
    step.observed.append(_observed(ruleset, previous, event))
    before = Before.of(previous, ruleset)
    scoring = ruleset.config.scoring
    after = apply_event(previous, event, scoring, products=lookups.products, in_place=True)
    cancels: frozenset[str] = frozenset()
    if after is not None:
        after.partition = partition
        if event.type in ADDRESS_EVENTS:
            released = check_address(after, event, lookups.erased_addresses)
            if released is not None:
                step.suppression.release(released)
        if event.type in _ATTRIBUTED:
            _attribute(ruleset, step, after, event)
        cancels = _refresh(ruleset, step, after, event.ts, partition).cancels
    elif event.type == "erase":
        _erase(step, previous, event)
    outcome = evaluate_event(ruleset, event, before, after, partition, cancels)
    # an erased user's timers are cancelled against the profile they had, in the
    # partition of this event and the one their timers were scheduled in
    timeline = step.timeline(after if after is not None else previous, now)
    partitions = (
        [partition] if after is not None or previous is None else _partitions(partition, previous)
    )
    for tid, reason in outcome.cancel.items():
        for where in partitions:
            timeline.cancel(where, tid, reason, by=event.event_id)
    for timer, log in outcome.schedule:
        timeline.schedule(timer, event.type, log=log)
    if ruleset.retention is not None and after is not None:
        _retain(ruleset.retention, step, after, partition, now)
    step.absorb(resolve(ruleset, outcome.firings, after, now, lookups))
    step.profile = after


#: events counted for the mail before them (see :mod:`profiles.attribution`)
_ATTRIBUTED = frozenset({"email_open", "email_click", "purchase"})


def _attribute(ruleset: RuleSet, step: UserStep, profile: Profile, event: Event) -> None:
    window = ruleset.config.attribution.window
    for credit in attribute(profile.exposures, event, window):
        name = counter_field(credit.experiment, credit.arm, credit.metric)
        step.counters[name] = step.counters.get(name, 0.0) + credit.amount


#: events whose local hour the statistics count (the population's best send hour)
_ENGAGEMENT = frozenset({"email_open", "email_click"})


def _observed(ruleset: RuleSet, profile: Profile | None, event: Event) -> Observed:
    if event.type == "add_to_cart" and profile is not None:
        return Observed(event, in_cart=tuple(profile.cart.items))
    if event.type in _ENGAGEMENT:
        timezone = profile.timezone if profile else None
        hour = local_hour(event.ts, timezone, ruleset.config.scoring.send_hours)
        return Observed(event, local_hour=hour)
    return Observed(event)


@dataclass(frozen=True)
class Probed:
    """Memberships evaluated at ``at`` from a profile holding ``fingerprint``."""

    at: datetime
    fingerprint: tuple[Any, ...]
    held: Memberships

    def still(self, at: datetime, fingerprint: tuple[Any, ...]) -> bool:
        """Whether they still hold at ``at``: nothing they read changed, and no noted
        time-based flip lies between (the margin covers the moments' millisecond tick)."""
        check = self.held.next_check
        in_time = self.at <= at and (check is None or at + _MARGIN < check)
        return in_time and fingerprint == self.fingerprint


#: see :meth:`Probed.still`
_MARGIN = timedelta(milliseconds=2)


def _memberships(ruleset: RuleSet, step: UserStep, profile: Profile, at: datetime) -> Memberships:
    """:func:`memberships`, or the step's last ones if they provably still hold."""
    probe = ruleset.probe
    reads = probe.reads if isinstance(probe, CompiledProbe) else None
    fingerprint = None if reads is None else reads.fingerprint(profile)
    if fingerprint is None:
        step.probed = None
        return memberships(ruleset, profile, at)
    if step.probed is not None and step.probed.still(at, fingerprint):
        return step.probed.held
    held = memberships(ruleset, profile, at)
    step.probed = Probed(at, fingerprint, held)
    return held


def _refresh(
    ruleset: RuleSet, step: UserStep, profile: Profile, at: datetime, partition: int
) -> Memberships:
    """Bring segments and watched rules up to ``at``, and the re-check timer with them."""
    held = _memberships(ruleset, step, profile, at)
    profile.segments, profile.watched, profile.observed = held.segments, held.watched, held.observed
    tid = timer_id(RECHECK, profile.user_id)
    if held.next_check is None:
        if tid in profile.timers:
            step.timeline(profile, at).cancel(partition, tid, "")
        return held
    recheck = recheck_timer(profile.user_id, held.next_check, partition)
    if profile.timers.get(tid) != recheck.due_ms:
        step.timeline(profile, at).schedule(recheck, "")
    return held


def _retain(
    retention: timedelta, step: UserStep, profile: Profile, partition: int, now: datetime
) -> None:
    """Keep the user's retention timer at their last event plus ``retention`` (an op only
    when it moves)."""
    due_ms = retention_due_ms(profile.last_seen, retention)
    if profile.timers.get(timer_id(RETENTION, profile.user_id)) != due_ms:
        timer = retention_timer(profile.user_id, due_ms, partition)
        step.timeline(profile, now).schedule(timer, "")


def fire_user_timers(
    ruleset: RuleSet,
    profile: Profile | None,
    timers: Sequence[Timer],
    now: datetime,
    lookups: Lookups = NO_LOOKUPS,
) -> UserStep:
    """Resolve one user's due timers, a moment at a time.

    Timers due within the same second are one moment: they arbitrate against each other,
    as the firings of one event do. Moments resolve in due order; once the profile has
    expired, the later ones are left (the expiry cancelled their timers).
    """
    step = UserStep(profile=profile, model=ruleset.model_version)
    moments: dict[int, list[Timer]] = {}
    for timer in sorted(timers, key=lambda t: (t.due_ms, t.id)):
        moments.setdefault(timer.due_ms // MOMENT_MS, []).append(timer)
    for moment in moments.values():
        if step.expired:
            break
        _fire_moment(ruleset, step, moment, now, lookups)
    return step


def _fire_moment(
    ruleset: RuleSet, step: UserStep, timers: list[Timer], now: datetime, lookups: Lookups
) -> None:
    profile = step.profile
    firings = []
    retention: Timer | None = None
    for timer in timers:
        if profile is not None and profile.timers.get(timer.id) == timer.due_ms:
            del profile.timers[timer.id]
        if timer.rule_id == RECHECK:
            firings += _recheck(ruleset, step, timer, now)
            continue
        if timer.rule_id == RETENTION:
            retention = timer  # after the moment's sends: an expiry takes their follow-ups
            continue
        rule = ruleset.rule(timer.rule_id)
        stale = rule is None or (
            timer.step is not None and timer.step >= len(getattr(rule, "steps", []))
        )
        if rule is None or stale:
            reason = "rule_removed" if rule is None else "rule_changed"
            step.decisions.append(
                Decision(
                    timer.rule_id,
                    timer.user_id,
                    "suppressed",
                    reason,
                    timer.trigger_event_id,
                    now,
                    step=timer.step,
                    key=timer.key,
                    model_version=used_model(step.model, profile),
                )
            )
            continue
        firings.append(Firing.from_timer(rule, timer))
    step.absorb(resolve(ruleset, firings, profile, now, lookups))
    if retention is not None:
        _retention_due(ruleset, step, retention, now)


def _retention_due(ruleset: RuleSet, step: UserStep, timer: Timer, now: datetime) -> None:
    """The user's retention timer fell due: their profile expires, unless an event came
    since (or the retention grew): then the timer moves to the new expiry. With retention
    turned off it does nothing."""
    profile, retention = step.profile, ruleset.retention
    if profile is None or retention is None:
        return
    due_ms = retention_due_ms(profile.last_seen, retention)
    if due_ms <= ms(now):
        _expire(step, profile, timer, now)
    elif profile.timers.get(timer.id) != due_ms:
        partition = timer.partition if profile.partition is None else profile.partition
        step.timeline(profile, now).schedule(retention_timer(timer.user_id, due_ms, partition), "")


#: the reason of the cancellations an expiry makes
RETENTION_REASON = "retention"


def _expire(step: UserStep, profile: Profile, timer: Timer, now: datetime) -> None:
    """Delete the profile of a user without an event for the retention: their pending
    timers are cancelled (reason ``retention``), and their dedup records and their places
    on watcher lists go with the profile.

    It is no erasure: no tombstone and no suppression list entry. A later event of the
    user builds a fresh profile (a redelivered old one too: its dedup record is gone).
    """
    timeline = step.timeline(profile, now)
    detail = f"no event since {profile.last_seen.isoformat()}"
    for tid in sorted(profile.timers):
        for where in _partitions(timer.partition, profile):
            timeline.cancel(where, tid, RETENTION_REASON, by=timer.trigger_event_id, detail=detail)
    _forget_watching(step, profile)
    step.profile = None
    step.expired = True


def _recheck(ruleset: RuleSet, step: UserStep, timer: Timer, now: datetime) -> list[Firing]:
    """Time passed a segment or threshold boundary: what entered fires, like on an event."""
    profile = step.profile
    if profile is None:
        return []
    rules = _entered(ruleset, step, profile, now, timer.partition)
    return [Firing(r, profile.user_id, timer.trigger_event, timer.partition) for r in rules]


def _entered(
    ruleset: RuleSet, step: UserStep, profile: Profile, at: datetime, partition: int
) -> list[Rule]:
    """Bring memberships up to ``at``; the rules whose condition the user entered."""
    before = Before.of(profile, ruleset)
    _refresh(ruleset, step, profile, at, partition)
    return entered(ruleset, before, profile)


def rescored(
    ruleset: RuleSet,
    step: UserStep,
    now: datetime,
    lookups: Lookups = NO_LOOKUPS,
    *,
    before: Predicted | None = None,
    baseline: bool = False,
) -> None:
    """The user of ``step`` has new scores (``before``: the scores they replaced):
    re-evaluate their segments and thresholds at ``now`` as a re-check does, and fire
    what entered.

    ``baseline``: the scores are the user's first from this model (none before, or
    another model's). The memberships that read scores are then taken as they are, since
    moving from no score or another model's score is no crossing (a retrain would
    otherwise mail everyone whose score moved across a bound); the others still fire.

    Each firing's trigger is :func:`prediction_trigger` of the scores replaced and of the
    rule's last send: committed state, so a redelivery (however it is cut into batches,
    and whenever it runs) yields the same request ids, while a second crossing after a
    send yields a new one.
    """
    profile = step.profile
    if profile is None or profile.predicted is None:
        return
    if baseline:
        rebaseline(ruleset, profile, now)
    elif _scores_moved_nothing(ruleset, profile, before, now):
        return
    partition = profile.partition or 0
    rules = _entered(ruleset, step, profile, now, partition)
    if not rules:
        return
    scored = before or profile.predicted
    refresh = ruleset.config.predictions.refresh
    firings = [
        Firing(rule, profile.user_id, _trigger(profile, scored, rule.id, refresh), partition)
        for rule in rules
    ]
    step.absorb(resolve(ruleset, firings, profile, now, lookups))


def _scores_moved_nothing(
    ruleset: RuleSet, profile: Profile, before: Predicted | None, now: datetime
) -> bool:
    """Whether the new scores leave every condition that reads them as it was, and the
    user's re-scoring moment where it was: then the full re-evaluation can be skipped
    (the rest of the memberships were brought up to date at the user's events)."""
    if before is None:
        return False
    # the pending re-check must come by the new scores' re-scoring moment (else it moves)
    due = profile.timers.get(timer_id(RECHECK, profile.user_id))
    rescore = rescore_at(profile.user_id, now, ruleset.config.predictions.refresh)
    if due is None or not ms(now) < due <= ms(rescore):
        return False
    held = set(ruleset.score_probe(context(ruleset, profile, now)))
    was = {f"segment:{name}" for name in profile.segments if name in ruleset.scored_segments}
    was |= {f"threshold:{r}" for r in profile.watched if r in ruleset.scored_thresholds}
    return held == was


def _trigger(
    profile: Profile, scored: Predicted, rule_id: str, refresh: timedelta
) -> dict[str, Any]:
    last = profile.fired.get(rule_id)
    return prediction_trigger(profile.user_id, scored, refresh, last_sent=last)


def rebaseline(ruleset: RuleSet, profile: Profile, now: datetime) -> None:
    """Take ``profile``'s memberships that read the model's scores as they are now,
    without firing (its scores are the first from this model, see :func:`rescored`);
    the others are left for the next evaluation to compare."""
    held = memberships(ruleset, profile, now)
    scored = ruleset.scored_segments
    segments = set(held.segments) & scored | set(profile.segments) - scored
    profile.segments = [name for name in ruleset.config.segments if name in segments]
    reads = {rule.id for rule in ruleset.watching if ruleset.reads_scores(rule)}
    watched = set(held.watched) & reads | set(profile.watched) - reads
    profile.watched = sorted(watched)

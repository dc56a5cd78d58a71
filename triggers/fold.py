"""Fold one user's events, or one user's due timers, into a profile and its effects.

Both functions are pure: the same snapshot, events and time give the same profile,
timer changes, decisions and send requests. The engine makes the results durable; the
simulator keeps them in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from profiles import Event, Profile, Snapshot, Timer, TimerOps, apply_event
from triggers.contracts import Decision, SendRequest
from triggers.decide import Resolution, resolve
from triggers.evaluate import Before, Firing, evaluate_event, memberships
from triggers.loader import RuleSet

__all__ = ["UserStep", "apply_user_events", "fire_user_timers"]


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

    def absorb(self, resolution: Resolution) -> None:
        self.sends += resolution.sends
        self.decisions += resolution.decisions
        self.ops.merge(resolution.ops)


def apply_user_events(
    ruleset: RuleSet,
    snapshot: Snapshot,
    events: Sequence[tuple[Event, int]],
    now: datetime,
) -> UserStep:
    """Apply ``(event, partition)`` pairs in order, skipping events already applied.

    The snapshot's profile is updated in place and becomes ``UserStep.profile``: the
    caller hands over a profile it owns (a fresh load), which saves a copy per event.
    """
    step = UserStep(profile=snapshot.profile)
    seen = set(snapshot.seen)
    for event, partition in events:
        if event.event_id in seen:
            step.duplicates += 1
            continue
        seen.add(event.event_id)
        before = Before.of(step.profile)
        after = apply_event(step.profile, event, ruleset.config.scoring, in_place=True)
        if after is not None:
            after.partition = partition
            after.segments, after.watched = memberships(ruleset, after, event.ts)
        outcome = evaluate_event(ruleset, event, before, after, partition)
        for tid in outcome.cancel:
            step.ops.remove(partition, tid)
            if after is not None:
                after.timers.pop(tid, None)
        for timer in outcome.schedule:
            step.ops.add(timer)
            if after is not None:
                after.timers[timer.id] = timer.due_ms
        step.absorb(resolve(ruleset, outcome.firings, after, now))
        step.applied.append((event.event_id, event.ts_ms))
        step.types[event.type] += 1
        step.profile = after
    return step


#: timers of one user due within the same window count as one moment (they arbitrate)
MOMENT_MS = 1000


def fire_user_timers(
    ruleset: RuleSet, profile: Profile | None, timers: Sequence[Timer], now: datetime
) -> UserStep:
    """Resolve one user's due timers, a moment at a time.

    Timers due within the same second are one moment: they arbitrate against each other,
    as the firings of one event do. Moments resolve in due order.
    """
    step = UserStep(profile=profile)
    moments: dict[int, list[Timer]] = {}
    for timer in sorted(timers, key=lambda t: (t.due_ms, t.id)):
        moments.setdefault(timer.due_ms // MOMENT_MS, []).append(timer)
    for moment in moments.values():
        _fire_moment(ruleset, step, moment, now)
    return step


def _fire_moment(ruleset: RuleSet, step: UserStep, timers: list[Timer], now: datetime) -> None:
    profile = step.profile
    firings = []
    for timer in timers:
        if profile is not None and profile.timers.get(timer.id) == timer.due_ms:
            del profile.timers[timer.id]
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
                )
            )
            continue
        firings.append(Firing.from_timer(rule, timer))
    step.absorb(resolve(ruleset, firings, profile, now))

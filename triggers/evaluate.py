"""What one event does to each rule: pure functions, no I/O.

:func:`evaluate_event` looks at an event and the profile before and after it, and says
which rules fire now, which timers to (re)schedule and which to cancel, and why. Guards
and rendering come after, in :mod:`triggers.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from profiles import Event, Profile, Timer, timer_id
from profiles.events import Unsubscribe
from triggers.firing import Firing, date_timer, ms
from triggers.loader import RuleSet
from triggers.rules import (
    AbsenceRule,
    DateRule,
    InactivityRule,
    OnEventRule,
    Rule,
    SequenceRule,
    ThresholdRule,
)
from triggers.schedule import raw_date
from triggers.timeline import Logged

__all__ = ["Before", "EventOutcome", "entered", "evaluate_event", "key_values"]

#: events after which a user gets no new timers, and loses the pending ones; an
#: ``unsubscribe`` from one subscription does that to that subscription's rules only
STOP_EVENTS = frozenset({"unsubscribe", "erase"})


def left_subscription(event: Event) -> str | None:
    """The one subscription an ``unsubscribe`` event leaves (``None``: not such an event,
    or it leaves every marketing mail)."""
    if event.type != "unsubscribe":
        return None
    props = event.typed
    return props.category if isinstance(props, Unsubscribe) else None


@dataclass(frozen=True)
class Before:
    """What evaluation needs of the profile as it was before the event."""

    #: the pending timer ids (unordered: :meth:`pending` sorts them when needed)
    timers: tuple[str, ...] = ()
    watched: frozenset[str] = frozenset()
    #: threshold rules with a previous value (``None``: stored before nudge kept this)
    observed: frozenset[str] | None = frozenset()
    #: what date rules compute their timers from (see :func:`date_inputs`)
    dates: tuple[object, ...] = ()

    @classmethod
    def of(cls, profile: Profile | None, ruleset: RuleSet) -> Before:
        if profile is None:
            return cls()
        observed = None if profile.observed is None else frozenset(profile.observed)
        return cls(
            tuple(profile.timers),
            frozenset(profile.watched),
            observed,
            date_inputs(profile, ruleset),
        )

    def pending(self) -> list[str]:
        """The timer ids that were pending, in order."""
        return sorted(self.timers)


def date_inputs(profile: Profile, ruleset: RuleSet) -> tuple[object, ...]:
    """The watched dates (as stored) and the time zone: date timers move only when these
    change."""
    return (profile.timezone, *(raw_date(profile, f) for f in ruleset.date_fields))


@dataclass
class EventOutcome:
    firings: list[Firing] = field(default_factory=list)
    #: timers to schedule, each with which of its schedulings are logged
    schedule: list[tuple[Timer, Logged]] = field(default_factory=list)
    #: timer id -> why it is cancelled (the cancelling event type, a ``cancel_when`` name)
    cancel: dict[str, str] = field(default_factory=dict)


def entered(ruleset: RuleSet, before: Before, after: Profile) -> list[Rule]:
    """The segment_entry and threshold rules whose condition now holds and did not before.

    A threshold crossing needs a previous value on the other side: a rule that was never
    evaluated for this user (a brand-new user, a rule added since) does not fire yet.
    """
    found: list[Rule] = []
    for rule in ruleset.watching:
        if rule.id not in after.watched or rule.id in before.watched:
            continue
        known = before.observed is None or rule.id in before.observed
        if isinstance(rule, ThresholdRule) and not known:
            continue
        found.append(rule)
    return found


def key_values(event: Event, key: str | None) -> list[str]:
    """The correlation values of ``event`` for ``key`` (``[""]`` when uncorrelated)."""
    if key is None:
        return [""]
    value = event.properties.get(key)
    if value is not None:
        return [str(value)]
    items = event.properties.get("items")
    if isinstance(items, list):
        found = {str(i[key]) for i in items if isinstance(i, dict) and i.get(key) is not None}
        return sorted(found)
    return []


def _pending(profile: Profile, rule: Rule) -> list[str]:
    prefix = timer_id(rule.id, profile.user_id, "")
    return sorted(tid for tid in profile.timers if tid.startswith(prefix))


class _Evaluation:
    """One event against every rule; the ``on_*`` methods add to ``outcome``."""

    def __init__(
        self,
        ruleset: RuleSet,
        event: Event,
        before: Before,
        after: Profile,
        partition: int,
        cancels: frozenset[str],
    ) -> None:
        self.ruleset = ruleset
        self.cancels = cancels
        self.event = event
        self.before = before
        self.after = after
        self.partition = partition
        self.outcome = EventOutcome()
        self.left = left_subscription(event)
        self._payload: dict[str, Any] | None = None
        self._dates_unchanged: bool | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The event as timers and templates keep it (only dumped if something fires)."""
        if self._payload is None:
            self._payload = self.event.model_dump(mode="json")
        return self._payload

    @property
    def dates_unchanged(self) -> bool:
        if self._dates_unchanged is None:
            self._dates_unchanged = self.before.dates == date_inputs(self.after, self.ruleset)
        return self._dates_unchanged

    def firing(self, rule: Rule, **extra: Any) -> Firing:
        return Firing(rule, self.event.user_id, self.payload, self.partition, **extra)

    def schedule(self, firing: Firing, due_ms: int, *, log: Logged = "all") -> None:
        self.outcome.schedule.append((firing.timer(due_ms), log))

    def cancel(self, tids: list[str], reason: str | None = None) -> None:
        for tid in tids:
            self.outcome.cancel[tid] = reason or self.event.type

    def on_absence(self, rule: AbsenceRule) -> None:
        if self.event.type in rule.start:
            if self.cancelled_when(rule):
                return
            # a start event without the key value starts (or moves) one unkeyed instance
            for key in key_values(self.event, rule.key) or [""]:
                if self.sent_once(rule):
                    # it could only be suppressed when due: decide now, keep no timer
                    self.outcome.firings.append(self.firing(rule, key=key))
                else:
                    self.schedule(self.firing(rule, key=key), ms(self.event.ts + rule.wait))
        elif self.event.type in rule.cancel:
            keys = key_values(self.event, rule.key)
            if keys and rule.key is not None:
                # the named instances, and the unkeyed one (it may be any of them)
                self.cancel([timer_id(rule.id, self.event.user_id, k) for k in ["", *keys]])
            else:  # no correlation value: the cancel event ends every instance
                self.cancel(_pending(self.after, rule))

    def sent_once(self, rule: Rule) -> bool:
        """``reentry: once`` and the rule already sent to this user."""
        return rule.reentry == "once" and rule.id in self.after.fired

    def cancelled_when(self, rule: AbsenceRule) -> bool:
        """Cancel every pending instance if one of ``cancel_when`` holds after the event."""
        for name in rule.cancel_when:
            if f"{rule.id}@{name}" in self.cancels:
                self.cancel(_pending(self.after, rule), name)
                return True
        return False

    def on_inactivity(self, rule: InactivityRule) -> None:
        if rule.events is None or self.event.type in rule.events:
            due = ms(self.after.last_seen + rule.wait)
            self.schedule(self.firing(rule), due, log="first")

    def on_date(self, rule: DateRule) -> None:
        tid = timer_id(rule.id, self.event.user_id, "")
        if tid in self.after.timers and self.dates_unchanged:
            return  # a pending anniversary stays put (even one just due, not yet fired)
        timer = date_timer(
            self.ruleset, rule, self.after, self.event.ts, self.partition, self.payload
        )
        if timer is None:
            if tid in self.after.timers:
                self.cancel([tid], "date_removed")
        elif self.after.timers.get(tid) != timer.due_ms:
            self.outcome.schedule.append((timer, "all"))

    def on_sequence(self, rule: SequenceRule) -> None:
        running = _pending(self.after, rule)
        if self.event.type in rule.exit:
            self.cancel(running)
            return
        if self.event.type not in rule.start or running:
            return
        if self.sent_once(rule):
            return
        first = self.firing(rule, step=0, started_ms=self.event.ts_ms)
        if rule.steps[0].delay == timedelta(0):
            self.outcome.firings.append(first)
        else:
            self.schedule(first, ms(self.event.ts + rule.steps[0].delay))

    def run(self) -> EventOutcome:
        # an erase or an unsubscribe from everything stops every rule, an unsubscribe from
        # one subscription that subscription's rules: they schedule nothing
        left = self.left
        stop = left is None and self.event.type in STOP_EVENTS
        entries = {rule.id for rule in entered(self.ruleset, self.before, self.after)}
        for rule in self.ruleset.affected_by(self.event.type):
            if isinstance(rule, OnEventRule):
                if self.event.type in rule.events:
                    self.outcome.firings.append(self.firing(rule))
            elif stop or (left is not None and rule.subscription == left):
                continue
            elif isinstance(rule, AbsenceRule):
                self.on_absence(rule)
            elif isinstance(rule, InactivityRule):
                self.on_inactivity(rule)
            elif isinstance(rule, DateRule):
                self.on_date(rule)
            elif isinstance(rule, SequenceRule):
                self.on_sequence(rule)
            elif rule.id in entries:
                self.outcome.firings.append(self.firing(rule))
        return self.outcome


def evaluate_event(
    ruleset: RuleSet,
    event: Event,
    before: Before,
    after: Profile | None,
    partition: int,
    cancels: frozenset[str] = frozenset(),
) -> EventOutcome:
    """What ``event`` does to each rule: fire now, (re)schedule a timer, cancel one.

    ``after`` is the profile after the event, its segments and watched rules up to date;
    ``cancels`` the ``cancel_when`` conditions that hold on it (see
    :func:`triggers.context.memberships`).
    """
    if after is None:  # erased
        return EventOutcome(cancel=dict.fromkeys(before.pending(), event.type))
    evaluation = _Evaluation(ruleset, event, before, after, partition, cancels)
    outcome, left = evaluation.run(), evaluation.left
    if left is not None:
        stopped = [tid for rule in ruleset.subscribed(left) for tid in _pending(after, rule)]
    elif event.type in STOP_EVENTS:
        stopped = before.pending()
    else:
        return outcome
    outcome.cancel = {**dict.fromkeys(stopped, event.type), **outcome.cancel}
    return outcome

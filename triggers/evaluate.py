"""What one event does to each rule: pure functions, no I/O.

:func:`evaluate_event` looks at an event and the profile before and after it, and says
which rules fire now, which timers to (re)schedule and which to cancel. Guards and
rendering come after, in :mod:`triggers.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from profiles import Event, Profile, Timer, timer_id
from triggers.conditions import helpers
from triggers.loader import RuleSet
from triggers.rules import (
    AbsenceRule,
    DateRule,
    InactivityRule,
    OnEventRule,
    Rule,
    SegmentEntryRule,
    SequenceRule,
    ThresholdRule,
)
from triggers.schedule import date_value, next_anniversary, user_zone

__all__ = [
    "Before",
    "EventOutcome",
    "Firing",
    "ProfileView",
    "context",
    "date_timer",
    "evaluate_event",
    "key_values",
    "memberships",
]

#: events after which a user gets no new timers, and loses the pending ones
STOP_EVENTS = frozenset({"unsubscribe", "erase"})


@dataclass(frozen=True)
class Firing:
    """A rule that wants to send now, for this user, because of this trigger event."""

    rule: Rule
    user_id: str
    trigger_event: dict[str, Any]
    partition: int = 0
    key: str = ""
    step: int | None = None
    instance: str = ""
    started_ms: int = 0

    @property
    def trigger_event_id(self) -> str:
        return str(self.trigger_event.get("event_id", ""))

    @property
    def template(self) -> str:
        if isinstance(self.rule, SequenceRule):
            return self.rule.steps[self.step or 0].template
        return self.rule.template

    @property
    def instance_id(self) -> str:
        """What tells this send apart from other sends of the same trigger instance."""
        return f"step{self.step}" if self.step is not None else self.instance

    def timer(self, due_ms: int, *, deferred: bool = False) -> Timer:
        return Timer(
            self.rule.id,
            self.user_id,
            due_ms,
            self.partition,
            self.trigger_event,
            key=self.key,
            step=self.step,
            instance=self.instance,
            started_ms=self.started_ms,
            deferred=deferred,
        )

    @classmethod
    def from_timer(cls, rule: Rule, timer: Timer) -> Firing:
        return cls(
            rule,
            timer.user_id,
            timer.trigger_event,
            timer.partition,
            timer.key,
            timer.step,
            timer.instance,
            timer.started_ms,
        )


@dataclass(frozen=True)
class Before:
    """What evaluation needs of the profile as it was before the event."""

    timers: tuple[str, ...] = ()
    watched: frozenset[str] = frozenset()

    @classmethod
    def of(cls, profile: Profile | None) -> Before:
        if profile is None:
            return cls()
        return cls(tuple(sorted(profile.timers)), frozenset(profile.watched))


@dataclass
class EventOutcome:
    firings: list[Firing] = field(default_factory=list)
    schedule: list[Timer] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class ProfileView:
    """A profile as conditions and templates see it: its attributes, read-only, uncopied,
    with ``score`` decayed to the moment of evaluation."""

    __slots__ = ("_profile", "score")

    def __init__(self, profile: Profile, score: float) -> None:
        self._profile = profile
        self.score = score

    def __getattr__(self, name: str) -> Any:
        return getattr(self._profile, name)


def context(
    ruleset: RuleSet, profile: Profile, now: datetime, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What conditions and templates see."""
    view = ProfileView(profile, round(profile.score_now(now, ruleset.config.scoring), 4))
    return {
        "event": event or {},
        "profile": view,
        "user": view,
        "cart": profile.cart,
        "segments": profile.segments,
        "now": now,
        **helpers(now),
    }


def memberships(ruleset: RuleSet, profile: Profile, now: datetime) -> tuple[list[str], list[str]]:
    """The segments the user is in, and the segment_entry/threshold rules whose condition holds."""
    held = ruleset.probe(context(ruleset, profile, now))
    segments = [h.removeprefix("segment:") for h in held if h.startswith("segment:")]
    watched = [h.removeprefix("threshold:") for h in held if h.startswith("threshold:")]
    watched += [
        rule.id
        for rule in ruleset.rules
        if isinstance(rule, SegmentEntryRule) and rule.segment in segments
    ]
    return segments, sorted(watched)


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
        self, ruleset: RuleSet, event: Event, before: Before, after: Profile, partition: int
    ) -> None:
        self.ruleset = ruleset
        self.event = event
        self.before = before
        self.after = after
        self.partition = partition
        self.payload = event.model_dump(mode="json")
        self.outcome = EventOutcome()

    def firing(self, rule: Rule, **extra: Any) -> Firing:
        return Firing(rule, self.event.user_id, self.payload, self.partition, **extra)

    def schedule(self, firing: Firing, due: datetime) -> None:
        self.outcome.schedule.append(firing.timer(ms(due)))

    def on_absence(self, rule: AbsenceRule) -> None:
        if self.event.type in rule.start:
            for key in key_values(self.event, rule.key):
                self.schedule(self.firing(rule, key=key), self.event.ts + rule.wait)
        elif self.event.type in rule.cancel:
            keys = key_values(self.event, rule.key)
            if keys and rule.key is not None:
                self.outcome.cancel += [timer_id(rule.id, self.event.user_id, k) for k in keys]
            else:  # no correlation value: the cancel event ends every instance
                self.outcome.cancel += _pending(self.after, rule)

    def on_inactivity(self, rule: InactivityRule) -> None:
        if rule.events is None or self.event.type in rule.events:
            self.schedule(self.firing(rule), self.after.last_seen + rule.wait)

    def on_date(self, rule: DateRule) -> None:
        tid = timer_id(rule.id, self.event.user_id, "")
        timer = date_timer(
            self.ruleset, rule, self.after, self.event.ts, self.partition, self.payload
        )
        if timer is None:
            if tid in self.after.timers:
                self.outcome.cancel.append(tid)
        elif self.after.timers.get(tid) != timer.due_ms:
            self.outcome.schedule.append(timer)

    def on_watch(self, rule: SegmentEntryRule | ThresholdRule) -> None:
        if rule.id in self.after.watched and rule.id not in self.before.watched:
            self.outcome.firings.append(self.firing(rule))

    def on_sequence(self, rule: SequenceRule) -> None:
        running = _pending(self.after, rule)
        if self.event.type in rule.exit:
            self.outcome.cancel += running
            return
        if self.event.type not in rule.start or running:
            return
        if rule.reentry == "once" and rule.id in self.after.fired:
            return
        first = self.firing(rule, step=0, started_ms=self.event.ts_ms)
        if rule.steps[0].delay == timedelta(0):
            self.outcome.firings.append(first)
        else:
            self.schedule(first, self.event.ts + rule.steps[0].delay)

    def run(self) -> EventOutcome:
        stop = self.event.type in STOP_EVENTS
        for rule in self.ruleset.rules:
            if isinstance(rule, OnEventRule):
                if self.event.type in rule.events:
                    self.outcome.firings.append(self.firing(rule))
            elif stop:
                continue
            elif isinstance(rule, AbsenceRule):
                self.on_absence(rule)
            elif isinstance(rule, InactivityRule):
                self.on_inactivity(rule)
            elif isinstance(rule, DateRule):
                self.on_date(rule)
            elif isinstance(rule, SegmentEntryRule | ThresholdRule):
                self.on_watch(rule)
            elif isinstance(rule, SequenceRule):
                self.on_sequence(rule)
        return self.outcome


def date_timer(
    ruleset: RuleSet,
    rule: DateRule,
    profile: Profile,
    after: datetime,
    partition: int,
    trigger_event: dict[str, Any],
) -> Timer | None:
    """The next anniversary timer of ``rule`` for ``profile`` after ``after`` (if dated)."""
    value = date_value(profile, rule.field)
    if value is None:
        return None
    zone = user_zone(profile, ruleset.config.guards)
    due = next_anniversary(value, after, offset_days=rule.offset_days, at=rule.at, zone=zone)
    firing = Firing(
        rule,
        profile.user_id,
        trigger_event,
        partition,
        instance=due.astimezone(zone).date().isoformat(),
    )
    return firing.timer(ms(due))


def evaluate_event(
    ruleset: RuleSet, event: Event, before: Before, after: Profile | None, partition: int
) -> EventOutcome:
    """What ``event`` does to each rule: fire now, (re)schedule a timer, cancel one.

    ``after`` is the profile after the event, its segments and watched rules up to date.
    """
    if after is None or event.type in STOP_EVENTS:
        if after is None:
            return EventOutcome(cancel=list(before.timers))
        outcome = _Evaluation(ruleset, event, before, after, partition).run()
        outcome.cancel = list(before.timers) + outcome.cancel
        return outcome
    return _Evaluation(ruleset, event, before, after, partition).run()

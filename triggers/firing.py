"""Firings and the timers that carry them to a later moment.

A :class:`Firing` is a rule that wants to send now, for one user, because of one trigger
event; :meth:`Firing.timer` parks it until a due time and :meth:`Firing.from_timer`
brings it back. Besides the rules' own timers, each user may have one *re-check* timer
(:data:`RECHECK`): the moment a time-based segment or threshold can next change, and,
with a profile retention set, one *retention* timer (:data:`RETENTION`): the moment the
profile, untouched since, expires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from profiles import Profile, Timer
from triggers.loader import RuleSet
from triggers.rules import DateRule, Rule, SequenceRule
from triggers.schedule import date_value, next_anniversary, user_zone

__all__ = [
    "FUTURE_SKEW_MS",
    "MOMENT_MS",
    "OWN_TIMERS",
    "RECHECK",
    "RETENTION",
    "Firing",
    "date_timer",
    "end_of_previous_moment",
    "from_ms",
    "ms",
    "recheck_timer",
    "retention_due_ms",
    "retention_timer",
    "whole_moment_ms",
]

#: timers of one user due within the same window count as one moment (they arbitrate)
MOMENT_MS = 1000

#: how far ahead of the wall clock an event's time may count (ms): producers' clocks run
#: a little ahead, not hours; an event from further ahead fires no timers early
FUTURE_SKEW_MS = 5_000

#: the rule id of re-check timers (rule ids start with a letter, so it cannot clash)
RECHECK = "~recheck"
#: the rule id of retention timers
RETENTION = "~retention"
#: the engine's own timers: no rule's, so reloads leave them be and their scheduling,
#: moves and cancellations are no decisions
OWN_TIMERS = frozenset({RECHECK, RETENTION})

_MS = timedelta(milliseconds=1)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def end_of_previous_moment(at: datetime) -> datetime:
    """The last millisecond of the moment (second) before the one ``at`` falls in: how
    far timers may fire before anything of ``at``'s moment happens (a moment's timers
    fire once it has ended, after its events)."""
    return from_ms(ms(at) // MOMENT_MS * MOMENT_MS - 1)


def whole_moment_ms(epoch_ms: float) -> int:
    """The start of the first whole moment at or after ``epoch_ms``."""
    return math.ceil(epoch_ms / MOMENT_MS) * MOMENT_MS


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
    #: it comes back from a deferral (quiet hours, best hour): it is not deferred to a
    #: best hour again
    deferred: bool = False

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

    def timer(self, due_ms: int, *, deferred_by: str = "") -> Timer:
        """This firing as a timer due at ``due_ms``; with ``deferred_by``, a send held back
        by that guard (``quiet_hours``, ``best_hour``)."""
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
            deferred=bool(deferred_by),
            deferred_by=deferred_by,
        )

    @classmethod
    def from_timer(cls, rule: Rule, timer: Timer) -> Firing:
        return cls(
            rule,
            timer.user_id,
            timer.trigger_event,
            partition=timer.partition,
            key=timer.key,
            step=timer.step,
            instance=timer.instance,
            started_ms=timer.started_ms,
            deferred=timer.deferred,
        )


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


def recheck_timer(user_id: str, due: datetime, partition: int) -> Timer:
    """The re-check of ``user_id``'s time-based segments and thresholds at ``due``.

    Due at a whole moment, so the same crossing always gives the same timer (and the
    same trigger event id, which request ids are made of).
    """
    due_ms = whole_moment_ms(ms(due))
    trigger = {"event_id": f"recheck:{due_ms}", "type": "recheck"}
    return Timer(RECHECK, user_id, due_ms, partition, trigger)


def retention_due_ms(last_seen: datetime, retention: timedelta) -> int:
    """When a profile last seen at ``last_seen`` expires: the whole moment at or after
    ``last_seen + retention`` (events within one second leave it where it is)."""
    return whole_moment_ms(ms(last_seen) + retention // _MS)


def retention_timer(user_id: str, due_ms: int, partition: int) -> Timer:
    """The expiry of ``user_id``'s profile at ``due_ms`` (see :func:`retention_due_ms`),
    unless an event of theirs moves it."""
    trigger = {"event_id": f"retention:{due_ms}", "type": "retention"}
    return Timer(RETENTION, user_id, due_ms, partition, trigger)

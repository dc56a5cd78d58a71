"""The one place that changes a user's pending timers.

A timer change has three parts that must not drift apart: the store op (:class:`TimerOps`),
the profile's own copy of its pending timers (``profile.timers``, which lets
``unsubscribe`` cancel them without scanning partitions) and the decision that tells
``explain`` and the ``nudge.decisions`` topic what happened (``scheduled``,
``rescheduled``, ``cancelled``). :class:`Timeline` makes all three together. The
engine's own timers (re-check, retention: :data:`triggers.firing.OWN_TIMERS`) make no
decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from profiles import Profile, Timer, TimerOps
from triggers.contracts import Decision, Outcome
from triggers.firing import OWN_TIMERS, from_ms
from triggers.predict import used_model

__all__ = ["Logged", "Timeline"]

#: which of a timer's schedulings become decisions: all, the first only, none
Logged = Literal["all", "first", "none"]


@dataclass
class Timeline:
    """Timer changes of one user at ``now``, recorded into ``ops`` and ``decisions``."""

    profile: Profile | None
    ops: TimerOps
    decisions: list[Decision]
    now: datetime
    #: the loaded prediction model's version (decisions record the one they used)
    model: str | None = None

    def schedule(self, timer: Timer, reason: str, *, log: Logged = "all") -> None:
        """Schedule ``timer``, or move the pending one with its id.

        ``reason`` says what scheduled it (the event type, ``next_step``, ...). ``log``:
        ``"first"`` logs the first scheduling but not the moves (an inactivity timer moves
        with every event of the user; ``explain`` shows where it stands), ``"none"``
        nothing (a send deferred by quiet hours has its own ``deferred`` decision).
        """
        previous = self.profile.timers.get(timer.id) if self.profile is not None else None
        self.ops.add(timer)
        if self.profile is not None:
            self.profile.timers[timer.id] = timer.due_ms
        if log == "none" or timer.rule_id in OWN_TIMERS or previous == timer.due_ms:
            return
        if previous is not None and log == "first":
            return
        outcome: Outcome = "scheduled" if previous is None else "rescheduled"
        self._log(
            Decision(
                timer.rule_id,
                timer.user_id,
                outcome,
                reason,
                timer.trigger_event_id,
                self.now,
                step=timer.step,
                key=timer.key,
                due=from_ms(timer.due_ms),
                model_version=used_model(self.model, self.profile),
            )
        )

    def cancel(
        self, partition: int, tid: str, reason: str, *, by: str = "", detail: str = ""
    ) -> None:
        """Cancel timer ``tid``; logged when it was pending. ``by``: the cancelling event id."""
        pending = self.profile is not None and self.profile.timers.pop(tid, None) is not None
        self.ops.remove(partition, tid)
        rule_id, _, rest = tid.partition("|")
        if not pending or rule_id in OWN_TIMERS or self.profile is None:
            return
        key = rest.removeprefix(f"{self.profile.user_id}|")
        self._log(
            Decision(
                rule_id,
                self.profile.user_id,
                "cancelled",
                reason,
                by,
                self.now,
                detail=detail,
                key=key,
                model_version=used_model(self.model, self.profile),
            )
        )

    def _log(self, decision: Decision) -> None:
        self.decisions.append(decision)
        # the profile keeps what ended a timer; while one is pending, it says where it stands
        if self.profile is not None and decision.outcome == "cancelled":
            self.profile.record_decision(decision.as_dict())

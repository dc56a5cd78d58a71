"""Rule evaluation: pure functions of (rules, event or timer, profile, now).

Nothing here does I/O. :func:`apply_user_events` folds a user's events into the profile
and returns the timers to schedule or cancel and the rules to fire now;
:func:`decide` applies the guards to one firing and renders the send request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from profiles import Event, Profile, Snapshot, Timer, TimerOps, apply_event
from render import RenderError
from triggers.contracts import Decision, SendRequest, request_id
from triggers.loader import RuleSet
from triggers.rules import AbsenceRule, InactivityRule, OnEventRule, Rule

__all__ = ["Firing", "UserStep", "apply_user_events", "decide", "evaluate_event"]

#: events after which a user gets no new timers, and loses the pending ones
_STOP_EVENTS = frozenset({"unsubscribe", "erase"})


@dataclass(frozen=True)
class Firing:
    """A rule that wants to send now, for this user, because of this trigger event."""

    rule: Rule
    user_id: str
    trigger_event: dict[str, Any]
    key: str = ""

    @property
    def trigger_event_id(self) -> str:
        return str(self.trigger_event.get("event_id", ""))


@dataclass
class EventOutcome:
    firings: list[Firing] = field(default_factory=list)
    schedule: list[Timer] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


def _due(at: datetime, wait: timedelta) -> int:
    return int((at + wait).timestamp() * 1000)


def evaluate_event(
    ruleset: RuleSet, event: Event, before: Profile | None, after: Profile | None, partition: int
) -> EventOutcome:
    """What ``event`` does to each rule: fire now, (re)schedule a timer, cancel one."""
    outcome = EventOutcome()
    stop = event.type in _STOP_EVENTS
    if stop:
        outcome.cancel = sorted(before.timers) if before else []
    if after is None:
        return outcome
    payload = event.model_dump(mode="json")
    for rule in ruleset.rules:
        if isinstance(rule, OnEventRule) and event.type in rule.events:
            outcome.firings.append(Firing(rule, event.user_id, payload))
        elif stop:
            continue
        elif isinstance(rule, AbsenceRule):
            if event.type in rule.start:
                due = _due(event.ts, rule.wait)
                outcome.schedule.append(Timer(rule.id, event.user_id, due, partition, payload))
            elif event.type in rule.cancel:
                outcome.cancel.append(Timer(rule.id, event.user_id, 0, partition, {}).id)
        elif isinstance(rule, InactivityRule) and (
            rule.events is None or event.type in rule.events
        ):
            due = _due(after.last_seen, rule.wait)
            outcome.schedule.append(Timer(rule.id, event.user_id, due, partition, payload))
    return outcome


@dataclass
class UserStep:
    """The result of folding one user's batch of events into their profile."""

    profile: Profile | None
    applied: list[tuple[str, int]] = field(default_factory=list)
    duplicates: int = 0
    ops: TimerOps = field(default_factory=TimerOps)
    #: each firing with the profile as it was right after its trigger event
    firings: list[tuple[Firing, Profile | None]] = field(default_factory=list)


def apply_user_events(
    ruleset: RuleSet, snapshot: Snapshot, events: Sequence[tuple[Event, int]]
) -> UserStep:
    """Apply ``(event, partition)`` pairs in order, skipping events already applied."""
    step = UserStep(profile=snapshot.profile)
    seen = set(snapshot.seen)
    for event, partition in events:
        if event.event_id in seen:
            step.duplicates += 1
            continue
        seen.add(event.event_id)
        before = step.profile
        after = apply_event(before, event, ruleset.config.scoring)
        outcome = evaluate_event(ruleset, event, before, after, partition)
        for tid in outcome.cancel:
            step.ops.remove(partition, tid)
            if after is not None:
                after.timers.pop(tid, None)
        for timer in outcome.schedule:
            step.ops.add(timer)
            if after is not None:
                after.timers[timer.id] = timer.due_ms
        step.firings += [(firing, after) for firing in outcome.firings]
        step.applied.append((event.event_id, event.ts_ms))
        step.profile = after
    return step


def decide(
    ruleset: RuleSet, firing: Firing, profile: Profile | None, now: datetime
) -> tuple[Decision, SendRequest | None]:
    """Apply the guards to one firing; render the send request when it passes."""
    rule = firing.rule
    rid = request_id(rule.id, firing.user_id, firing.key, firing.trigger_event_id)

    def suppressed(reason: str) -> tuple[Decision, None]:
        decision = Decision(
            rule.id, firing.user_id, "suppressed", reason, firing.trigger_event_id, now
        )
        return decision, None

    if profile is None:
        return suppressed("no_profile")
    context = _context(ruleset, firing, profile, now)
    condition = ruleset.conditions.get(rule.id)
    if condition is not None and not condition(**context):
        return suppressed("condition_false")
    if not profile.email:
        return suppressed("no_email")
    if rule.category == "marketing" and not profile.email_consent:
        return suppressed("no_consent")
    try:
        email = ruleset.renderer.render(rule.template, context)
    except RenderError:
        return suppressed("render_error")
    sender = ruleset.config.sender
    headers = {}
    if rule.category == "marketing":
        headers["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    name = " ".join(p for p in (profile.first_name, profile.last_name) if p) or None
    send = SendRequest(
        request_id=rid,
        user_id=firing.user_id,
        to=profile.email,
        to_name=name,
        from_email=sender.from_email,
        from_name=sender.from_name,
        reply_to=sender.reply_to,
        rule_id=rule.id,
        template=rule.template,
        subject=email.subject,
        html=email.html,
        text=email.text,
        headers=headers,
        category=rule.category,
        trigger_event_id=firing.trigger_event_id,
        trigger_event_type=str(firing.trigger_event.get("type", "")),
        locale=profile.locale,
        tags=[rule.id, rule.kind],
        created_at=now,
    )
    decision = Decision(rule.id, firing.user_id, "fired", "ok", firing.trigger_event_id, now, rid)
    return decision, send


def _context(ruleset: RuleSet, firing: Firing, profile: Profile, now: datetime) -> dict[str, Any]:
    user = profile.context()
    user["score"] = round(profile.score_now(now, ruleset.config.scoring), 2)
    return {
        "event": firing.trigger_event,
        "profile": user,
        "user": user,
        "cart": user["cart"],
        "rule": {"id": firing.rule.id, "category": firing.rule.category},
        "now": now,
        "unsubscribe_url": ruleset.config.sender.unsubscribe_url.replace(
            "{user_id}", firing.user_id
        ),
    }

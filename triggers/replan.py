"""What a rules reload does to a pending timer: keep it, move it, or cancel it.

When a rule is removed or disabled its pending timers are cancelled (``rule_removed``);
when its kind changes, or a sequence loses the step a timer waits for, they are cancelled
too (``rule_changed``); when its ``wait`` or a step's ``delay`` changes they move by the
difference, so they fall due where the new rule would have put them. Sends deferred by
quiet hours keep their time (the send was already decided), and so do date timers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from profiles import Timer
from triggers.firing import OWN_TIMERS
from triggers.loader import RuleSet
from triggers.rules import AbsenceRule, InactivityRule, Rule, SequenceRule

__all__ = ["Replan", "replan_timer"]


@dataclass(frozen=True)
class Replan:
    """Cancel the timer (``cancel`` is the reason) or move it to ``due_ms``."""

    cancel: str = ""
    detail: str = ""
    due_ms: int | None = None


def _delay(rule: Rule, step: int | None) -> timedelta | None:
    """How long after its trigger a timer of ``rule`` falls due (``None``: not a delay)."""
    if isinstance(rule, AbsenceRule | InactivityRule):
        return rule.wait
    if isinstance(rule, SequenceRule) and step is not None and step < len(rule.steps):
        return rule.steps[step].delay
    return None


def replan_timer(previous: RuleSet, current: RuleSet, timer: Timer) -> Replan | None:
    """What switching from ``previous`` to ``current`` does to ``timer`` (``None``: nothing)."""
    if timer.rule_id in OWN_TIMERS:  # no rule's: a reload leaves them be
        return None
    rule = current.rule(timer.rule_id)
    if rule is None:
        disabled = any(r.id == timer.rule_id for r in current.config.rules)
        return Replan("rule_removed", "disabled" if disabled else "removed from the rules")
    old = previous.rule(timer.rule_id)
    if old is None or timer.deferred:
        return None
    if rule.kind != old.kind:
        return Replan("rule_changed", f"kind {old.kind} became {rule.kind}")
    before, after = _delay(old, timer.step), _delay(rule, timer.step)
    if isinstance(rule, SequenceRule) and after is None:
        return Replan("rule_changed", f"step {timer.step} no longer exists")
    if before is None or after is None or before == after:
        return None
    return Replan(due_ms=timer.due_ms + int((after - before) / timedelta(milliseconds=1)))

"""Conditions: compiled once at load, evaluated as pure functions of a context.

A condition is a sandboxed Jinja2 expression (``profile.cart.item_count > 0``,
``event.properties.category in ['kitchen', 'home']``, ``within(profile.last_purchase_at,
'30d')``, ``'vip' in segments``) or a nested ``all`` / ``any`` / ``not`` of them. A name
that does not exist is simply undefined (false), never an error at evaluation time;
``nudge validate`` reports unknown fields instead (:mod:`triggers.fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from render import build_expression_environment
from triggers.durations import parse_duration
from triggers.rules import AllOf, AnyOf, Condition, NotOf

__all__ = [
    "CompiledCondition",
    "ConditionSyntaxError",
    "Probe",
    "compile_condition",
    "compile_probe",
    "expression_tree",
    "expressions",
    "helpers",
    "to_expression",
]

CompiledCondition = Callable[[Mapping[str, Any]], bool]
#: many named conditions evaluated in one go: context -> the names that hold
Probe = Callable[[Mapping[str, Any]], list[str]]

_ENV = build_expression_environment()


class ConditionSyntaxError(ValueError):
    """An expression does not parse; ``expression`` is the offending text."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(f"invalid expression {expression!r}: {message}")
        self.expression = expression


def to_expression(condition: Condition) -> str:
    """The condition as one Jinja2 expression (``all`` is ``and``, ``any`` is ``or``)."""
    if isinstance(condition, AllOf):
        return "(" + " and ".join(to_expression(c) for c in condition.all) + ")"
    if isinstance(condition, AnyOf):
        return "(" + " or ".join(to_expression(c) for c in condition.any) + ")"
    if isinstance(condition, NotOf):
        return f"(not {to_expression(condition.not_)})"
    return f"({condition})"


def _compile(expression: str) -> Any:
    try:
        return _ENV.compile_expression(expression)
    except TemplateSyntaxError as exc:
        raise ConditionSyntaxError(expression, exc.message or str(exc)) from exc


def compile_condition(condition: Condition) -> CompiledCondition:
    for leaf in expressions(condition):  # report the leaf at fault, not the whole
        _compile(leaf)
    expression = _compile(to_expression(condition))
    return lambda ctx: bool(expression(**ctx))


def compile_probe(conditions: Mapping[str, Condition]) -> Probe:
    """One expression evaluating every named condition: one Jinja call instead of many."""
    if not conditions:
        return lambda ctx: []
    names = list(conditions)
    listing = _compile("[" + ", ".join(to_expression(c) for c in conditions.values()) + "]")

    def probe(ctx: Mapping[str, Any]) -> list[str]:
        return [name for name, held in zip(names, listing(**ctx), strict=True) if held]

    return probe


def expressions(condition: Condition) -> list[str]:
    """Every expression string inside a (possibly nested) condition."""
    if isinstance(condition, AllOf):
        return [e for c in condition.all for e in expressions(c)]
    if isinstance(condition, AnyOf):
        return [e for c in condition.any for e in expressions(c)]
    if isinstance(condition, NotOf):
        return expressions(condition.not_)
    return [condition]


def expression_tree(expression: str) -> nodes.Template:
    """The syntax tree of one expression (as a template printing it), for static checks."""
    return _ENV.parse("{{ " + expression + " }}")


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def helpers(now: datetime) -> dict[str, Callable[..., Any]]:
    """Functions every condition and template may call, bound to ``now``."""

    def days_since(value: Any) -> float | None:
        at = _as_datetime(value)
        return None if at is None else (now - at).total_seconds() / 86400

    def within(value: Any, duration: str) -> bool:
        at = _as_datetime(value)
        return at is not None and now - at <= parse_duration(duration)

    return {"days_since": days_since, "within": within}

"""Conditions: compiled once at load, evaluated as pure functions of a context.

A condition is a sandboxed Jinja2 expression (``profile.cart.item_count > 0``,
``event.properties.category in ['kitchen', 'home']``, ``within(profile.last_purchase_at,
'30d')``, ``'vip' in segments``) or a nested ``all`` / ``any`` / ``not`` of them. A name
that does not exist is simply undefined (false), never an error at evaluation time;
``nudge validate`` reports unknown profile fields instead.
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
    "compile_condition",
    "helpers",
    "profile_fields_used",
]

CompiledCondition = Callable[[Mapping[str, Any]], bool]

_ENV = build_expression_environment()


class ConditionSyntaxError(ValueError):
    """An expression does not parse; ``expression`` is the offending text."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(f"invalid expression {expression!r}: {message}")
        self.expression = expression


def compile_condition(condition: Condition) -> CompiledCondition:
    if isinstance(condition, AllOf):
        parts = [compile_condition(c) for c in condition.all]
        return lambda ctx: all(part(ctx) for part in parts)
    if isinstance(condition, AnyOf):
        parts = [compile_condition(c) for c in condition.any]
        return lambda ctx: any(part(ctx) for part in parts)
    if isinstance(condition, NotOf):
        inner = compile_condition(condition.not_)
        return lambda ctx: not inner(ctx)
    try:
        expression = _ENV.compile_expression(condition)
    except TemplateSyntaxError as exc:
        raise ConditionSyntaxError(condition, exc.message or str(exc)) from exc
    return lambda ctx: bool(expression(**ctx))


def expressions(condition: Condition) -> list[str]:
    """Every expression string inside a (possibly nested) condition."""
    if isinstance(condition, AllOf):
        return [e for c in condition.all for e in expressions(c)]
    if isinstance(condition, AnyOf):
        return [e for c in condition.any for e in expressions(c)]
    if isinstance(condition, NotOf):
        return expressions(condition.not_)
    return [condition]


def profile_fields_used(expression: str) -> set[str]:
    """The first attribute of every ``profile.X`` / ``user.X`` in ``expression``."""
    tree = _ENV.parse("{{ " + expression + " }}")
    used = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name in ("profile", "user"):
            used.add(node.attr)
    for item in tree.find_all(nodes.Getitem):
        target, arg = item.node, item.arg
        if (
            isinstance(target, nodes.Name)
            and target.name in ("profile", "user")
            and isinstance(arg, nodes.Const)
        ):
            used.add(str(arg.value))
    return used


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

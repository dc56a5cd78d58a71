"""Conditions: compiled once at load, evaluated as pure functions of a context.

A condition is a sandboxed Jinja2 expression (``profile.cart.item_count > 0``,
``event.properties.category in ['kitchen', 'home']``, ``within(profile.last_purchase_at,
'30d')``, ``'vip' in segments``) or a nested ``all`` / ``any`` / ``not`` of them. A name
that does not exist is simply undefined (false), never an error at evaluation time;
``nudge validate`` reports unknown fields instead (:mod:`triggers.fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from jinja2 import TemplateSyntaxError, nodes

from render import build_expression_environment
from triggers.durations import parse_duration
from triggers.native import compile_native
from triggers.reads import probe_reads
from triggers.rules import AllOf, AnyOf, Condition, NotOf

__all__ = [
    "CompiledCondition",
    "CompiledProbe",
    "ConditionSyntaxError",
    "Probe",
    "TimeNotes",
    "TimedNumber",
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
    text = to_expression(condition)
    expression = _compile(text)
    native = compile_native(_ENV, text)
    if native is not None:
        return lambda ctx: bool(native(ctx))
    return lambda ctx: bool(expression(**ctx))


class CompiledProbe:
    """Many named conditions evaluated in one go (a :data:`Probe`), with what they read
    of a profile (``reads``, ``None`` if that cannot be followed; see
    :mod:`triggers.reads`)."""

    __slots__ = ("_evaluate", "_names", "reads")

    def __init__(self, conditions: Mapping[str, Condition]) -> None:
        self._names = list(conditions)
        text = "[" + ", ".join(to_expression(c) for c in conditions.values()) + "]"
        native = compile_native(_ENV, text)
        if native is None:
            listing = _compile(text)
            native = lambda ctx: listing(**ctx)  # noqa: E731
        self._evaluate = native
        self.reads = probe_reads(_ENV, text)

    def __call__(self, ctx: Mapping[str, Any]) -> list[str]:
        held = self._evaluate(ctx)
        return [name for name, holds in zip(self._names, held, strict=True) if holds]


def compile_probe(conditions: Mapping[str, Condition]) -> Probe:
    """One expression evaluating every named condition: one call instead of many."""
    if not conditions:
        return lambda ctx: []
    return CompiledProbe(conditions)


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


class TimedNumber(float):
    """A number that notes, when compared, the moment the comparison flips by time alone.

    Subclasses implement :meth:`_crossing`; the comparisons themselves are a float's.
    """

    __slots__ = ()

    def _crossing(self, other: Any) -> None:
        raise NotImplementedError

    def __lt__(self, other: Any) -> bool:
        self._crossing(other)
        return float(self) < other  # type: ignore[no-any-return]

    def __le__(self, other: Any) -> bool:
        self._crossing(other)
        return float(self) <= other  # type: ignore[no-any-return]

    def __gt__(self, other: Any) -> bool:
        self._crossing(other)
        return float(self) > other  # type: ignore[no-any-return]

    def __ge__(self, other: Any) -> bool:
        self._crossing(other)
        return float(self) >= other  # type: ignore[no-any-return]

    __hash__ = float.__hash__


class _Days(TimedNumber):
    """``days_since(x)``: it grows by one a day, so ``days_since(x) > n`` flips when ``n``
    days have passed since ``x``."""

    __slots__ = ("_note", "_origin")
    _note: Callable[[datetime], None]
    _origin: datetime

    def __new__(cls, value: float, origin: datetime, note: Callable[[datetime], None]) -> _Days:
        days = super().__new__(cls, value)
        days._origin, days._note = origin, note
        return days

    def _crossing(self, other: Any) -> None:
        if isinstance(other, int | float) and not isinstance(other, bool):
            self._note(self._origin + timedelta(days=other, milliseconds=1))


class TimeNotes(Protocol):
    """Collects the moments at which a time-based condition may flip."""

    def note(self, moment: datetime) -> None: ...


def helpers(now: datetime, notes: TimeNotes | None = None) -> dict[str, Callable[..., Any]]:
    """Functions every condition and template may call, bound to ``now``.

    With ``notes``, each call also notes when its result may next change by time alone.
    """

    def days_since(value: Any) -> float | None:
        at = _as_datetime(value)
        if at is None:
            return None
        days = (now - at).total_seconds() / 86400
        return days if notes is None else _Days(days, at, notes.note)

    def within(value: Any, duration: str) -> bool:
        at = _as_datetime(value)
        if at is None:
            return False
        span = parse_duration(duration)
        if notes is not None:
            notes.note(at + span + timedelta(milliseconds=1))
        return now - at <= span

    return {"days_since": days_since, "within": within}

"""Template filters that format for the reader: money, numbers and dates (Babel).

Every filter reads the locale and time zone of the render it runs in: the context's
``locale`` (set by :class:`render.Renderer` from the user's locale) and ``timezone`` (a
zone name or ``tzinfo``), falling back to the defaults the environment was built with.

- ``{{ cart.total | money }}``: in the default currency; ``money("EUR")`` in another;
  ``1.234,50 €`` for ``de_DE``, ``€1,234.50`` for ``en_US``;
- ``{{ 1234.5 | number }}``: ``1.234,5``; ``number(2)``: exactly two decimals;
- ``{{ profile.signed_up_at | date }}``: ``01.03.2026`` (``date("long")``: ``1. März
  2026``; a CLDR pattern such as ``date("d MMM")`` works too);
- ``{{ event.ts | datetime }}``: date and time in the user's time zone.

Dates may be ``datetime`` (naive ones are UTC), ``date`` or ISO-8601 strings (what event
payloads hold).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import NumberPattern, format_currency
from jinja2 import pass_context
from jinja2.runtime import Context

from render.locales import babel_locale

__all__ = ["build_filters"]

Number = int | float | Decimal


def build_filters(*, locale: str, currency: str, timezone: str) -> dict[str, Callable[..., str]]:
    """The filters, with the locale, currency and time zone used when a render has none."""

    def _locale(context: Context) -> Locale:
        raw = context.get("locale")
        return babel_locale(raw if isinstance(raw, str) else None, locale)

    def _zone(context: Context) -> tzinfo:
        raw = context.get("timezone")
        if isinstance(raw, tzinfo):
            return raw
        return _zone_named(raw if isinstance(raw, str) else timezone, timezone)

    @pass_context
    def money(context: Context, value: Any, code: str | None = None) -> str:
        return _money(_number(value), code or currency, _locale(context))

    @pass_context
    def number(context: Context, value: Any, digits: int | None = None) -> str:
        reader = _locale(context)
        pattern = _decimals(reader, None if digits is None else int(digits))
        return str(pattern.apply(_number(value), reader))

    @pass_context
    def date_filter(context: Context, value: Any, style: str = "medium") -> str:
        moment = _moment(value)
        if isinstance(moment, datetime):
            moment = moment.astimezone(_zone(context)).date()
        return format_date(moment, style, locale=_locale(context))

    @pass_context
    def datetime_filter(context: Context, value: Any, style: str = "medium") -> str:
        zone = _zone(context)
        moment = _moment(value)
        if not isinstance(moment, datetime):
            moment = datetime.combine(moment, time(0), tzinfo=zone)
        return format_datetime(moment, style, tzinfo=zone, locale=_locale(context))

    return {"money": money, "number": number, "date": date_filter, "datetime": datetime_filter}


def _number(value: Any) -> Number:
    """An amount: numbers as they are, numeric strings parsed, anything else refused
    (``ValueError``/``TypeError``: the render fails, the batch does not)."""
    if isinstance(value, bool):
        raise TypeError(f"not an amount: {value!r}")
    if isinstance(value, int | float | Decimal):
        return value
    return float(value)


def _moment(value: Any) -> datetime | date:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:  # a bare date: 2026-03-01
            return date.fromisoformat(text)
        return _moment(datetime.fromisoformat(text))
    raise TypeError(f"not a date: {value!r}")


@functools.lru_cache(maxsize=4096)
def _money(amount: Number, code: str, locale: Locale) -> str:
    """``amount`` in currency ``code`` as ``locale`` writes it; remembered, since a shop's
    prices and totals recur from mail to mail and Babel takes ~20 µs to format one."""
    return str(format_currency(amount, code, locale=locale))


@functools.lru_cache(maxsize=256)
def _decimals(locale: Locale, digits: int | None) -> NumberPattern:
    """The locale's number pattern, with exactly ``digits`` decimals when given."""
    pattern: NumberPattern = locale.decimal_formats[None]
    if digits is None:
        return pattern
    fixed: NumberPattern = copy.copy(pattern)
    fixed.frac_prec = (max(0, digits), max(0, digits))
    return fixed


@functools.lru_cache(maxsize=256)
def _zone_named(name: str, default: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)

"""Human durations in config: ``90s``, ``15m``, ``1h``, ``1h30m``, ``30d``, ``2w``."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '1h' or '30d', got {value!r}")
    return _parse_text(value)


@functools.lru_cache(maxsize=256)
def _parse_text(value: str) -> timedelta:
    """A duration written as text (``within(x, '90d')`` parses it at every evaluation)."""
    text = value.strip().replace(" ", "")
    if not text or _PART.sub("", text):
        raise ValueError(f"invalid duration {value!r}: use e.g. '90s', '15m', '1h30m', '30d'")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS.items():
        if unit == "w":  # read, but written as days: "7d" is what people write
            continue
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

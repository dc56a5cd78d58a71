"""When a user reads mail: a decayed histogram of the local hours of their opens and clicks.

Every event type with a weight in :class:`HoursConfig` (``email_open`` and
``email_click``, clicks weighing more) adds that weight to the hour of the day it
happened at in the user's time zone; older weight halves every ``half_life_days``.
Rules with ``send_at: best_hour`` send in the hour holding the most weight. Hours are
counted in the zone the profile has when the event is applied: a time zone learnt later
does not move the hours already counted (they fade with the half-life).

A profile stores its histogram compactly as a :class:`HourHistogram`: the hours that
have weight, rounded, decayed to one reference time (that of the latest event). Decay
scales every hour alike, so comparing hours needs no decay to ``now``; comparing a
histogram with another one does (:meth:`HourHistogram.decayed`).
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from profiles.events import _check_zone

__all__ = ["HOURS", "HourHistogram", "HoursConfig", "local_hour", "note_hour"]

#: hours in a day: the histogram's buckets are the local hours 0..23
HOURS = 24

#: decimals kept per hour; smaller weights are dropped
_DIGITS = 4


class HoursConfig(BaseModel):
    """The ``scoring.send_hours`` block of ``rules.yaml``: what counts, and how it decays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: event type -> weight added to the hour it happened at
    weights: dict[str, float] = Field(
        default_factory=lambda: {"email_open": 1.0, "email_click": 2.0}
    )
    half_life_days: float = Field(default=30.0, gt=0)
    #: the zone of users whose profile has none; ``RulesConfig`` sets it to
    #: ``guards.default_timezone`` (UTC when the histogram is used on its own)
    default_timezone: str | None = None

    _zone = field_validator("default_timezone")(_check_zone)

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for event_type, weight in value.items():
            if weight < 0:
                raise ValueError(f"weight of {event_type!r} must not be negative, got {weight}")
        return value


class HourHistogram(BaseModel):
    """Decayed weight per local hour, as of ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the moment the weights are decayed to (the latest event counted)
    at: datetime
    #: local hour (0..23) -> weight at ``at``; hours without weight are left out
    weights: dict[int, float] = {}

    @field_validator("weights")
    @classmethod
    def _hours(cls, value: dict[int, float]) -> dict[int, float]:
        if any(not 0 <= hour < HOURS for hour in value):
            raise ValueError(f"hours must be 0..{HOURS - 1}, got {sorted(value)}")
        return value

    def decayed(self, now: datetime, half_life_days: float) -> tuple[float, ...]:
        """All 24 weights decayed to ``now`` (later than ``at``: unchanged)."""
        factor = _decay(max((now - self.at).total_seconds(), 0.0), half_life_days)
        return tuple(self.weights.get(hour, 0.0) * factor for hour in range(HOURS))


def _decay(seconds: float, half_life_days: float) -> float:
    return math.pow(0.5, seconds / 86400 / half_life_days)


def local_hour(ts: datetime, timezone: str | None, config: HoursConfig) -> int:
    """The hour of ``ts`` in the user's ``timezone`` (the configured default without one)."""
    return ts.astimezone(ZoneInfo(timezone or config.default_timezone or "UTC")).hour


def note_hour(
    histogram: HourHistogram | None,
    event_type: str,
    ts: datetime,
    timezone: str | None,
    config: HoursConfig,
) -> HourHistogram | None:
    """The histogram after an event of ``event_type`` at ``ts`` by a user in ``timezone``.

    Unchanged when the type has no weight. A late event (before the histogram's ``at``)
    adds its weight decayed to ``at``; otherwise the histogram decays to ``ts`` first.
    """
    weight = config.weights.get(event_type, 0.0)
    if not weight:
        return histogram
    hour = local_hour(ts, timezone, config)
    if histogram is None:
        return HourHistogram(at=ts, weights={hour: round(weight, _DIGITS)})
    at = max(histogram.at, ts)
    older = _decay((at - histogram.at).total_seconds(), config.half_life_days)
    weights = {h: w * older for h, w in histogram.weights.items()}
    weights[hour] = weights.get(hour, 0.0) + weight * _decay(
        (at - ts).total_seconds(), config.half_life_days
    )
    return HourHistogram(at=at, weights=_compact(weights))


def _compact(weights: dict[int, float]) -> dict[int, float]:
    """Rounded, in hour order, without the hours that round to nothing."""
    rounded = {hour: round(weights[hour], _DIGITS) for hour in sorted(weights)}
    return {hour: weight for hour, weight in rounded.items() if weight > 0}

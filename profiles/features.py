"""The profile's derived features as plain data: purchase buckets (RFM), lifecycle stages,
decayed affinity maps and bounded recency lists.

Everything here works on the primitive values a :class:`~profiles.Profile` stores (lists,
dicts, datetimes), so the fold can use it without building models per event, and the
evaluation side (:mod:`triggers.derived`) computes the same values at any ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ACTIVITY_HORIZON_DAYS",
    "LIFECYCLE_STAGES",
    "MAX_ACTIVITY_DAYS",
    "MAX_AFFINITIES",
    "MAX_PURCHASE_DAYS",
    "PURCHASE_HORIZON_DAYS",
    "RFM_WINDOWS",
    "SITE_EVENTS",
    "ActivityBucket",
    "DayBucket",
    "FeedbackConfig",
    "LifecycleConfig",
    "Stage",
    "activity_totals",
    "add_activity",
    "add_purchase",
    "add_weight",
    "day_number",
    "day_start",
    "decay_factor",
    "lifecycle_stage",
    "push_recent",
    "rescale",
    "strongest",
    "window_totals",
]

#: purchases are kept per UTC day for this many days (the longest RFM window)
PURCHASE_HORIZON_DAYS = 365
#: at most this many day buckets; past it the two oldest merge (see :func:`add_purchase`)
MAX_PURCHASE_DAYS = 48
#: the rolling windows ``profile.rfm`` exposes, in days
RFM_WINDOWS = (30, 90, 365)
#: categories (and brands) kept per affinity map; past it the weakest is dropped
MAX_AFFINITIES = 16
#: affinities decayed below this are dropped (they no longer say anything)
_FLOOR = 0.01
_DAY_SECONDS = 86400

#: ``(UTC day number, orders, revenue)``
DayBucket = tuple[int, int, float]
#: site and mail activity is kept per UTC day for this many days (the longest window
#: the prediction features read) ...
ACTIVITY_HORIZON_DAYS = 90
#: ... in at most this many buckets; past it the two oldest merge (as purchase days do)
MAX_ACTIVITY_DAYS = 32
#: ``(UTC day number, active days, product views, cart additions, mail opens, mail
#: clicks)``; ``active days`` is 1 for one day's bucket and sums when buckets merge
ActivityBucket = tuple[int, int, int, int, int, int]
#: event type -> the bucket position it counts at (a site event also marks the day active)
_ACTIVITY_SLOT = {"product_view": 2, "add_to_cart": 3, "email_open": 4, "email_click": 5}
#: events that say the user was on the site or in the app that day (not mail, not
#: what nudge or the shop did to the profile)
SITE_EVENTS = frozenset(
    {
        "page_view",
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "checkout_started",
        "purchase",
        "signup",
    }
)
Stage = Literal["new", "active", "at_risk", "lapsed", "churned"]
LIFECYCLE_STAGES: tuple[Stage, ...] = ("new", "active", "at_risk", "lapsed", "churned")


class LifecycleConfig(BaseModel):
    """The ``lifecycle:`` block of ``rules.yaml``: when a user is in which stage.

    ``new`` while first seen at most ``new_days`` ago; after that the stage follows the
    days since the last purchase (for users who never bought: since their last event):
    ``active`` up to ``at_risk_days``, then ``at_risk`` up to ``lapsed_days``, ``lapsed``
    up to ``churned_days``, ``churned`` beyond.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    new_days: float = Field(default=30, ge=0)
    at_risk_days: float = Field(default=60, gt=0)
    lapsed_days: float = Field(default=120, gt=0)
    churned_days: float = Field(default=365, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if not self.at_risk_days < self.lapsed_days < self.churned_days:
            raise ValueError("need at_risk_days < lapsed_days < churned_days")
        return self


class FeedbackConfig(BaseModel):
    """How the mail a user reacts to (or ignores) moves their category affinity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: added to each featured category at the first click on the send
    click: float = Field(default=5.0, ge=0)
    #: taken from each featured category (not below zero), once, when the send was
    #: neither opened nor clicked within ``window_days``
    ignored: float = Field(default=2.0, ge=0)
    window_days: float = Field(default=3.0, gt=0)


def day_number(at: datetime) -> int:
    """The UTC day ``at`` falls on, counted from the epoch."""
    return int(at.timestamp() // _DAY_SECONDS)


def day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * _DAY_SECONDS, tz=UTC)


def add_purchase(days: list[DayBucket], day: int, revenue: float) -> list[DayBucket]:
    """``days`` (oldest first) with one order of ``revenue`` on ``day``.

    Buckets more than :data:`PURCHASE_HORIZON_DAYS` before the newest are dropped. Past
    :data:`MAX_PURCHASE_DAYS` buckets, the two oldest merge into one dated on the later
    day: their orders then stay in a window up to the gap between them longer than they
    should (the oldest, least-read figures coarsen first; nothing leaves a window early).
    """
    merged = dict((d, (n, r)) for d, n, r in days)
    orders, total = merged.get(day, (0, 0.0))
    merged[day] = (orders + 1, round(total + revenue, 2))
    newest = max(merged)
    out = [(d, n, r) for d, (n, r) in sorted(merged.items()) if newest - d < PURCHASE_HORIZON_DAYS]
    while len(out) > MAX_PURCHASE_DAYS:
        (_, n0, r0), (d1, n1, r1) = out[0], out[1]
        out[:2] = [(d1, n0 + n1, round(r0 + r1, 2))]
    return out


def add_activity(days: list[ActivityBucket], day: int, event_type: str) -> None:
    """Count an event of ``event_type`` on ``day`` in ``days`` (oldest first, in place).

    Only the event types the features read count; others leave ``days`` alone. The common
    case (an event on the newest day) touches the last bucket only. Buckets more than
    :data:`ACTIVITY_HORIZON_DAYS` before the newest are dropped; past
    :data:`MAX_ACTIVITY_DAYS` the two oldest merge into one dated on the later day.
    """
    slot = _ACTIVITY_SLOT.get(event_type)
    site = event_type in SITE_EVENTS
    if slot is None and not site:
        return
    index = len(days) - 1
    while index >= 0 and days[index][0] > day:
        index -= 1
    if index >= 0 and days[index][0] == day:
        bucket = list(days[index])
    else:
        if days and days[-1][0] - day >= ACTIVITY_HORIZON_DAYS:
            return  # older than anything kept: it would be dropped at once
        index += 1
        bucket = [day, 0, 0, 0, 0, 0]
        days.insert(index, (day, 0, 0, 0, 0, 0))
    if site:
        bucket[1] = 1 if bucket[1] == 0 else bucket[1]
    if slot is not None:
        bucket[slot] += 1
    days[index] = (bucket[0], bucket[1], bucket[2], bucket[3], bucket[4], bucket[5])
    _trim_activity(days)


def _trim_activity(days: list[ActivityBucket]) -> None:
    newest = days[-1][0]
    stale = 0
    while stale < len(days) and newest - days[stale][0] >= ACTIVITY_HORIZON_DAYS:
        stale += 1
    del days[:stale]
    while len(days) > MAX_ACTIVITY_DAYS:
        (_, a0, v0, c0, o0, k0), (day, a1, v1, c1, o1, k1) = days[0], days[1]
        days[:2] = [(day, a0 + a1, v0 + v1, c0 + c1, o0 + o1, k0 + k1)]


def activity_totals(
    days: Iterable[ActivityBucket], today: int, window: int
) -> tuple[int, int, int, int, int]:
    """Active days, views, cart additions, opens and clicks of the ``window`` days up to
    ``today`` (``today`` included)."""
    active = views = carts = opens = clicks = 0
    for day, a, v, c, o, k in days:
        if 0 <= today - day < window:
            active, views, carts = active + a, views + v, carts + c
            opens, clicks = opens + o, clicks + k
    return active, views, carts, opens, clicks


def window_totals(days: Iterable[DayBucket], today: int, window: int) -> tuple[int, float, int]:
    """Orders and revenue of the ``window`` days up to ``today`` (``today`` included),
    and the first day after ``today`` on which that changes by time alone (when the
    oldest counted bucket leaves; ``-1`` if nothing is counted)."""
    orders, revenue, oldest = 0, 0.0, -1
    for day, n, r in days:
        if today - day < window:
            oldest = day if oldest < 0 else oldest
            orders, revenue = orders + n, revenue + r
    return orders, round(revenue, 2), (oldest + window if oldest >= 0 else -1)


def lifecycle_stage(
    first_seen: datetime,
    recency: datetime,
    now: datetime,
    config: LifecycleConfig,
) -> tuple[Stage, datetime | None]:
    """The stage at ``now`` and the next moment it changes by time alone (``None``:
    never). ``recency`` is the last purchase, or the last event of a user who never
    bought. A stage starts just after its bound (as ``within`` turns false)."""
    tick = timedelta(milliseconds=1)
    new_until = first_seen + timedelta(days=config.new_days) + tick
    if now < new_until:
        return "new", new_until
    stage: Stage = "active"
    bounds: tuple[tuple[float, Stage], ...] = (
        (config.at_risk_days, "at_risk"),
        (config.lapsed_days, "lapsed"),
        (config.churned_days, "churned"),
    )
    for days, name in bounds:
        starts = recency + timedelta(days=days) + tick
        if now < starts:
            return stage, starts
        stage = name
    return stage, None


def decay_factor(at: datetime, now: datetime, half_life_days: float) -> float:
    """What a value weighed at ``at`` weighs at ``now`` (above 1 for a later ``at``)."""
    return math.pow(0.5, (now - at).total_seconds() / _DAY_SECONDS / half_life_days)


def add_weight(values: dict[str, float], key: str, weight: float) -> None:
    """Add ``weight`` to ``values[key]`` (not below zero), keeping the map bounded: the
    weakest entries beyond :data:`MAX_AFFINITIES` and those near zero are dropped."""
    value = values.get(key, 0.0) + weight
    if value < _FLOOR:
        values.pop(key, None)
        return
    values[key] = round(value, 3)
    if len(values) > MAX_AFFINITIES:
        del values[min(values, key=lambda k: (values[k], k))]


def rescale(values: dict[str, float], factor: float) -> None:
    """Multiply every value by ``factor`` in place, dropping those that fall near zero."""
    for key, value in list(values.items()):
        scaled = value * factor
        if scaled < _FLOOR:
            del values[key]
        else:
            values[key] = round(scaled, 3)


def strongest(values: dict[str, float], factor: float = 1.0) -> dict[str, float]:
    """``values`` times ``factor``, strongest first (ties by name)."""
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    return {key: round(value * factor, 4) for key, value in ranked}


def push_recent(items: list[str], item: str, cap: int) -> None:
    """Put ``item`` first in ``items`` (in place), without repeats, at most ``cap`` long."""
    if items and items[0] == item:
        return
    if item in items:
        items.remove(item)
    items.insert(0, item)
    del items[cap:]

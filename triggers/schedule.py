"""Calendar arithmetic in the user's time zone: quiet hours, best hours, anniversaries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from profiles import Profile
from triggers.rules import Guards, QuietHours

__all__ = [
    "best_hour",
    "date_value",
    "next_anniversary",
    "quiet_until",
    "raw_date",
    "user_zone",
]


def user_zone(profile: Profile | None, guards: Guards) -> ZoneInfo:
    return ZoneInfo((profile.timezone if profile else None) or guards.default_timezone)


def _inside(local: time, quiet: QuietHours) -> bool:
    if quiet.start <= quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # the window spans midnight


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """When quiet hours end, if ``now`` falls inside them in ``zone``; else ``None``."""
    local = now.astimezone(zone)
    if not _inside(local.timetz().replace(tzinfo=None), quiet):
        return None
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(UTC)


def best_hour(
    now: datetime,
    zone: ZoneInfo,
    weights: Sequence[float],
    max_delay: timedelta,
    quiet: QuietHours | None = None,
) -> datetime | None:
    """When to send for the best local hour in ``zone`` within ``max_delay`` of ``now``.

    ``weights`` holds one weight per local hour (0..23). Candidates are ``now`` itself (for
    the hour it falls in) and the start of every later local hour up to ``now +
    max_delay``, except those inside ``quiet`` hours. The one whose hour weighs most wins,
    the earliest among equals; ``None`` when no candidate's hour has any weight. On the
    day clocks skip an hour, that hour's candidate is the moment it would have begun.
    """
    best: tuple[float, datetime] | None = None
    for hour, moment in _hour_starts(now, zone, max_delay):
        weight = weights[hour] if hour < len(weights) else 0.0
        if weight <= 0 or (best is not None and weight <= best[0]):
            continue
        if quiet is None or not _inside(moment.astimezone(zone).time(), quiet):
            best = (weight, moment)
    return None if best is None else best[1]


def _hour_starts(
    now: datetime, zone: ZoneInfo, max_delay: timedelta
) -> Iterator[tuple[int, datetime]]:
    """``(local hour, moment)``: ``now`` for the hour it is in, then each later local
    hour's start, in time order, up to ``now + max_delay``."""
    local = now.astimezone(zone)
    yield local.hour, now
    day, horizon = local.date(), now + max_delay
    while True:
        for hour in range(24):
            start = datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)
            if start > horizon:
                return
            if start > now:
                yield hour, start
        day += timedelta(days=1)


def raw_date(profile: Profile, field: str) -> Any:
    """What the profile holds for a date rule's ``field``, unparsed."""
    if field.startswith("traits."):
        return profile.traits.get(field.removeprefix("traits."))
    return getattr(profile, field, None)


def date_value(profile: Profile, field: str) -> date | None:
    """The calendar date a date rule watches (``traits.birthday``, ``signed_up_at``, ...)."""
    raw = raw_date(profile, field)
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw[:10])
        except ValueError:
            return None
    return None


def _in_year(value: date, year: int) -> date:
    try:
        return value.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def next_anniversary(
    value: date, after: datetime, *, offset_days: int, at: time, zone: ZoneInfo
) -> datetime:
    """The first ``value`` anniversary (+ ``offset_days``, at local ``at``) after ``after``."""
    year = after.astimezone(zone).year - 1
    while True:
        day = _in_year(value, year) + timedelta(days=offset_days)
        moment = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if moment > after:
            return moment
        year += 1

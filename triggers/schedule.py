"""Calendar arithmetic in the user's time zone: quiet hours and yearly anniversaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from profiles import Profile
from triggers.rules import Guards, QuietHours

__all__ = ["date_value", "next_anniversary", "quiet_until", "raw_date", "user_zone"]


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

"""The best hour to send: pure calendar arithmetic in the user's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from triggers.rules import QuietHours
from triggers.schedule import best_hour

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+05:30: local hours start at half past UTC hours
DAY = timedelta(hours=24)


def only(hour: int, weight: float = 1.0) -> list[float]:
    return [weight if h == hour else 0.0 for h in range(24)]


def local(at: datetime | None, zone: ZoneInfo) -> str:
    assert at is not None
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def test_the_next_start_of_the_heaviest_local_hour() -> None:
    now = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)  # 10:15 in Berlin
    assert local(best_hour(now, BERLIN, only(19), DAY), BERLIN) == "2026-03-02 19:00"
    assert local(best_hour(now, BERLIN, only(7), DAY), BERLIN) == "2026-03-03 07:00"
    assert local(best_hour(now, KOLKATA, only(19), DAY), KOLKATA) == "2026-03-02 19:00"


def test_inside_the_best_hour_it_is_now() -> None:
    now = datetime(2026, 3, 2, 18, 40, tzinfo=UTC)  # 19:40 in Berlin
    assert best_hour(now, BERLIN, only(19), DAY) == now


def test_the_heaviest_hour_wins_and_the_earliest_among_equals() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    weights = only(8, 3.0)
    weights[20] = 2.0
    weights[12] = 2.0
    assert local(best_hour(now, BERLIN, weights, DAY), BERLIN) == "2026-03-03 08:00"
    assert local(best_hour(now, BERLIN, weights, timedelta(hours=12)), BERLIN) == (
        "2026-03-02 12:00"
    )


def test_nothing_within_max_delay_or_no_weight_at_all_means_none() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
    assert best_hour(now, BERLIN, only(19), timedelta(hours=8, minutes=59)) is None
    assert local(best_hour(now, BERLIN, only(19), timedelta(hours=9)), BERLIN).endswith("19:00")
    assert best_hour(now, BERLIN, [0.0] * 24, DAY) is None
    assert best_hour(now, BERLIN, (), DAY) is None


def test_quiet_hours_pass_over_the_best_hour_for_the_best_outside_them() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    weights = only(22, 5.0)
    weights[18] = 1.0
    quiet = QuietHours(start=time(21), end=time(8))
    assert local(best_hour(now, BERLIN, weights, DAY), BERLIN).endswith("22:00")
    assert local(best_hour(now, BERLIN, weights, DAY, quiet), BERLIN) == "2026-03-02 18:00"
    assert best_hour(now, BERLIN, only(23), DAY, quiet) is None


def test_now_inside_quiet_hours_is_no_candidate() -> None:
    quiet = QuietHours(start=time(21, 30), end=time(8))
    now = datetime(2026, 3, 2, 20, 45, tzinfo=UTC)  # 21:45 in Berlin, quiet since 21:30
    weights = only(21, 5.0)
    weights[9] = 1.0
    assert local(best_hour(now, BERLIN, weights, DAY, quiet), BERLIN) == "2026-03-03 21:00"
    shorter = timedelta(hours=20)
    assert local(best_hour(now, BERLIN, weights, shorter, quiet), BERLIN) == "2026-03-03 09:00"


@pytest.mark.parametrize(
    ("now", "hour", "expected"),
    [
        # spring forward in Berlin: 02:00 CET jumps to 03:00 CEST on 29 March 2026; the
        # skipped hour's send goes out when it would have begun
        (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), 19, "2026-03-29 19:00 +0200"),
        (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), 2, "2026-03-29 03:00 +0200"),
        (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), 3, "2026-03-29 03:00 +0200"),
        # fall back on 25 October 2026: 03:00 CEST becomes 02:00 CET, 02:xx happens twice
        (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), 2, "2026-10-25 02:00 +0200"),
        (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), 19, "2026-10-25 19:00 +0100"),
    ],
)
def test_dst_days_keep_the_local_hour(now: datetime, hour: int, expected: str) -> None:
    at = best_hour(now, BERLIN, only(hour), timedelta(hours=36))
    assert at is not None
    assert at.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %z") == expected


def test_the_hour_after_fall_back_repeats_is_not_missed() -> None:
    now = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, before the repeat
    at = best_hour(now, BERLIN, only(3), timedelta(hours=3))
    assert at == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)  # 03:00 CET, 1.5 h later


def test_max_delay_counts_real_time_across_dst() -> None:
    # New York springs forward on 8 March 2026: 01:00 EST to 19:00 EDT is 17 real hours
    now = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    assert best_hour(now, NEW_YORK, only(19), timedelta(hours=17)) is not None
    assert best_hour(now, NEW_YORK, only(19), timedelta(hours=16, minutes=59)) is None

"""Purchase buckets, rolling windows and lifecycle stages as plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from profiles import LifecycleConfig
from profiles.features import (
    MAX_AFFINITIES,
    MAX_PURCHASE_DAYS,
    add_purchase,
    add_weight,
    day_number,
    day_start,
    lifecycle_stage,
    push_recent,
    window_totals,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY0 = day_number(T0)


def test_orders_of_one_day_share_a_bucket_and_late_ones_are_sorted_in() -> None:
    days = add_purchase([], DAY0, 10.0)
    days = add_purchase(days, DAY0, 5.5)
    days = add_purchase(days, DAY0 - 3, 1.0)
    assert days == [(DAY0 - 3, 1, 1.0), (DAY0, 2, 15.5)]


def test_buckets_older_than_a_year_are_dropped() -> None:
    days = add_purchase([], DAY0, 10.0)
    days = add_purchase(days, DAY0 + 365, 2.0)
    assert days == [(DAY0 + 365, 1, 2.0)]


def test_past_the_cap_the_oldest_buckets_merge_and_nothing_is_lost() -> None:
    days: list[tuple[int, int, float]] = []
    for n in range(MAX_PURCHASE_DAYS + 5):
        days = add_purchase(days, DAY0 + n * 2, 1.0)
    assert len(days) == MAX_PURCHASE_DAYS
    assert sum(n for _, n, _ in days) == MAX_PURCHASE_DAYS + 5
    assert days[0] == (DAY0 + 10, 6, 6.0)  # the six oldest, dated on the latest of them
    assert days[-1] == (DAY0 + (MAX_PURCHASE_DAYS + 4) * 2, 1, 1.0)


def test_a_window_counts_today_and_says_when_its_oldest_order_leaves() -> None:
    days = [(DAY0 - 40, 1, 5.0), (DAY0 - 29, 2, 20.0), (DAY0, 1, 7.5)]
    assert window_totals(days, DAY0, 30) == (3, 27.5, DAY0 + 1)
    assert window_totals(days, DAY0, 90) == (4, 32.5, DAY0 + 50)
    assert window_totals(days, DAY0 + 400, 365) == (0, 0.0, -1)
    assert day_start(DAY0 + 1) == datetime(2026, 3, 2, tzinfo=UTC)


CONFIG = LifecycleConfig()


@pytest.mark.parametrize(
    ("first_seen_days_ago", "recency_days_ago", "stage"),
    [
        (2, 2, "new"),
        (40, 10, "active"),
        (200, 60.5, "at_risk"),
        (200, 121, "lapsed"),
        (800, 366, "churned"),
    ],
)
def test_the_stage_follows_first_seen_then_recency(
    first_seen_days_ago: float, recency_days_ago: float, stage: str
) -> None:
    first_seen = T0 - timedelta(days=first_seen_days_ago)
    recency = T0 - timedelta(days=recency_days_ago)
    assert lifecycle_stage(first_seen, recency, T0, CONFIG)[0] == stage


def test_the_next_stage_change_is_the_next_bound() -> None:
    tick = timedelta(milliseconds=1)
    assert lifecycle_stage(T0, T0, T0, CONFIG) == ("new", T0 + timedelta(days=30) + tick)
    later = T0 + timedelta(days=31)
    assert lifecycle_stage(T0, T0, later, CONFIG) == ("active", T0 + timedelta(days=60) + tick)
    at_60 = T0 + timedelta(days=60)
    assert lifecycle_stage(T0, T0, at_60, CONFIG)[0] == "active"
    assert lifecycle_stage(T0, T0, at_60 + tick, CONFIG)[0] == "at_risk"
    assert lifecycle_stage(T0, T0, T0 + timedelta(days=400), CONFIG) == ("churned", None)


def test_lifecycle_bounds_must_increase() -> None:
    with pytest.raises(ValidationError, match="at_risk_days < lapsed_days"):
        LifecycleConfig(at_risk_days=200, lapsed_days=100)


def test_an_affinity_map_drops_its_weakest_past_the_cap() -> None:
    values: dict[str, float] = {}
    for n in range(MAX_AFFINITIES + 1):
        add_weight(values, f"c{n:02}", 1.0 + n)
    assert len(values) == MAX_AFFINITIES and "c00" not in values
    add_weight(values, "c05", -100.0)
    assert "c05" not in values


@pytest.mark.parametrize(
    ("item", "after"), [("b", ["b", "a", "c"]), ("d", ["d", "a", "b"]), ("a", ["a", "b", "c"])]
)
def test_recent_lists_put_the_newest_first_without_repeats(item: str, after: list[str]) -> None:
    items = ["a", "b", "c"]
    push_recent(items, item, 3)
    assert items == after

"""Per-day activity buckets and the prediction feature vector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from profiles import Event, Profile, ScoringConfig, apply_event
from profiles.features import (
    ACTIVITY_HORIZON_DAYS,
    MAX_ACTIVITY_DAYS,
    ActivityBucket,
    activity_totals,
    add_activity,
    day_number,
)
from profiles.predictions import FEATURES, feature_vector
from profiles.stored import dump_profile, load_profile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY0 = day_number(T0)
DAY = timedelta(days=1)
SCORING = ScoringConfig()


def ev(kind: str, at: datetime = T0, n: int = 0, **props: Any) -> Event:
    return Event(event_id=f"{kind}-{n}-{at}", type=kind, user_id="u1", ts=at, properties=props)


def run(*events: Event) -> Profile:
    profile: Profile | None = None
    for event in events:
        profile = apply_event(profile, event, SCORING)
    assert profile is not None
    return profile


def test_a_day_counts_views_carts_opens_clicks_and_is_active_once() -> None:
    days: list[ActivityBucket] = []
    for kind in ("product_view", "product_view", "add_to_cart", "page_view"):
        add_activity(days, DAY0, kind)
    add_activity(days, DAY0, "email_open")
    add_activity(days, DAY0 + 1, "email_click")
    add_activity(days, DAY0 + 1, "profile_update")  # neither counted nor a site visit
    assert days == [(DAY0, 1, 2, 1, 1, 0), (DAY0 + 1, 0, 0, 0, 0, 1)]


def test_a_late_event_is_sorted_in_and_one_past_the_horizon_is_dropped() -> None:
    days: list[ActivityBucket] = []
    add_activity(days, DAY0, "product_view")
    add_activity(days, DAY0 - 2, "product_view")
    add_activity(days, DAY0 - ACTIVITY_HORIZON_DAYS, "product_view")
    assert days == [(DAY0 - 2, 1, 1, 0, 0, 0), (DAY0, 1, 1, 0, 0, 0)]
    add_activity(days, DAY0 + ACTIVITY_HORIZON_DAYS - 1, "page_view")
    assert [d for d, *_ in days] == [DAY0, DAY0 + ACTIVITY_HORIZON_DAYS - 1]


@given(st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["product_view", "page_view"]))))
def test_past_the_cap_buckets_merge_and_no_count_is_lost(visits: list[tuple[int, str]]) -> None:
    days: list[ActivityBucket] = []
    for offset, kind in sorted(visits):
        add_activity(days, DAY0 + offset, kind)
    assert len(days) <= MAX_ACTIVITY_DAYS
    assert sum(b[1] for b in days) == len({offset for offset, _ in visits})
    assert sum(b[2] for b in days) == sum(1 for _, kind in visits if kind == "product_view")
    assert [b[0] for b in days] == sorted({b[0] for b in days})


def test_windows_count_the_days_up_to_today() -> None:
    days: list[ActivityBucket] = [(DAY0 - 40, 1, 5, 0, 0, 0), (DAY0 - 6, 1, 1, 1, 2, 1)]
    assert activity_totals(days, DAY0, 7) == (1, 1, 1, 2, 1)
    assert activity_totals(days, DAY0, 30) == (1, 1, 1, 2, 1)
    assert activity_totals(days, DAY0, 90) == (2, 6, 1, 2, 1)


def named(profile: Profile, now: datetime) -> dict[str, float]:
    row = feature_vector(profile, now, SCORING)
    assert len(row) == len(FEATURES)
    return dict(zip(FEATURES, row, strict=True))


def test_a_buyers_features_as_of_a_later_moment() -> None:
    profile = run(
        ev("signup", T0, email="a@example.com", consent={"email": True}),
        ev("product_view", T0, 1, product_id="p1", category="kitchen"),
        ev("add_to_cart", T0, 2, product_id="p1", category="kitchen", price=20.0),
        ev(
            "purchase",
            T0 + DAY,
            3,
            order_id="o1",
            total=20.0,
            items=[{"product_id": "p1", "category": "kitchen", "price": 20.0}],
        ),
        ev("email_open", T0 + 2 * DAY, 4, message_id="m1"),
        ev("product_view", T0 + 40 * DAY, 5, product_id="p2", category="garden"),
    )
    f = named(profile, T0 + 41 * DAY)
    assert f["recency_days"] == 40.0
    assert f["has_purchased"] == 1.0
    assert (f["frequency_30d"], f["frequency_90d"], f["monetary_365d"]) == (0, 1, 20.0)
    assert f["average_order_value"] == 20.0
    assert f["tenure_days"] == 41.0
    assert f["days_since_last_seen"] == 1.0
    assert (f["views_7d"], f["views_30d"], f["views_90d"]) == (1, 1, 2)
    assert (f["active_days_7d"], f["active_days_90d"]) == (1, 3)
    assert (f["carts_90d"], f["opens_90d"], f["clicks_90d"]) == (1, 1, 0)
    assert f["days_since_last_open"] == 39.0
    assert f["days_since_last_click"] == ACTIVITY_HORIZON_DAYS
    assert f["category_count"] == 2.0
    assert 0.5 < f["top_category_share"] < 1.0
    assert f["email_consent"] == 1.0 and f["unsubscribed"] == 0.0
    assert f["cart_value"] == 0.0  # bought


def test_a_browser_who_never_bought_counts_recency_from_the_first_visit() -> None:
    profile = run(ev("product_view", T0, product_id="p1", category="kitchen"))
    f = named(profile, T0 + 10 * DAY)
    assert f["has_purchased"] == 0.0
    assert f["recency_days"] == f["tenure_days"] == 10.0


def test_features_survive_the_stored_form() -> None:
    profile = run(
        ev("product_view", T0, product_id="p1", category="kitchen"),
        ev("add_to_cart", T0, 1, product_id="p1", price=9.5, quantity=2),
    )
    stored = load_profile("u1", dump_profile(profile))
    now = T0 + 3 * DAY
    assert feature_vector(stored, now, SCORING) == feature_vector(profile, now, SCORING)
    assert named(stored, now)["cart_value"] == 19.0

"""Decayed affinities, recency lists, the last cart, bounded maps and the feedback loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from profiles import (
    Event,
    Product,
    Profile,
    ScoringConfig,
    SendRecord,
    apply_event,
    settle_feedback,
)
from profiles.behaviour import MAX_PURCHASED, MAX_RECENTLY_VIEWED
from profiles.model import MAX_CART_LINES, MAX_COUNTS, MAX_FIRED, MAX_TRAITS
from profiles.stored import load_profile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCORING = ScoringConfig()
DAY = timedelta(days=1)


def ev(kind: str, at: datetime = T0, n: int = 0, **props: Any) -> Event:
    return Event(event_id=f"{kind}-{n}-{at}", type=kind, user_id="u1", ts=at, properties=props)


def run(
    *events: Event,
    profile: Profile | None = None,
    products: dict[str, Product] | None = None,
) -> Profile:
    for event in events:
        profile = apply_event(profile, event, SCORING, products=products or {})
    assert profile is not None
    return profile


def view(product_id: str, category: str | None = "outdoor", at: datetime = T0, n: int = 0) -> Event:
    return ev("product_view", at, n, product_id=product_id, category=category)


def test_affinity_halves_every_half_life_from_one_reference_time() -> None:
    p = run(view("tent"), view("pan", "kitchen", T0 + 30 * DAY, n=1))
    assert p.affinity == {"outdoor": 0.5, "kitchen": 1.0}
    assert p.affinity_at == T0 + 30 * DAY
    later = T0 + 60 * DAY
    assert p.affinities_now(later, SCORING) == {"kitchen": 0.5, "outdoor": 0.25}


def test_a_late_event_adds_its_weight_decayed_to_the_reference_time() -> None:
    p = run(view("pan", "kitchen", T0 + 30 * DAY), view("tent", at=T0, n=1))
    assert p.affinity == {"kitchen": 1.0, "outdoor": 0.5}
    assert p.affinity_at == T0 + 30 * DAY


def test_brand_and_missing_category_come_from_the_catalog() -> None:
    catalog = {
        "tent": Product(product_id="tent", name="Tent", category="outdoor", brand="Acme", price=99)
    }
    p = run(view("tent", category=None), products=catalog)
    assert p.affinity == {"outdoor": 1.0}
    assert p.brand_affinity == {"Acme": 1.0}
    assert run(view("tent", category=None)).affinity == {}  # no catalog: nothing to go on


def test_viewed_and_bought_products_newest_first_deduplicated_and_bounded() -> None:
    views = [view(f"p{n}", at=T0 + n * DAY, n=n) for n in range(MAX_RECENTLY_VIEWED + 5)]
    p = run(*views, view("p3", at=T0 + 99 * DAY, n=99))
    assert p.recently_viewed[:3] == [
        "p3",
        f"p{MAX_RECENTLY_VIEWED + 4}",
        f"p{MAX_RECENTLY_VIEWED + 3}",
    ]
    assert len(p.recently_viewed) == MAX_RECENTLY_VIEWED
    items = [{"product_id": f"b{n}", "price": 1} for n in range(MAX_PURCHASED + 1)]
    p = run(ev("purchase", order_id="o", total=1, items=items))
    assert (
        p.purchased_products[0] == f"b{MAX_PURCHASED}"
        and len(p.purchased_products) == MAX_PURCHASED
    )


def test_the_last_cart_is_kept_when_bought_or_abandoned() -> None:
    mug = {"product_id": "mug", "price": 14.0, "cart_id": "c1", "name": "Mug"}
    p = run(ev("add_to_cart", **mug), ev("purchase", T0 + DAY, 1, order_id="o", total=14))
    assert p.last_cart is not None and p.last_cart.outcome == "bought"
    assert [line.product_id for line in p.last_cart.lines] == ["mug"]
    assert p.cart.items == {}
    p = run(
        ev("add_to_cart", T0 + 2 * DAY, 2, **mug),
        ev("add_to_cart", T0 + 3 * DAY, 3, product_id="cup", price=3.0, cart_id="c2"),
        profile=p,
    )
    assert p.last_cart is not None and p.last_cart.outcome == "abandoned"
    assert (p.last_cart.cart_id, p.last_cart.at) == ("c1", T0 + 3 * DAY)
    assert list(p.cart.items) == ["cup"]


def test_a_purchase_without_a_cart_keeps_its_items_as_the_last_cart() -> None:
    p = run(ev("purchase", order_id="o", total=3, items=[{"product_id": "x", "price": 3}]))
    assert p.last_cart is not None and [line.product_id for line in p.last_cart.lines] == ["x"]


def test_purchases_are_kept_per_day() -> None:
    p = run(
        ev("purchase", order_id="a", total=10),
        ev("purchase", T0 + timedelta(hours=1), 1, order_id="b", total=5),
        ev("purchase", T0 + 3 * DAY, 2, order_id="c", total=1),
    )
    day = int(T0.timestamp() // 86400)
    assert p.purchase_days == [(day, 2, 15.0), (day + 3, 1, 1.0)]


def test_maps_and_lists_stay_bounded() -> None:
    events = [ev(f"custom.e{n}", n=n) for n in range(MAX_COUNTS + 3)]
    traits = {f"t{n}": n for n in range(MAX_TRAITS + 3)}
    lines = [
        ev("add_to_cart", n=n, product_id=f"p{n}", price=1.0) for n in range(MAX_CART_LINES + 2)
    ]
    p = run(*events, ev("profile_update", traits=traits), *lines)
    assert len(p.counts) == MAX_COUNTS and len(p.traits) == MAX_TRAITS
    assert len(p.cart.items) == MAX_CART_LINES and "p0" not in p.cart.items
    for n in range(MAX_FIRED + 2):
        p.record_send(
            SendRecord(at=T0 + n * DAY, rule_id=f"r{n}", category="marketing", request_id=f"q{n}")
        )
    assert len(p.fired) == MAX_FIRED and "r0" not in p.fired and f"r{MAX_FIRED + 1}" in p.fired


def test_an_old_stored_profile_loads_with_its_affinity_sums_as_of_its_last_event() -> None:
    old = {
        "user_id": "u1",
        "first_seen": "2025-01-01T00:00:00Z",
        "last_seen": "2026-01-01T00:00:00Z",
        "affinity": {"kitchen": 12.0},
    }
    p = load_profile("u1", orjson.dumps(old))
    assert p.affinity_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert p.affinities_now(datetime(2026, 1, 31, tzinfo=UTC), SCORING) == {"kitchen": 6.0}
    assert p.purchase_days == [] and p.featured == [] and p.last_cart is None


# --- the feedback loop ----------------------------------------------------------------------


def outdoor_fan() -> Profile:
    return run(*(view(f"p{n}", at=T0, n=n) for n in range(10)))  # outdoor: 10.0


def feature(p: Profile, request_id: str, at: datetime) -> None:
    p.record_featured(request_id, at, ["tent", "stove"], ["outdoor"])


def test_ignored_mails_weaken_their_categories_once_each() -> None:
    p = outdoor_fan()
    for n in range(3):
        feature(p, f"m{n}", T0 + n * DAY)
    before = p.affinities_now(T0 + 10 * DAY, SCORING)["outdoor"]
    p = run(view("pan", "kitchen", T0 + 10 * DAY, n=50), profile=p)  # the next event settles
    assert [s.state for s in p.featured] == ["ignored"] * 3
    assert p.affinities_now(T0 + 10 * DAY, SCORING)["outdoor"] < before
    settled = p.affinity["outdoor"]
    p = run(view("pot", "kitchen", T0 + 11 * DAY, n=51), profile=p)
    assert p.affinities_now(T0 + 10 * DAY, SCORING)["outdoor"] == pytest.approx(settled)


def test_a_click_strengthens_and_an_open_spares_the_penalty() -> None:
    p = outdoor_fan()
    feature(p, "clicked", T0)
    feature(p, "opened", T0)
    p = run(
        ev("email_open", T0 + DAY, 60, message_id="opened"),
        ev("email_click", T0 + DAY, 61, message_id="clicked", url="/tent"),
        ev("email_click", T0 + DAY, 62, message_id="clicked", url="/tent"),  # once only
        profile=p,
    )
    expected = 10.0 * 0.5 ** (1 / 30) + SCORING.feedback.click
    assert p.affinities_now(T0 + DAY, SCORING)["outdoor"] == pytest.approx(expected, abs=1e-3)
    p = run(view("pan", "kitchen", T0 + 10 * DAY, n=63), profile=p)
    assert [s.state for s in p.featured] == ["clicked", "opened"]
    assert p.affinities_now(T0 + DAY, SCORING)["outdoor"] == pytest.approx(expected, abs=1e-3)


def test_settle_feedback_is_pure_and_settles_as_of_the_window_end() -> None:
    p = outdoor_fan()
    feature(p, "m", T0)
    assert settle_feedback(p, T0 + 2 * DAY, SCORING) is p  # the window is still open
    settled = settle_feedback(p, T0 + 20 * DAY, SCORING)
    assert p.featured[0].state == "sent" and p.affinity == {"outdoor": 10.0}
    assert settled.featured[0].state == "ignored"
    end = T0 + 3 * DAY
    assert settled.affinity_at == end
    assert settled.affinity["outdoor"] == pytest.approx(10.0 * 0.5 ** (3 / 30) - 2.0, abs=1e-3)
    # settling at the next event gives the same map
    at_event = run(view("pan", "kitchen", T0 + 20 * DAY, n=70), profile=p)
    assert at_event.affinities_now(end, SCORING)["outdoor"] == pytest.approx(
        settled.affinity["outdoor"], abs=1e-3
    )


def test_recently_recommended_products() -> None:
    p = outdoor_fan()
    p.record_featured("old", T0 - 10 * DAY, ["lamp"], [])
    feature(p, "new", T0 - DAY)
    assert p.recommended_recently(T0, 7) == {"tent", "stove"}
    assert p.recommended_recently(T0, 30) == {"tent", "stove", "lamp"}


def test_events_within_a_day_keep_the_reference_time_and_decay_alike() -> None:
    half_day = T0 + timedelta(hours=12)
    p = run(view("tent"), view("pan", "kitchen", half_day, n=1))
    assert p.affinity_at == T0  # moved up at most daily: no rescaling per event
    assert p.affinities_now(half_day, SCORING) == {
        "kitchen": pytest.approx(1.0, abs=1e-3),
        "outdoor": pytest.approx(0.5 ** (0.5 / 30), abs=1e-3),
    }

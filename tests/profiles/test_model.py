from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles import Event, Profile, ScoringConfig, apply_event
from profiles.model import MAX_DECISIONS, RECENT_DECISIONS, decayed_score

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCORING = ScoringConfig()


def ev(kind: str, at: datetime = T0, n: int = 0, **props: Any) -> Event:
    return Event(
        event_id=f"{kind}-{n}-{at.timestamp()}", type=kind, user_id="u1", ts=at, properties=props
    )


def run(*events: Event, scoring: ScoringConfig = SCORING) -> Profile:
    profile: Profile | None = None
    for event in events:
        profile = apply_event(profile, event, scoring)
    assert profile is not None
    return profile


def test_signup_sets_identity_and_consent() -> None:
    p = run(
        ev(
            "signup",
            email="a@example.com",
            first_name="Ada",
            timezone="Europe/Paris",
            consent={"email": True},
        )
    )
    assert (p.email, p.first_name, p.timezone, p.email_consent) == (
        "a@example.com",
        "Ada",
        "Europe/Paris",
        True,
    )


def test_first_and_last_seen_and_counts_tolerate_out_of_order_events() -> None:
    later, earlier = T0 + timedelta(hours=1), T0 - timedelta(hours=1)
    p = run(
        ev("page_view", url="/"), ev("page_view", later, url="/"), ev("page_view", earlier, url="/")
    )
    assert (p.first_seen, p.last_seen, p.counts) == (earlier, later, {"page_view": 3})


def test_cart_adds_merges_removes_and_purchase_empties_it() -> None:
    mug = {"product_id": "mug", "name": "Mug", "category": "kitchen", "price": 10.0}
    p = run(
        ev("add_to_cart", n=1, quantity=1, **mug),
        ev("add_to_cart", n=2, quantity=2, **mug),
        ev("add_to_cart", n=3, product_id="pan", price=5.5),
    )
    assert p.cart.items["mug"].quantity == 3
    assert (p.cart.item_count, p.cart.total) == (4, 35.5)
    p2 = apply_event(p, ev("remove_from_cart", n=4, product_id="mug"), SCORING)
    assert p2 is not None and list(p2.cart.items) == ["pan"]
    p3 = apply_event(p2, ev("purchase", n=5, order_id="o1", total=5.5), SCORING)
    assert p3 is not None
    assert (p3.cart.item_count, p3.purchase_count, p3.total_spent) == (0, 1, 5.5)
    assert p3.last_purchase_at == T0


def test_consent_and_unsubscribe_change_email_consent() -> None:
    p = run(ev("consent", channel="email", granted=True))
    assert p.email_consent
    assert not run(
        ev("consent", channel="email", granted=True), ev("unsubscribe", n=1)
    ).email_consent


def test_erase_forgets_the_user() -> None:
    p = run(ev("signup", email="a@example.com"))
    assert apply_event(p, ev("erase", n=1), SCORING) is None


def test_profile_update_routes_identity_traits_to_fields() -> None:
    p = run(
        ev("profile_update", traits={"first_name": "Ada", "plan": "pro", "birthday": "1990-12-10"})
    )
    assert p.first_name == "Ada"
    assert p.traits == {"plan": "pro", "birthday": "1990-12-10"}


def test_profile_update_normalises_the_address() -> None:
    p = run(
        ev("signup", email="old@example.com"),
        ev("profile_update", n=1, traits={"email": " Ann@Example.COM "}),
    )
    assert (p.email, p.email_invalid) == ("Ann@example.com", None)


@pytest.mark.parametrize(("value", "recorded"), [("not an email", "not an email"), (42, "42")])
def test_profile_update_records_an_invalid_address_and_applies_the_rest(
    value: object, recorded: str
) -> None:
    p = run(
        ev("signup", email="old@example.com", consent={"email": True}),
        ev("profile_update", n=1, traits={"email": value, "first_name": "Ann", "plan": "pro"}),
    )
    # the old address is not mailed as if nothing happened: nothing is, until a valid one
    assert (p.email, p.email_invalid) == (None, recorded)
    assert (p.first_name, p.traits, p.email_consent) == ("Ann", {"plan": "pro"}, True)


@pytest.mark.parametrize(
    "later",
    [
        ev("profile_update", n=2, traits={"email": "new@Example.com"}),
        ev("signup", n=2, email="new@Example.com"),
    ],
)
def test_a_later_valid_address_clears_the_invalid_one(later: Event) -> None:
    p = run(ev("profile_update", n=1, traits={"email": "a@b"}), later)
    assert (p.email, p.email_invalid) == ("new@example.com", None)


def test_a_null_address_clears_it_valid_or_not() -> None:
    cleared = ev("profile_update", n=9, traits={"email": None})
    assert run(ev("signup", email="a@example.com"), cleared).email is None
    p = run(ev("profile_update", n=1, traits={"email": "a@b"}), cleared)
    assert (p.email, p.email_invalid) == (None, None)


def test_profiles_stored_before_address_checks_still_load() -> None:
    stored = run(ev("signup", email="a@example.com")).model_dump(mode="json")
    del stored["email_invalid"]
    assert Profile.model_validate(stored).email_invalid is None


# --- bounces ------------------------------------------------------------------------------


def bounce(at: datetime = T0, n: int = 0, **props: Any) -> Event:
    """A bounce as the mailer reports it (``props`` may name its ``kind``)."""
    properties = {"email": "ann@example.com", "code": 550, **props}
    return Event(event_id=f"bounce-{n}", type="bounce", user_id="u1", ts=at, properties=properties)


HOUR = timedelta(hours=1)


def test_a_hard_bounce_of_the_profiles_address_marks_it_undeliverable() -> None:
    signup = ev("signup", email="ann@example.com")
    p = run(signup, bounce(T0 + HOUR))
    assert (p.email, p.undeliverable, p.undeliverable_at) == (
        "ann@example.com",
        "ann@example.com",
        T0 + HOUR,
    )
    assert p.counts["bounce"] == 1
    # no engagement: neither score nor an activity day of the prediction features
    assert (p.score, p.activity_days) == (0.0, run(signup).activity_days)


def test_the_mark_keeps_the_first_hard_bounce_and_matches_any_case() -> None:
    p = run(
        ev("signup", email="Ann@Example.com"),
        bounce(T0 + 2 * HOUR, n=1, email="ANN@example.COM"),
        bounce(T0 + HOUR, n=2, email="Ann@example.com"),  # a late one, older
        bounce(T0 + 3 * HOUR, n=3),
    )
    assert (p.undeliverable, p.undeliverable_at) == ("Ann@example.com", T0 + HOUR)


@pytest.mark.parametrize(
    "other",
    [
        bounce(T0 + HOUR, kind="soft", code=452),
        bounce(T0 + HOUR, email="old@example.com"),  # an address the user replaced
    ],
)
def test_a_soft_bounce_or_one_of_another_address_changes_nothing(other: Event) -> None:
    p = run(ev("signup", email="ann@example.com"), other)
    assert (p.email, p.undeliverable, p.undeliverable_at) == ("ann@example.com", None, None)
    assert p.counts["bounce"] == 1  # kept like any event


def test_a_bounce_for_a_profile_without_an_address_changes_nothing() -> None:
    p = run(ev("page_view", url="/"), bounce(T0 + HOUR))
    assert (p.email, p.undeliverable) == (None, None)


@pytest.mark.parametrize(
    "change",
    [
        ev("signup", T0 + 2 * HOUR, n=5, email="ann@new.example"),
        ev("profile_update", T0 + 2 * HOUR, n=5, traits={"email": "ann@new.example"}),
        ev("profile_update", T0 + 2 * HOUR, n=5, traits={"email": None}),
        ev("profile_update", T0 + 2 * HOUR, n=5, traits={"email": "not an address"}),
    ],
)
def test_another_address_clears_the_mark(change: Event) -> None:
    p = run(ev("signup", email="ann@example.com"), bounce(T0 + HOUR), change)
    assert (p.undeliverable, p.undeliverable_at) == (None, None)


@pytest.mark.parametrize(
    "same",
    [
        ev("signup", T0 + 2 * HOUR, n=5, email="ann@EXAMPLE.com"),
        ev("profile_update", T0 + 2 * HOUR, n=5, traits={"email": " ann@example.com"}),
        ev("profile_update", T0 + 2 * HOUR, n=5, traits={"first_name": "Ann"}),
    ],
)
def test_the_same_address_set_again_keeps_the_mark(same: Event) -> None:
    p = run(ev("signup", email="ann@example.com"), bounce(T0 + HOUR), same)
    assert (p.undeliverable, p.undeliverable_at) == ("ann@example.com", T0 + HOUR)


def test_profiles_stored_before_bounces_still_load() -> None:
    stored = run(ev("signup", email="a@example.com")).model_dump(mode="json")
    del stored["undeliverable"], stored["undeliverable_at"]
    profile = Profile.model_validate(stored)
    assert (profile.undeliverable, profile.undeliverable_at) == (None, None)


def test_engagement_score_uses_configured_points_and_halves_each_half_life() -> None:
    scoring = ScoringConfig(points={"email_open": 10, "purchase": 20}, half_life_days=7)
    p = run(
        ev("email_open", message_id="m"),
        ev("purchase", n=1, order_id="o", total=1),
        scoring=scoring,
    )
    assert p.score == pytest.approx(30)
    assert p.score_now(T0 + timedelta(days=7), scoring) == pytest.approx(15)
    assert p.score_now(T0 + timedelta(days=14), scoring) == pytest.approx(7.5)


def test_late_event_adds_its_points_decayed() -> None:
    scoring = ScoringConfig(points={"email_open": 10}, half_life_days=1)
    p = run(
        ev("email_open", message_id="m"),
        ev("email_open", T0 - timedelta(days=1), n=1, message_id="m"),
        scoring=scoring,
    )
    assert p.score == pytest.approx(15)
    assert p.score_at == T0


def test_category_affinity_weights_views_carts_and_purchases() -> None:
    p = run(
        ev("product_view", product_id="k", category="kitchen"),
        ev("add_to_cart", n=1, product_id="k", category="kitchen", price=1),
        ev(
            "purchase",
            n=2,
            order_id="o",
            total=1,
            items=[{"product_id": "s", "category": "apparel", "price": 1}],
        ),
    )
    assert p.affinity == {"kitchen": 4.0, "apparel": 5.0}


def test_a_score_judged_before_its_last_event_is_not_inflated() -> None:
    # an event of 1970 arriving after one of 2099: 2**1500 once overflowed the float
    latest = datetime(2099, 12, 31, tzinfo=UTC)
    assert decayed_score(10.0, latest, datetime(1970, 1, 1, tzinfo=UTC), 30) == 10.0
    assert decayed_score(10.0, latest, latest + timedelta(days=30), 30) == 5.0


def decided(rule: str, n: int) -> dict[str, Any]:
    return {"rule_id": rule, "outcome": "scheduled", "reason": "ok", "key": f"k{n}"}


def test_every_rules_latest_decision_outlasts_another_rules_churn() -> None:
    """``explain`` gives each rule's verdict from its latest decision: a rule that moves a
    timer per product viewed must not push the welcome's out."""
    profile = Profile(user_id="u1", first_seen=T0, last_seen=T0)
    profile.record_decision(decided("welcome", 0))
    profile.record_decision(decided("winback", 1))
    for n in range(2, 100):
        profile.record_decision(decided("browse", n))
    assert [(d["rule_id"], d["key"]) for d in profile.decisions] == [
        ("welcome", "k0"),
        ("winback", "k1"),
        *(("browse", f"k{n}") for n in range(100 - RECENT_DECISIONS, 100)),
    ]


def test_decisions_of_many_rules_keep_to_the_cap_forgetting_the_rules_decided_longest_ago() -> None:
    profile = Profile(user_id="u1", first_seen=T0, last_seen=T0)
    for n in range(40):
        profile.record_decision(decided(f"rule{n}", n))
    assert len(profile.decisions) == MAX_DECISIONS
    assert [d["rule_id"] for d in profile.decisions] == [f"rule{n}" for n in range(20, 40)]


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), max_size=80))
def test_decisions_kept_one_at_a_time_are_those_the_whole_history_gives(rules: list[str]) -> None:
    """Recording decision by decision keeps exactly the newest ``RECENT_DECISIONS`` and the
    newest of each other rule (six rules: too few for the cap to drop any)."""
    profile = Profile(user_id="u1", first_seen=T0, last_seen=T0)
    history = [decided(rule, n) for n, rule in enumerate(rules)]
    for decision in history:
        profile.record_decision(decision)
    recent = history[-RECENT_DECISIONS:]
    newest_of_others = {
        d["rule_id"]: d for d in history if d["rule_id"] not in {r["rule_id"] for r in recent}
    }
    expected = [d for d in history if d is newest_of_others.get(d["rule_id"])] + recent
    assert profile.decisions == expected

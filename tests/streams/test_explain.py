"""``nudge explain``: the verdict names the guard a deferred send waits for; each score on
the profile comes with its reasons."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from profiles import (
    Event,
    Keys,
    Predicted,
    Profile,
    ProfileWrite,
    RedisProfileStore,
    RedisTimerStore,
    ScoringConfig,
    Timer,
    TimerOps,
    apply_event,
)
from profiles.predictions import FEATURES, TARGETS, feature_vector
from streams.explain import (
    CONSENT_CHANGES_SHOWN,
    NOT_SCORED,
    explain_consent,
    explain_predictions,
    explain_user,
    render_consent,
    render_explanation,
    render_predictions,
    verdict,
)
from streams.settings import Settings
from triggers import load_rules

REPO = Path(__file__).resolve().parents[2]


def _report(reason: str | None) -> dict[str, Any]:
    timer = {"rule_id": "news", "key": "", "step": None, "deferred": reason}
    return {
        "pending_timers": [{**timer, "due": "2026-11-25T19:00:00+00:00", "partition": 0}],
        "recent_decisions": [],
    }


def test_a_send_deferred_to_the_best_hour_says_so() -> None:
    line = verdict(_report("best_hour"), "news")
    assert line == "pending, due 2026-11-25 19:00 UTC (deferred to the best hour)"


def test_a_send_deferred_by_quiet_hours_says_so() -> None:
    line = verdict(_report("quiet_hours"), "news")
    assert line == "pending, due 2026-11-25 19:00 UTC (deferred by quiet_hours)"


def test_a_timer_that_was_not_deferred_has_no_note() -> None:
    assert verdict(_report(None), "news") == "pending, due 2026-11-25 19:00 UTC"


async def test_a_deferred_timer_says_what_it_waits_for_however_many_decisions_came_since(
    redis_url: str, redis_client: Any, keys: Keys
) -> None:
    """The timer keeps its reason: the profile's decisions need not still hold the
    deferral. A timer deferred before timers kept it is read from the decisions."""
    profile = _shopper(scored_by=None)
    for n in range(30):  # another rule's churn: the deferral leaves the recent decisions
        profile.record_decision({"rule_id": "browse", "outcome": "cancelled", "key": f"p{n}"})
    profile.record_decision({"rule_id": "winback", "outcome": "deferred", "reason": "best_hour"})
    await RedisProfileStore(redis_client, keys=keys).save([ProfileWrite("ada", 0, profile)])
    event = {"event_id": "e2", "type": "add_to_cart"}
    held = [
        Timer("cart", "ada", 2_000, 0, event, key="c1", deferred=True, deferred_by="quiet_hours"),
        Timer("winback", "ada", 3_000, 0, event, deferred=True),  # kept before: no reason
    ]
    await RedisTimerStore(redis_client, keys=keys).apply(
        TimerOps(schedule={(0, t.id): t for t in held})
    )
    settings = Settings(redis_url=redis_url, redis_prefix=keys.prefix)
    report = await explain_user(settings, load_rules(REPO / "config"), "ada")
    assert report is not None
    waits = {t["rule_id"]: t["deferred"] for t in report["pending_timers"]}
    assert waits == {"cart": "quiet_hours", "winback": "best_hour"}


# --- predictions -------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCORING = ScoringConfig()


def _shopper(*, scored_by: str | None, user_id: str = "ada") -> Profile:
    """A user who signed up, browsed and left a mug in the cart; scored an hour later."""
    events = [
        ("signup", {"email": "ada@example.com", "consent": {"email": True}}),
        ("product_view", {"product_id": "mug", "category": "kitchen", "price": 14.0}),
        ("add_to_cart", {"product_id": "mug", "price": 14.0, "cart_id": "c1"}),
    ]
    profile: Profile | None = None
    for n, (kind, props) in enumerate(events):
        event = Event(
            event_id=f"e{n}",
            type=kind,
            user_id=user_id,
            ts=T0 + n * timedelta(minutes=5),
            properties=props,
        )
        profile = apply_event(profile, event, SCORING)
    assert profile is not None
    if scored_by is None:
        return profile
    predicted = Predicted(
        purchase_probability=0.42,
        churn_probability=0.13,
        expected_value=18.5,
        cluster="window shoppers",
        model_version=scored_by,
        scored_at=T0 + timedelta(hours=1),
    )
    return profile.model_copy(update={"predicted": predicted})


def test_each_score_shows_its_top_reasons_and_how_they_are_computed(stub_model: Any) -> None:
    model = stub_model(version="m-3")
    report = explain_predictions(_shopper(scored_by="m-3"), SCORING, model=model)
    text = "\n".join(render_predictions(report))
    assert "predictions (model m-3, scored 2026-03-01 13:00 UTC):" in text
    assert "  purchase_probability 0.42\n    reasons (exact: weight x value (purchase" in text
    assert "churn_probability 0.13" in text and "expected_value 18.50" in text
    assert "cluster window shoppers" in text
    for target in TARGETS:
        reasons = report["scores"][target]["reasons"]
        assert 1 <= len(reasons) <= 3
        assert report["scores"][target]["method"] == model.reason_method(target)
        for reason in reasons:
            assert f"{reason['feature']} = {reason['value']:g}" in text
    effects = [abs(r["effect"]) for r in report["scores"]["purchase_probability"]["reasons"]]
    assert effects == sorted(effects, reverse=True)
    assert report["note"] is None
    orjson.dumps(report)  # the --json output


def test_reasons_explain_the_features_the_score_was_computed_on(stub_model: Any) -> None:
    profile = _shopper(scored_by="m-3")
    assert profile.predicted is not None
    report = explain_predictions(profile, SCORING, model=stub_model(version="m-3"))
    row = feature_vector(profile, profile.predicted.scored_at, SCORING)
    for reason in report["scores"]["purchase_probability"]["reasons"]:
        assert reason["value"] == row[FEATURES.index(reason["feature"])]


def test_an_unscored_profile_says_why_it_may_have_no_scores(stub_model: Any) -> None:
    report = explain_predictions(_shopper(scored_by=None), SCORING, model=stub_model())
    assert report == {"scored": False, "note": NOT_SCORED}
    assert render_predictions(report) == [
        "predictions: not scored yet (no model loaded, or no event since it was)"
    ]


def test_without_a_model_the_scores_show_without_reasons() -> None:
    report = explain_predictions(_shopper(scored_by="m-3"), SCORING)
    text = "\n".join(render_predictions(report))
    assert "purchase_probability 0.42" in text
    assert "effect" not in text
    assert "no model loaded" in text


def test_reasons_from_another_model_version_are_labelled(stub_model: Any) -> None:
    report = explain_predictions(_shopper(scored_by="m-3"), SCORING, model=stub_model("m-4"))
    assert "scored by model m-3; reasons from the loaded model m-4" in "\n".join(
        render_predictions(report)
    )


# --- consent -----------------------------------------------------------------------------


def test_consent_shows_the_state_and_the_latest_changes() -> None:
    profile = _shopper(scored_by=None)
    changes = [
        ("unsubscribe", {"category": "offers", "source": "unsubscribe_link"}),
        ("consent", {"channel": "email", "granted": False, "category": "reminders"}),
    ] * 3 + [("consent", {"channel": "email", "granted": True, "category": "reminders"})]
    for n, (kind, props) in enumerate(changes):
        at = T0 + timedelta(days=1, minutes=n)
        event = Event(event_id=f"c{n}", type=kind, user_id="ada", ts=at, properties=props)
        updated = apply_event(profile, event, SCORING)
        assert updated is not None
        profile = updated
    report = explain_consent(profile)
    assert (report["email_consent"], report["unsubscribed"], report["changes"]) == (
        True,
        ["offers"],
        8,
    )
    assert len(report["recent_changes"]) == CONSENT_CHANGES_SHOWN
    lines = render_consent(report)
    assert lines[:2] == [
        "consent: email yes, subscriptions left: offers",
        "  last 5 of 8 change(s), oldest first:",
    ]
    assert lines[-1] == ("  2026-03-02T12:06:00Z  reminders: granted (source consent, event c6)")
    assert "offers: revoked (source unsubscribe_link, event c4)" in lines[-3]
    orjson.dumps(report)


def test_a_profile_without_consent_changes_says_so() -> None:
    profile = Profile(user_id="old", first_seen=T0, last_seen=T0)
    assert render_consent(explain_consent(profile)) == [
        "consent: email no, subscriptions left: none",
        "  no change recorded",
    ]


async def test_explain_user_reads_the_stored_scores_and_asks_the_model_why(
    redis_url: str, redis_client: Any, keys: Keys, stub_model: Any
) -> None:
    profile = _shopper(scored_by="m-3")
    await RedisProfileStore(redis_client, keys=keys).save([ProfileWrite("ada", 0, profile)])
    settings = Settings(redis_url=redis_url, redis_prefix=keys.prefix)
    rules = replace(load_rules(REPO / "config"), model=stub_model(version="m-3"))
    report = await explain_user(settings, rules, "ada")
    assert report is not None
    reasons = report["predictions"]["scores"]["expected_value"]["reasons"]
    assert reasons[0]["feature"] == "cart_value"
    text = render_explanation(report)
    assert "predictions (model m-3, scored 2026-03-01 13:00 UTC):" in text
    assert "      cart_value = 14  effect +7.000" in text
    assert "consent: email yes, subscriptions left: none" in text
    assert "consent_log" not in report["profile"]
    orjson.dumps(report)


async def test_explain_user_reads_a_user_whose_id_starts_with_a_brace_on_redis_cluster(
    redis_cluster_url: str, cluster_client: Any, keys: Keys
) -> None:
    user = "}ada"  # a hash tag of its own: the user's keys in one slot
    store = RedisProfileStore(cluster_client, keys=keys, cluster=True)
    await store.save([ProfileWrite(user, 0, _shopper(scored_by=None, user_id=user))])
    timer = Timer("cart", user, 1_000, 2, {"event_id": "e2", "type": "add_to_cart"})
    await RedisTimerStore(cluster_client, keys=keys).apply(
        TimerOps(schedule={(2, timer.id): timer})
    )
    settings = Settings(redis_url=redis_cluster_url, redis_cluster=True, redis_prefix=keys.prefix)
    report = await explain_user(settings, load_rules(REPO / "config"), user)
    assert report is not None
    assert (report["user_id"], report["profile"]["email"]) == (user, "ada@example.com")
    assert [t["trigger_event_id"] for t in report["pending_timers"]] == ["e2"]

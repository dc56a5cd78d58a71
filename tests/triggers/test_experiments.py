"""Experiment assignment: deterministic, by weight, independent, with a holdout."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from profiles import Event, Snapshot
from triggers import RuleSet, load_rules, request_id
from triggers.arms import ArmCounts, counter_field
from triggers.experiments import ExperimentSpec, assign, experiment_of
from triggers.fold import UserStep, apply_user_events
from triggers.rules import Experimental, Variant
from triggers.simulate import simulate

USERS = [f"user-{n}" for n in range(20_000)]


def _spec(experiment: str = "exp", **settings: object) -> ExperimentSpec:
    return ExperimentSpec(experiment, Experimental.model_validate(settings))


def _split(spec: ExperimentSpec) -> Counter[str]:
    return Counter(assign(spec, user, f"r-{user}").arm for user in USERS)


def test_arms_follow_the_weights_and_the_holdout_share() -> None:
    spec = _spec(variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 3}], holdout=0.1)
    split = _split(spec)
    n = len(USERS)
    # three standard deviations of a binomial share, per arm
    for arm, share in (("holdout", 0.1), ("a", 0.9 * 0.25), ("b", 0.9 * 0.75)):
        assert abs(split[arm] - n * share) < 3 * (n * share * (1 - share)) ** 0.5, (arm, split)


def test_assignment_is_stable_for_a_user_and_ignores_the_request() -> None:
    spec = _spec(variants=[{"name": "a"}, {"name": "b"}], holdout=0.2)
    for user in USERS[:200]:
        assert assign(spec, user, "first").arm == assign(spec, user, "retry").arm


def test_two_experiments_assign_independently() -> None:
    first = _spec("one", variants=[{"name": "a"}, {"name": "b"}])
    second = _spec("two", variants=[{"name": "a"}, {"name": "b"}])
    pairs = Counter((assign(first, u, "").arm, assign(second, u, "").arm) for u in USERS)
    n = len(USERS)
    for pair in (("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")):
        assert abs(pairs[pair] - n / 4) < 3 * (n * 0.25 * 0.75) ** 0.5, pairs


def test_the_variant_split_does_not_move_when_the_holdout_changes() -> None:
    small = _spec(variants=[{"name": "a"}, {"name": "b"}], holdout=0.05)
    large = _spec(variants=[{"name": "a"}, {"name": "b"}], holdout=0.2)
    for user in USERS[:2000]:
        before, after = assign(small, user, ""), assign(large, user, "")
        if not after.held_out:
            assert before.arm == after.arm


def test_thompson_sends_most_users_to_the_arm_that_clicks_more() -> None:
    spec = _spec(variants=[{"name": "a"}, {"name": "b"}], strategy="thompson")
    arms = {
        "a": ArmCounts(exposed=400, clicked=20),  # 5 %
        "b": ArmCounts(exposed=400, clicked=48),  # 12 %
    }
    split = Counter(assign(spec, u, f"r-{u}", arms).arm for u in USERS[:2000])
    assert split["b"] > 0.95 * 2000, split
    # reproducible: the same counters, user and request give the same arm
    assert all(assign(spec, u, "r", arms) == assign(spec, u, "r", arms) for u in USERS[:100])


def test_thompson_without_counts_explores_both_arms() -> None:
    spec = _spec(variants=[{"name": "a"}, {"name": "b"}], strategy="thompson")
    split = Counter(assign(spec, u, f"r-{u}", {}).arm for u in USERS[:2000])
    assert min(split.values()) > 800, split


def test_a_rule_without_variants_counts_under_its_own_id(
    make_config: Callable[[str], Path],
) -> None:
    rules = load_rules(
        make_config(
            """\
            version: 1
            rules:
              - id: hello
                kind: on_event
                events: [signup]
                template: welcome
              - id: series
                kind: sequence
                start: [signup]
                steps:
                  - template: welcome
                  - delay: 1d
                    template: welcome
                    holdout: 0.5
            """
        )
    )
    hello, series = rules.config.rules
    assert experiment_of(hello, None).id == "hello"
    assert assign(experiment_of(hello, None), "u1", "r").arm == "default"
    assert experiment_of(series, 0).id == "series"
    assert experiment_of(series, 1).id == "series#1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "more than once"),
        ({"variants": [{"name": "holdout"}]}, "keeps for itself"),
        ({"variants": [{"name": "a"}], "strategy": "thompson"}, "at least two"),
        ({"holdout": 1.0}, "less than 1"),
    ],
)
def test_bad_experiments_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Experimental.model_validate(settings)


def test_a_variant_weight_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        Variant(name="a", weight=0)


# --- on the fold: holdout, variants and attribution ----------------------------------------

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

EXPERIMENT_RULES = """\
version: 1
guards:
  default_timezone: UTC
rules:
  - id: hello
    kind: on_event
    events: [signup]
    reentry: once
    template: welcome
    holdout: 0.3
    variants:
      - {name: plain}
      - {name: tips, template: welcome_tips}
"""


def _signup(rules: RuleSet, user_id: str, at: datetime = T0) -> UserStep:
    event = Event(
        event_id=f"s-{user_id}",
        type="signup",
        user_id=user_id,
        ts=at,
        properties={"email": f"{user_id}@example.com", "consent": {"email": True}},
    )
    return apply_user_events(rules, Snapshot(None), [(event, 0)], at)


def _then(rules: RuleSet, step: UserStep, kind: str, at: datetime, **props: Any) -> UserStep:
    event = Event(event_id=f"{kind}-{at}", type=kind, user_id="x", ts=at, properties=props)
    event = event.model_copy(update={"user_id": step.profile.user_id if step.profile else "x"})
    return apply_user_events(rules, Snapshot(step.profile), [(event, 0)], at)


@pytest.fixture
def experiment_rules(make_config: Callable[[str], Path]) -> RuleSet:
    return load_rules(make_config(EXPERIMENT_RULES))


def test_held_out_users_get_no_mail_and_the_decision_names_the_withheld_send(
    experiment_rules: RuleSet,
) -> None:
    steps = {user: _signup(experiment_rules, user) for user in USERS[:300]}
    held = {u: s for u, s in steps.items() if not s.sends}
    assert 50 < len(held) < 130  # about 30 % of 300
    for user, step in held.items():
        (decision,) = step.decisions
        assert (decision.outcome, decision.reason, decision.arm) == (
            "suppressed",
            "holdout",
            "holdout",
        )
        assert decision.request_id == request_id("hello", user, "", f"s-{user}")
        assert step.counters == {counter_field("hello", "holdout", "exposed"): 1.0}
        assert step.profile is not None and step.profile.exposures[0].arm == "holdout"


def test_sent_mail_carries_its_experiment_variant_and_message_id(experiment_rules: RuleSet) -> None:
    sent = [s for u in USERS[:300] for s in _signup(experiment_rules, u).sends]
    by_variant = Counter(s.variant for s in sent)
    assert set(by_variant) == {"plain", "tips"}
    for send in sent:
        assert send.experiment_id == "hello" and send.message_id == send.request_id
        assert send.template == ("welcome_tips" if send.variant == "tips" else "welcome")


def test_a_held_out_user_is_held_out_once_like_a_sent_one(experiment_rules: RuleSet) -> None:
    user = next(u for u in USERS if not _signup(experiment_rules, u).sends)
    first = _signup(experiment_rules, user)
    again = _then(
        experiment_rules,
        first,
        "signup",
        T0 + timedelta(days=1),
        email=f"{user}@example.com",
        consent={"email": True},
    )
    assert [d.reason for d in again.decisions] == ["already_sent"]
    assert again.profile is not None and again.profile.sends == []  # no frequency-cap use


def test_opens_clicks_and_purchases_count_for_the_arm(experiment_rules: RuleSet) -> None:
    step = next(s for u in USERS if (s := _signup(experiment_rules, u)).sends)
    send = step.sends[0]
    arm = send.variant
    opened = _then(
        experiment_rules, step, "email_open", T0 + timedelta(hours=1), message_id=send.message_id
    )
    assert opened.counters == {counter_field("hello", arm, "opened"): 1.0}
    bought = _then(
        experiment_rules, opened, "purchase", T0 + timedelta(days=1), order_id="o1", total=20.0
    )
    assert bought.counters == {
        counter_field("hello", arm, "converted"): 1.0,
        counter_field("hello", arm, "revenue"): 20.0,
        counter_field("hello", arm, "revenue_sq"): 400.0,
    }


# --- before launch: the split on recorded traffic -------------------------------------------


def _recorded_signups(count: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"s{n}",
                "type": "signup",
                "user_id": f"user-{n}",
                "ts": (T0 + timedelta(seconds=n)).isoformat(),
                "properties": {"email": f"u{n}@example.com", "consent": {"email": True}},
            }
        )
        for n in range(count)
    ]


async def test_simulate_shows_the_split_an_experiment_would_make(
    experiment_rules: RuleSet,
) -> None:
    lines = _recorded_signups(400)
    sim = await simulate(experiment_rules, lines)
    arms = sim.arms()
    assert set(arms) == {"hello"} and sum(arms["hello"].values()) == 400
    # the same arms as assignment gives each user, so the worker will split alike
    spec = experiment_of(experiment_rules.config.rules[0], None)
    assert arms["hello"] == Counter(assign(spec, f"user-{n}", "").arm for n in range(400))
    again = await simulate(experiment_rules, lines)
    assert again.arms() == arms


# --- what the holdout is compared with -------------------------------------------------------


def _run(rules: RuleSet, user_id: str, *events: tuple[str, dict[str, Any]]) -> UserStep:
    snapshot, step = Snapshot(None), UserStep(profile=None)
    for n, (kind, props) in enumerate(events):
        at = T0 + timedelta(minutes=n)
        event = Event(
            event_id=f"{user_id}-{n}", type=kind, user_id=user_id, ts=at, properties=props
        )
        step = apply_user_events(rules, snapshot, [(event, 0)], at)
        snapshot = Snapshot(step.profile)
    return step


def test_a_holdout_only_experiment_marks_its_sends(make_config: Callable[[str], Path]) -> None:
    rules = load_rules(make_config(EXPERIMENT_RULES.split("    variants:")[0]))
    sent = [s for u in USERS[:100] for s in _signup(rules, u).sends]
    assert sent and {(s.experiment_id, s.variant) for s in sent} == {("hello", "default")}


def test_a_held_out_rule_leaves_the_moment_to_the_others(
    make_config: Callable[[str], Path],
) -> None:
    rules = load_rules(
        make_config(
            EXPERIMENT_RULES
            + """\
  - id: also_on_signup
    kind: on_event
    events: [signup]
    priority: -1
    template: welcome_tips
"""
        )
    )
    for user in USERS[:200]:
        step = _signup(rules, user)
        reasons = {d.rule_id: d.reason for d in step.decisions}
        if reasons["hello"] == "holdout":
            # without the held-out rule, the other one wins the moment
            assert reasons["also_on_signup"] == "ok", reasons
        else:
            assert reasons["also_on_signup"] == "arbitration", reasons


def test_a_user_the_mail_could_not_be_made_for_is_not_counted_as_held_out(
    make_config: Callable[[str], Path],
) -> None:
    rules = load_rules(
        make_config(
            """\
version: 1
rules:
  - id: cart_reminder
    kind: on_event
    events: [checkout_started]
    template: cart_abandonment
    holdout: 0.5
"""
        )
    )
    signup = ("signup", {"email": "x@example.com", "consent": {"email": True}})
    reasons = Counter(
        d.reason
        for user in USERS[:100]
        for d in _run(rules, user, signup, ("checkout_started", {"total": 10.0})).decisions
        if d.rule_id == "cart_reminder"
    )
    # an empty cart: the template requires cart.items, so no arm counts these users
    assert reasons == Counter({"missing_data": 100})


def test_validate_refuses_shared_experiment_ids_and_broken_subjects(
    make_config: Callable[[str], Path],
) -> None:
    from triggers import ConfigError

    text = (
        EXPERIMENT_RULES.replace("{name: plain}", "{name: plain, subject: '{{ oops'}")
        + """\
  - id: other
    kind: on_event
    events: [signup]
    template: welcome
    experiment: hello
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(make_config(text))
    found = " | ".join(str(issue) for issue in caught.value.issues)
    assert "experiment id 'hello' is already used" in found
    assert "subject" in found and "oops" in found

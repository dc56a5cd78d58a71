"""A profile the probe already read is not probed again, and that changes nothing."""

from __future__ import annotations

import functools
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles import Event, Predicted, Profile, Snapshot
from triggers import RuleSet, load_rules
from triggers.conditions import _ENV, CompiledProbe
from triggers.fold import Probed, UserStep, apply_user_events
from triggers.reads import _follow, _leaves, probe_reads

REPO = Path(__file__).resolve().parents[2]
RULES = load_rules(REPO / "config")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_shipped_probe_is_followed() -> None:
    reads = probe_reads(
        _ENV,
        "[profile.total_spent >= 500, within(profile.last_purchase_at, '90d'),"
        " ((profile.score) or 0) > 50, profile.cart.item_count == 0, 'vip' in segments]",
    )
    assert reads is not None
    assert [".".join([root, *(str(k) for _, k in steps)]) for root, steps in reads.chains] == [
        "profile.total_spent",
        "profile.last_purchase_at",
        "profile.score",
        "profile.score_at",
        "profile.cart.item_count",
        "segments",
    ]
    profile = Profile(user_id="u", first_seen=T0, last_seen=T0, segments=["vip"])
    none = (type(None), None)
    assert reads.fingerprint(profile) == (
        (float, 0.0),
        none,
        (float, 0.0),
        none,
        (int, 0),
        ("vip",),
    )


@settings(max_examples=100, deadline=None)
@given(
    spent=st.floats(0, 900),
    count=st.integers(0, 3),
    traits=st.dictionaries(st.sampled_from(["plan", "x"]), st.none() | st.integers() | st.text()),
)
def test_plain_attributes_read_as_the_sandbox_does(
    spent: float, count: int, traits: dict[str, Any]
) -> None:
    reads = probe_reads(_ENV, "profile.total_spent > 1 and profile.cart.item_count < 3")
    assert reads is not None and reads._plain is not None
    profile = Profile(
        user_id="u",
        first_seen=T0,
        last_seen=T0,
        total_spent=spent,
        purchase_count=count,
        traits=traits,
    )
    slow = tuple(_follow(profile, c, ls) for c, ls in zip(reads.chains, reads.lookups, strict=True))
    assert reads.fingerprint(profile) == _leaves(slow)
    with_items = probe_reads(_ENV, "profile.traits.plan == 'x' and profile.nope > 1")
    assert with_items is not None
    assert with_items.fingerprint(profile) == _leaves(
        tuple(
            _follow(profile, c, ls)
            for c, ls in zip(with_items.chains, with_items.lookups, strict=True)
        )
    )


@pytest.mark.parametrize(
    "text",
    [
        "days_since(profile.last_seen) + 1 > 3",  # arithmetic on a time-based value
        "days_since(profile.last_seen) == 3",  # equality notes no flip
        "not days_since(profile.last_seen)",
        "profile.score * 2 > 3",
        "profile.score == 3",
        "profile.score.real > 3",
        "now > profile.last_seen",
        "range(3)",
        "profile.traits[profile.first_name]",
        "event.properties.total > 1",
        "profile.first_name | upper",
    ],
)
def test_what_a_fingerprint_cannot_follow(text: str) -> None:
    assert probe_reads(_ENV, text) is None


def test_the_model_scores_are_followed_through_the_nested_object() -> None:
    reads = probe_reads(
        _ENV,
        "[profile.predicted.churn_probability > 0.7, profile.predicted.cluster == 'x']",
    )
    assert reads is not None
    unscored = Profile(user_id="u", first_seen=T0, last_seen=T0)
    scores = {"purchase_probability": 0.1, "expected_value": 5.0, "model_version": "v1"}
    scored = unscored.model_copy(
        update={"predicted": Predicted(churn_probability=0.2, cluster="x", scored_at=T0, **scores)}
    )
    rescored = scored.model_copy(
        update={"predicted": scored.predicted.model_copy(update={"churn_probability": 0.8})}
    )
    fingerprints = [reads.fingerprint(p) for p in (unscored, scored, rescored)]
    assert None not in fingerprints
    assert len(set(fingerprints)) == 3


def test_a_mutable_leaf_has_no_fingerprint() -> None:
    reads = probe_reads(_ENV, "profile.traits and profile.cart.item_count > 0")
    assert reads is not None
    assert reads.fingerprint(Profile(user_id="u", first_seen=T0, last_seen=T0)) is None


_EVENTS: dict[str, Any] = {
    "add_to_cart": st.fixed_dictionaries(
        {"product_id": st.sampled_from(["p1", "p2"]), "price": st.sampled_from([5.0, 300.0])}
    ),
    "remove_from_cart": st.fixed_dictionaries({"product_id": st.sampled_from(["p1", "p2"])}),
    "purchase": st.fixed_dictionaries(
        {"order_id": st.just("o"), "total": st.sampled_from([20.0, 150.0, 600.0])}
    ),
    "email_open": st.fixed_dictionaries({"message_id": st.just("m")}),
    "product_view": st.fixed_dictionaries({"product_id": st.sampled_from(["p1", "p2"])}),
    "page_view": st.fixed_dictionaries({"url": st.just("/")}),
}


@st.composite
def _streams(draw: st.DrawFn) -> list[Event]:
    events, at = [], T0
    for n in range(draw(st.integers(1, 25))):
        # mostly forwards, by up to ~200 days, sometimes backwards
        at += timedelta(minutes=draw(st.integers(-600, 288_000)))
        kind = draw(st.sampled_from(sorted(_EVENTS)))
        props = draw(_EVENTS[kind])
        events.append(Event(event_id=f"e{n}", type=kind, user_id="u", ts=at, properties=props))
    return events


def _fold(events: list[Event], *, reuse: bool, rules: RuleSet = RULES) -> UserStep:
    with pytest.MonkeyPatch.context() as patch:
        if not reuse:
            patch.setattr(Probed, "still", lambda self, at, fingerprint: False)
        now = max(e.ts for e in events)
        return apply_user_events(rules, Snapshot(None), [(e, 0) for e in events], now)


@settings(max_examples=150, deadline=None)
@given(events=_streams())
def test_reusing_memberships_changes_nothing(events: list[Event]) -> None:
    reused = _fold(events, reuse=True)
    fresh = _fold(events, reuse=False)
    assert reused.profile == fresh.profile
    assert [d.to_json() for d in reused.decisions] == [d.to_json() for d in fresh.decisions]
    assert [s.to_json() for s in reused.sends] == [s.to_json() for s in fresh.sends]
    assert reused.ops == fresh.ops


#: segments on derived fields, apart: an early noted moment hides a late one
_DERIVED_SEGMENTS = {
    "lifecycle": {"at_risk": "profile.lifecycle == 'at_risk'"},
    "windows": {
        "bought_lately": "profile.rfm.purchases_30d >= 1",
        "regular": "profile.rfm.purchases_90d >= 2 and profile.rfm.revenue_365d > 100",
    },
    "days": {"recent": "profile.purchase_count > 0 and profile.rfm.days_since_last_purchase < 10"},
}


@functools.cache
def _derived_rules(kind: str) -> RuleSet:
    """The shipped config plus the segments on derived fields of ``kind``."""
    config = Path(tempfile.mkdtemp()) / "config"
    shutil.copytree(REPO / "config", config)
    rules = yaml.safe_load((config / "rules.yaml").read_text())
    rules["segments"] |= _DERIVED_SEGMENTS[kind]
    (config / "rules.yaml").write_text(yaml.safe_dump(rules))
    return load_rules(config)


@pytest.mark.parametrize("kind", sorted(_DERIVED_SEGMENTS))
def test_the_derived_segments_are_fingerprinted(kind: str) -> None:
    probe = _derived_rules(kind).probe
    assert isinstance(probe, CompiledProbe) and probe.reads is not None


@pytest.mark.parametrize("kind", sorted(_DERIVED_SEGMENTS))
@settings(max_examples=150, deadline=None)
@given(events=_streams())
def test_reusing_memberships_over_derived_fields_changes_nothing(
    kind: str, events: list[Event]
) -> None:
    rules = _derived_rules(kind)
    reused = _fold(events, reuse=True, rules=rules)
    fresh = _fold(events, reuse=False, rules=rules)
    assert reused.profile == fresh.profile
    assert reused.ops == fresh.ops

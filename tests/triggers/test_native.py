"""Conditions translated to Python closures agree with the Jinja sandbox, time notes included."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Undefined

from profiles import Cart, CartLine, Event, Predicted, Profile
from triggers import load_rules
from triggers.conditions import _ENV, expressions, to_expression
from triggers.context import Horizon, context
from triggers.loader import RuleSet, _probed
from triggers.native import compile_native
from triggers.rules import SequenceRule

from .predictions import FixedModel

REPO = Path(__file__).resolve().parents[2]
#: the shipped rules, with a model loaded (so that conditions see the scores)
RULES = replace(load_rules(REPO / "config"), model=FixedModel())
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _shipped(ruleset: RuleSet) -> list[str]:
    """Every condition of the shipped config, whole and leaf by leaf, and the probe."""
    conditions = list(_probed(ruleset.config).values())
    for rule in ruleset.config.rules:
        if rule.condition is not None:
            conditions.append(rule.condition)
        if isinstance(rule, SequenceRule):
            conditions += [s.condition for s in rule.steps if s.condition is not None]
    texts = [to_expression(c) for c in conditions]
    texts += [leaf for c in conditions for leaf in expressions(c)]
    return [*texts, "[" + ", ".join(texts) + "]"]


#: the tests' conditions, and more of the translated subset (undefined operands included)
OTHERS = [
    "profile.cart.item_count >= 3",
    "1 <= profile.purchase_count <= 2 != profile.counts.purchase",
    "profile.cart.item_count == 0",
    "profile.cart.itemcount == 0",
    "not profile.traits.skip_offer",
    "not within(profile.last_seen, '30d')",
    "days_since(profile.last_seen) > 30",
    "days_since(profile.last_seen) <= 2 < profile.score",
    "event.properties.total >= 100",
    "event.properties.items and event.type == 'purchase' and event.ts",
    "profile.cart.item_count > 0 and user.cart.total > 5 and cart.lines",
    "profile.traits.anything == 'x' and profile['traits']['plan'] and profile.counts.x",
    "profile.score > 50 and profile.fired.welcome and profile.affinity.kitchen > 1",
    "'vip' in segments or 'lapsed' not in segments",
    "event.properties.category in ['kitchen', 'home'] and event.properties.colour != 'red'",
    "event.properties.category in ('kitchen',)",
    "event.properties.total > 5",
    "profile.nothing < 3",
    "days_since(profile.nothing) > 3",
    "within(profile.traits.birthday, '400d') or within(profile.nothing, '1d')",
    "profile.total_spent * 2 - profile.purchase_count / 4 >= 100 + -profile.score",
    "(profile.score or 0) > 20 and (profile.score or 0) < 80",
    "profile.counts['purchase'] // 2 % 3 == 1",
    "profile.cart.items[event.properties.product_id].quantity > 1",
    "profile.__class__ or profile.cart.__dict__",
    "now > profile.last_seen",
    "user.cart",
    "nothing.at.all",
    # the model's scores: a nested object, absent until the user is scored
    "profile.predicted.churn_probability > 0.7",
    "(profile.predicted.purchase_probability or 0) > 0.5",
    "profile.predicted.cluster == 'lapsed buyers' and profile.predicted.expected_value >= 20",
    "within(profile.predicted.scored_at, '1d') and profile.predicted.model_version",
    "profile.predicted['cluster'] in ['browsers', 'lapsed buyers'] or user.predicted.nothing",
    "days_since(profile.predicted.scored_at) > 2",
]

EXPRESSIONS = _shipped(RULES) + OTHERS

_times = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2026, 7, 1), timezones=st.just(UTC)
)
_maybe_time = st.none() | _times
_scalars = (
    st.none() | st.booleans() | st.integers(-5, 600) | st.floats(-10, 600) | st.text(max_size=4)
)
_lines = st.dictionaries(
    st.sampled_from(["p1", "p2", "p3"]),
    st.builds(
        CartLine, product_id=st.just("p"), price=st.floats(0, 200), quantity=st.integers(0, 4)
    ),
    max_size=3,
)


_predicted = st.builds(
    Predicted,
    purchase_probability=st.floats(0, 1),
    churn_probability=st.floats(0, 1),
    expected_value=st.floats(0, 500),
    cluster=st.sampled_from(["browsers", "lapsed buyers"]),
    model_version=st.just("v1"),
    scored_at=_times,
)


@st.composite
def _profiles(draw: st.DrawFn) -> Profile:
    seen = draw(_times)
    return Profile(
        user_id="u",
        first_seen=seen,
        last_seen=seen,
        purchase_count=draw(st.integers(0, 3)),
        total_spent=draw(st.floats(0, 1000)),
        last_purchase_at=draw(_maybe_time),
        score=draw(st.floats(-100, 200)),
        score_at=draw(_maybe_time),
        traits=draw(
            st.dictionaries(
                st.sampled_from(["skip_offer", "plan", "anything", "birthday"]),
                _scalars | st.just("2025-06-02") | st.just("x"),
            )
        ),
        counts=draw(st.dictionaries(st.sampled_from(["purchase", "x"]), st.integers(0, 9))),
        affinity=draw(st.dictionaries(st.just("kitchen"), st.floats(0, 5))),
        cart=Cart(items=draw(_lines)),
        segments=draw(st.lists(st.sampled_from(["vip", "lapsed"]), unique=True)),
        predicted=draw(st.none() | _predicted),
    )


_properties = st.fixed_dictionaries(
    {},
    optional={
        "total": _scalars,
        "category": st.sampled_from(["kitchen", "home", "garden"]) | _scalars,
        "colour": st.sampled_from(["red", "blue"]),
        "items": st.lists(st.dictionaries(st.just("product_id"), st.text(max_size=2)), max_size=2),
        "product_id": st.sampled_from(["p1", "p2", "zz"]),
    },
)
_events = st.builds(
    lambda type_, ts, properties: Event(
        event_id="e", type=type_, user_id="u", ts=ts, properties=properties
    ).model_dump(mode="json"),
    st.sampled_from(["purchase", "product_view", "add_to_cart"]),
    _times,
    _properties,
)


def _outcome(evaluate: Any, ctx: dict[str, Any]) -> tuple[str, Any]:
    try:
        value = evaluate(ctx)
    except Exception as exc:  # both sides must fail alike
        return ("error", type(exc).__name__)
    if isinstance(value, Undefined):
        return ("undefined", None)
    if isinstance(value, list):
        return ("list", [(type(v).__name__, bool(v)) for v in value])
    return (type(value).__name__, value if value == value else "nan")


@functools.cache
def _compiled(text: str) -> tuple[Any, Any]:
    jinja = _ENV.compile_expression(text, undefined_to_none=False)
    native = compile_native(_ENV, text)
    assert native is not None, text
    return (lambda ctx: jinja(**ctx)), native


def _evaluations(text: str, profile: Profile, event: dict[str, Any], now: datetime) -> list[Any]:
    found = []
    for evaluate in _compiled(text):
        horizon = Horizon(now)
        ctx = context(RULES, profile, now, event, horizon=horizon)
        found.append((_outcome(evaluate, ctx), horizon.at))
    return found


@settings(max_examples=300, deadline=None)
@given(profile=_profiles(), event=_events, later=st.integers(0, 400))
def test_native_conditions_agree_with_jinja(
    profile: Profile, event: dict[str, Any], later: int
) -> None:
    now = NOW + timedelta(days=later)
    for text in EXPRESSIONS:
        jinja, native = _evaluations(text, profile, event, now)
        assert native == jinja, text


@pytest.mark.parametrize(
    "text",
    [
        "profile.name | upper",
        "profile.email is defined",
        "range(3)",
        "profile.cart.items[1:2]",
        "within(profile.last_seen, duration='1d')",
        "profile.cart.items.get('x')",
        "profile.model_dump() == 1",
        "profile.score if profile.score else 0",
        "profile.score ** 2",
        "'a' ~ 'b'",
        "a ==== b",
    ],
)
def test_outside_the_subset_stays_with_jinja(text: str) -> None:
    assert compile_native(_ENV, text) is None

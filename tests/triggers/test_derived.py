"""``profile.rfm``, ``profile.lifecycle`` and the decayed affinities as conditions see them,
with the moments they change by time alone noted for the re-check timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from profiles import Event, Profile, apply_event
from triggers import load_rules
from triggers.conditions import _ENV, compile_condition
from triggers.context import Horizon, context
from triggers.reads import probe_reads

REPO = Path(__file__).resolve().parents[2]
RULES = load_rules(REPO / "config")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)


def buyer(*days_ago: float, now: datetime = T0) -> Profile:
    profile: Profile | None = None
    first = now - timedelta(days=max(days_ago, default=0) + 40)
    events = [
        Event(event_id="s", type="signup", user_id="u", ts=first, properties={"email": "u@x.io"})
    ]
    for n, ago in enumerate(sorted(days_ago, reverse=True)):
        at = now - timedelta(days=ago)
        events.append(
            Event(
                event_id=f"p{n}",
                type="purchase",
                user_id="u",
                ts=at,
                properties={"order_id": f"o{n}", "total": 10.0 * (n + 1)},
            )
        )
    for event in events:
        profile = apply_event(profile, event, RULES.config.scoring)
    assert profile is not None
    return profile


def value(expression: str, profile: Profile, now: datetime = T0) -> tuple[object, datetime | None]:
    """What ``expression`` gives for ``profile`` at ``now``, and the next noted flip."""
    horizon = Horizon(now)
    ctx = context(RULES, profile, now, horizon=horizon)
    result = _ENV.compile_expression(expression)(**ctx)
    return result, horizon.at


def test_rolling_windows_count_orders_and_revenue_at_evaluation_time() -> None:
    profile = buyer(100, 45, 1)  # 10, 20 and 30 spent
    assert value("profile.rfm.purchases_30d", profile)[0] == 1
    assert value("profile.rfm.revenue_90d", profile)[0] == 50.0
    assert value("profile.rfm.purchases_365d", profile)[0] == 3
    assert value("profile.rfm.average_order_value", profile)[0] == 20.0
    later = T0 + 40 * DAY
    assert value("profile.rfm.purchases_30d", profile, later)[0] == 0
    assert value("profile.rfm.days_since_last_purchase", profile)[0] == pytest.approx(1)


def test_a_window_read_notes_when_its_oldest_order_leaves() -> None:
    profile = buyer(1)  # bought yesterday at noon: in the 30-day window until day 29 ends
    _, at = value("profile.rfm.purchases_30d > 0", profile)
    assert at == MIDNIGHT + 28 * DAY


def test_the_lifecycle_stage_and_its_next_change() -> None:
    tick = timedelta(milliseconds=1)
    profile = buyer(59)
    assert value("profile.lifecycle", profile) == ("active", T0 + DAY + tick)
    assert value("profile.lifecycle", profile, T0 + 2 * DAY)[0] == "at_risk"
    never = buyer()  # first seen 40 days ago, bought nothing, last event then
    assert value("profile.lifecycle", never)[0] == "active"
    assert value("profile.lifecycle == 'new'", buyer(now=T0 + 39 * DAY))[0] is True


def test_affinities_are_decayed_strongest_first_and_note_their_crossing() -> None:
    profile = Profile(
        user_id="u",
        first_seen=T0,
        last_seen=T0,
        affinity={"home": 1.0, "outdoor": 8.0},
        affinity_at=T0,
    )
    half_life = RULES.config.scoring.affinity_half_life_days
    later = T0 + half_life * DAY
    assert value("profile.affinities", profile, later)[0] == {"outdoor": 4.0, "home": 0.5}
    assert value("profile.favourite_category", profile, later)[0] == "outdoor"
    held, at = value("profile.affinities.outdoor > 2", profile, later)
    assert held is True
    assert at is not None and at - T0 == pytest.approx(
        2 * half_life * DAY, abs=timedelta(seconds=1)
    )


@pytest.mark.parametrize(
    ("expression", "chains"),
    [
        ("profile.lifecycle == 'at_risk'", ["first_seen", "recency_at"]),
        ("profile.rfm.revenue_90d == 0", ["purchase_count", "total_spent", "last_purchase_at"]),
        (
            "profile.rfm.days_since_last_purchase > 3",
            ["purchase_count", "total_spent", "last_purchase_at"],
        ),
        ("profile.rfm.days_since_last_purchase == 3", None),  # notes nothing
        ("profile.affinities.outdoor > 3", None),
        ("profile.favourite_category == 'outdoor'", None),
        ("profile.rfm", None),
    ],
)
def test_what_a_probe_reads_of_derived_fields(expression: str, chains: list[str] | None) -> None:
    reads = probe_reads(_ENV, expression)
    if chains is None:
        assert reads is None
        return
    assert reads is not None
    assert [steps[0][1] for _, steps in reads.chains] == chains


def test_a_purchase_changes_the_fingerprint_of_an_rfm_read() -> None:
    reads = probe_reads(_ENV, "profile.rfm.purchases_30d > 1")
    assert reads is not None
    assert reads.fingerprint(buyer(3)) != reads.fingerprint(buyer(3, 2))


def test_conditions_compile_over_derived_fields() -> None:
    condition = compile_condition(
        "profile.lifecycle in ['at_risk', 'lapsed'] and profile.rfm.purchases_365d >= 1"
    )
    ctx = context(RULES, buyer(70), T0)
    assert condition(ctx) is True
    assert condition(context(RULES, buyer(10), T0)) is False


def test_templates_and_conditions_can_exclude_recently_recommended_products() -> None:
    profile = buyer(3)
    profile.record_featured("r1", T0 - 2 * DAY, ["tent"], ["outdoor"])
    condition = compile_condition("'tent' in profile.recommended_recently(now, 7)")
    assert condition(context(RULES, profile, T0)) is True
    assert condition(context(RULES, profile, T0 + 10 * DAY)) is False

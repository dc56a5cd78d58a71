"""Erasure on the engine: what an ``erase`` takes along, and what it leaves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from profiles import (
    InMemoryStatistics,
    InMemorySuppressionList,
    Pseudonyms,
    RecommendationConfig,
)
from tests.triggers.test_engine import RULES, T0, Harness, cart, signup
from triggers import Engine, load_rules, simulate

KEY = Pseudonyms(b"e" * 32)


class PrivacyHarness(Harness):
    """The engine harness with a suppression list and statistics to watch."""

    def __init__(self, config: Path) -> None:
        super().__init__(config)
        self.suppression = InMemorySuppressionList(KEY)
        now = T0 + timedelta(hours=2)
        self.statistics = InMemoryStatistics(
            config=RecommendationConfig(), clock_ms=lambda: int(now.timestamp() * 1000)
        )
        self.engine = Engine(
            rules=load_rules(config),
            profiles=self.profiles,
            timers=self.timers,
            outbox=self.outbox,
            clock=lambda: now,
            suppression=self.suppression,
            statistics=self.statistics,
        )

    def decisions(self, reason: str) -> list[Any]:
        return [d for d in self.outbox.decisions if d.reason == reason]


@pytest.fixture
def p(make_config: Callable[[str], Path]) -> PrivacyHarness:
    return PrivacyHarness(make_config(RULES))


async def test_events_dated_before_an_erasure_are_ignored_and_logged(p: PrivacyHarness) -> None:
    old = [signup(p), cart(p), p.message("product_view", T0, product_id="mug")]
    await p.send(*old)
    welcome = len(p.outbox.sends)
    await p.send(p.message("erase", T0 + timedelta(minutes=5)))
    assert not p.profiles.holds("u1")
    assert await p.timers.pending(0) == []
    # the same events again (a replay from the topic's start): nothing comes back
    await p.send(*old)
    await p.tick(T0 + timedelta(days=60))
    assert not p.profiles.holds("u1")
    assert len(p.outbox.sends) == welcome
    ignored = p.decisions("erased")
    assert len(ignored) == len(old)
    assert {(d.rule_id, d.outcome) for d in ignored} == {("*", "suppressed")}


async def test_an_event_after_the_erasure_starts_a_new_profile(p: PrivacyHarness) -> None:
    await p.send(signup(p), p.message("erase", T0 + timedelta(minutes=5)))
    await p.send(p.message("page_view", T0 + timedelta(minutes=6), url="/"))
    snapshot = (await p.profiles.load({"u1": []}))["u1"]
    assert snapshot.profile is not None
    assert snapshot.profile.email is None  # nothing of the erased profile came back
    assert snapshot.profile.counts == {"page_view": 1}


async def test_a_redelivered_erasure_changes_nothing(p: PrivacyHarness) -> None:
    erase = p.message("erase", T0 + timedelta(minutes=5))
    await p.send(signup(p), erase)
    listed = dict(p.suppression.hashes)
    await p.send(erase)
    assert not p.profiles.holds("u1")
    assert dict(p.suppression.hashes) == listed
    assert [d.reason for d in p.decisions("erased")] == ["erased"]


async def test_the_erased_address_is_suppressed_for_marketing_until_fresh_consent(
    p: PrivacyHarness,
) -> None:
    await p.send(signup(p), p.message("erase", T0 + timedelta(minutes=5)))
    assert list(p.suppression.hashes.values()) == [
        int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    ]
    # the shop imports the address again, under another id, with its old consent flag
    later = T0 + timedelta(hours=1)
    imported = {"email": "u1@example.com", "first_name": "Ada"}
    await p.send(
        p.message("consent", later, user="u9", channel="email", granted=True),
        p.message("profile_update", later, user="u9", traits=imported),
        p.message("purchase", later, user="u9", order_id="o1", total=120.0),
    )
    await p.send(cart(p, later, user="u9"))
    await p.tick(later + timedelta(hours=2))
    marketing = [s for s in p.outbox.sends if s.user_id == "u9" and s.category == "marketing"]
    assert marketing == []
    assert [s.rule_id for s in p.outbox.sends if s.user_id == "u9"] == ["receipt"]
    # a new signup with consent is fresh consent: the address leaves the list
    fresh = p.message(
        "signup",
        later + timedelta(hours=3),
        user="u9",
        email="u1@example.com",
        consent={"email": True},
    )
    await p.send(fresh)
    assert p.suppression.hashes == {}
    assert [s.rule_id for s in p.outbox.sends if s.user_id == "u9"][-1] == "welcome"


async def test_cart_timers_of_an_erased_user_are_suppressed_by_the_guard(
    p: PrivacyHarness,
) -> None:
    await p.send(signup(p), p.message("erase", T0 + timedelta(minutes=1)))
    later = T0 + timedelta(hours=1)
    await p.send(
        p.message("consent", later, user="u9", channel="email", granted=True),
        p.message("profile_update", later, user="u9", traits={"email": "u1@example.com"}),
    )
    profile = (await p.profiles.load({"u9": []}))["u9"].profile
    assert profile is not None and profile.address_erased_at is not None
    assert profile.email_consent  # a grant before the address arrived is not for it
    await p.send(cart(p, later, user="u9"))
    await p.tick(later + timedelta(hours=2))
    assert p.outbox.by_rule("cart_abandonment", "u9") == []
    assert [d.rule_id for d in p.decisions("erased_address")] == ["cart_abandonment"]


async def test_an_erasure_takes_the_user_off_watcher_lists(p: PrivacyHarness) -> None:
    await p.send(signup(p), p.message("product_view", T0, product_id="mug"))
    await p.engine.settle()
    now_ms = int(T0.timestamp() * 1000)
    assert await p.statistics.watchers("mug", now_ms) == ["u1"]
    await p.send(p.message("erase", T0 + timedelta(minutes=5)))
    await p.engine.settle()
    assert await p.statistics.watchers("mug", now_ms) == []


async def test_an_erasure_in_the_batch_of_the_views_records_none_of_them(
    p: PrivacyHarness,
) -> None:
    await p.send(
        signup(p),
        p.message("product_view", T0, product_id="mug"),
        p.message("erase", T0 + timedelta(minutes=5)),
    )
    await p.engine.settle()
    assert await p.statistics.watchers("mug", int(T0.timestamp() * 1000)) == []


async def test_timers_in_the_partition_they_were_scheduled_in_are_cancelled(
    p: PrivacyHarness,
) -> None:
    await p.send(signup(p), cart(p))
    moved = p.message("erase", T0 + timedelta(minutes=5))
    # the user's events now arrive on another partition (the topic was re-partitioned)
    moved = type(moved)(moved.value, moved.key, moved.topic, 3, moved.offset)
    await p.send(moved)
    assert await p.timers.pending(0) == []
    assert await p.timers.pending(3) == []


async def test_simulate_replays_an_erasure(make_config: Callable[[str], Path]) -> None:
    rules = load_rules(make_config(RULES))
    user = {"user_id": "u1", "properties": {}}
    lines = [
        {
            **user,
            "event_id": "s",
            "type": "signup",
            "ts": T0.isoformat(),
            "properties": {"email": "u1@example.com", "consent": {"email": True}},
        },
        {**user, "event_id": "x", "type": "erase", "ts": (T0 + timedelta(minutes=1)).isoformat()},
        # recorded late: dated before the erasure
        {
            **user,
            "event_id": "c",
            "type": "add_to_cart",
            "ts": (T0 + timedelta(seconds=30)).isoformat(),
            "properties": {"product_id": "mug", "price": 3.0},
        },
    ]
    result = await simulate(
        rules, [orjson.dumps(line) for line in lines], until=T0 + timedelta(days=2)
    )
    assert [s.rule_id for s in result.sends] == ["welcome"]


async def test_a_price_alert_for_an_erased_watcher_does_not_start_a_profile(
    p: PrivacyHarness,
) -> None:
    await p.send(signup(p), p.message("erase", T0 + timedelta(minutes=5)))
    alert = p.message("price.alert", T0 + timedelta(hours=1), product_id="mug")
    await p.send(alert)
    assert not p.profiles.holds("u1")

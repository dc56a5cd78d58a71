"""Experiments through the engine and a real store: counts are exact under redelivery,
and Thompson sampling moves traffic to the arm that works."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from profiles import (
    InMemoryProfileStore,
    InMemoryTimerStore,
    Keys,
    ProfileStore,
    RedisProfileStore,
    RedisTimerStore,
    TimerStore,
)
from triggers import Engine, Incoming, InMemoryOutbox, load_rules
from triggers.arms import COUNTER_PREFIX, ArmCounts, arm_counts

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

RULES = """\
version: 1
rules:
  - id: hello
    kind: on_event
    events: [signup]
    template: welcome
    holdout: 0.2
    variants:
      - {{name: a}}
      - {{name: b, subject: "Welcome aboard, {{{{ user.first_name | default('friend', true) }}}}"}}
    strategy: {strategy}
"""


@pytest.fixture(params=["memory", "redis"])
def stores(
    request: pytest.FixtureRequest, redis_client: aioredis.Redis, keys: Keys
) -> tuple[ProfileStore, TimerStore]:
    if request.param == "memory":
        return InMemoryProfileStore(), InMemoryTimerStore()
    return RedisProfileStore(redis_client, keys=keys), RedisTimerStore(redis_client, keys=keys)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _engine(
    make_config: Callable[[str], Path], stores: tuple[ProfileStore, TimerStore], strategy: str
) -> tuple[Engine, InMemoryOutbox, Clock]:
    outbox, clock = InMemoryOutbox(), Clock()
    profiles, timers = stores
    rules = load_rules(make_config(RULES.format(strategy=strategy)))
    engine = Engine(rules=rules, profiles=profiles, timers=timers, outbox=outbox, clock=clock)
    return engine, outbox, clock


def _message(n: int, kind: str, user: str, at: datetime, **props: Any) -> Incoming:
    body = {
        "event_id": f"{kind}-{user}-{n}",
        "type": kind,
        "user_id": user,
        "ts": at.isoformat(),
        "properties": props,
    }
    return Incoming(orjson.dumps(body), user.encode(), "events", 0, n)


def _signup(n: int, user: str, at: datetime) -> Incoming:
    return _message(n, "signup", user, at, email=f"{user}@example.com", consent={"email": True})


async def _arms(profiles: ProfileStore) -> dict[str, ArmCounts]:
    return arm_counts(await profiles.counters(COUNTER_PREFIX)).get("hello", {})


async def test_counts_are_exact_when_every_batch_is_delivered_twice(
    make_config: Callable[[str], Path], stores: tuple[ProfileStore, TimerStore]
) -> None:
    engine, outbox, clock = _engine(make_config, stores, "fixed")
    users = [f"u{n}" for n in range(60)]
    signups = [_signup(n, u, T0) for n, u in enumerate(users)]
    await engine.process(signups)
    await engine.process(signups)  # a redelivery after a crash before the commit
    sends = {s.user_id: s for s in outbox.sends}
    clock.now = T0 + timedelta(hours=1)
    feedback = [
        _message(100 + n, "email_click", u, clock.now, message_id=s.message_id, url="https://x")
        for n, (u, s) in enumerate(sends.items())
        if n % 2 == 0
    ]
    buyers = [u for n, u in enumerate(users) if n % 3 == 0]
    purchases = [
        _message(200 + n, "purchase", u, clock.now, order_id=f"o{n}", total=10.0)
        for n, u in enumerate(buyers)
    ]
    for _ in range(2):
        await engine.process(feedback + purchases)
    arms = await _arms(stores[0])
    arm_of = {d.user_id: d.arm for d in outbox.decisions if d.arm is not None}
    expected: dict[str, Counter[str]] = {}
    for arm in arm_of.values():
        expected.setdefault(arm, Counter())["exposed"] += 1
    for n, user in enumerate(sends):
        if n % 2 == 0:
            expected[arm_of[user]].update(opened=1, clicked=1)
    for user in buyers:
        expected[arm_of[user]].update(converted=1)
    assert {arm: counts.exposed for arm, counts in arms.items()} == {
        arm: c["exposed"] for arm, c in expected.items()
    }
    for arm, counts in arms.items():
        want = expected[arm]
        assert (counts.opened, counts.clicked, counts.converted) == (
            want["opened"],
            want["clicked"],
            want["converted"],
        )
        assert counts.revenue == pytest.approx(10.0 * want["converted"])
    assert "holdout" in arms and {"a", "b"} <= set(arms)
    assert arms["holdout"].opened == 0  # nothing sent, nothing opened


async def test_thompson_moves_most_sends_to_the_arm_users_click(
    make_config: Callable[[str], Path], stores: tuple[ProfileStore, TimerStore]
) -> None:
    engine, outbox, clock = _engine(make_config, stores, "thompson")
    click_rate = {"a": 0.04, "b": 0.16}
    rng = random.Random(7)
    n = 0
    for _ in range(30):  # 30 rounds of 40 signups, the clicks of each before the next
        clock.now += timedelta(seconds=10)  # past the counters' refresh
        before = len(outbox.sends)
        batch = []
        for _ in range(40):
            n += 1
            batch.append(_signup(n, f"user{n}", clock.now))
        await engine.process(batch)
        clicks = [
            _message(n + i, "email_click", s.user_id, clock.now, message_id=s.message_id, url="u")
            for i, s in enumerate(outbox.sends[before:])
            if rng.random() < click_rate[s.variant or ""]
        ]
        n += len(clicks)
        await engine.process(clicks)
    late = Counter(s.variant for s in outbox.sends[-300:])
    assert late["b"] > 0.75 * sum(late.values()), late

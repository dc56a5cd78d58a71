"""Profile retention on a real worker: an untouched profile leaves Redis with its timers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from .conftest import Kafka, RedisView, WorkerEnv, WorkerProcess, add_to_cart
from .test_worker import ev, signup

Env = Callable[..., WorkerEnv]
Start = Callable[[WorkerEnv], WorkerProcess]
View = Callable[..., RedisView]

#: a cart reminder long after the profile expires, and no mail on signup
RULES = """\
version: 1
rules:
  - id: cart_abandonment
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    wait: 1h
    condition: "profile.cart.item_count > 0"
    template: cart_abandonment
"""


async def test_an_untouched_profile_expires_with_its_dedup_records_and_timers(
    worker_env: Env,
    start_worker: Start,
    kafka: Kafka,
    redis_view: View,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NUDGE_PROFILE_RETENTION", "3")
    env = worker_env(rules=RULES)
    start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(env.events_topic, signup("tom"), add_to_cart("tom"))

    async def expired() -> bool:
        return (await view.profile("tom")).profile is None

    async def stored() -> bool:
        return (await view.profile("tom")).profile is not None

    await view.wait_until(stored)
    assert {t.rule_id for t in await view.pending("tom")} == {"cart_abandonment", "~retention"}
    decision = ("cart_abandonment", "cancelled", "retention")
    found = await kafka.wait_for_decision(env.decisions_topic, "tom", decision)
    assert decision in found
    await view.wait_until(expired)
    assert await view.pending("tom") == []
    client = aioredis.Redis.from_url(redis_url)
    try:
        prefix = env.keys.prefix
        assert [k async for k in client.scan_iter(match=f"{prefix}:*{{tom}}*")] == []
        assert [k async for k in client.scan_iter(match=f"{prefix}:*:erased:*")] == []
    finally:
        await client.aclose()
    assert await kafka.sends(env.send_topic, "tom") == []
    # no tombstone: the next event builds a fresh profile
    await kafka.produce(env.events_topic, ev("page_view", "tom", url="/"))
    await view.wait_until(stored)

"""Export and erasure on a live worker: what a data-protection request relies on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from .conftest import PARTITIONS, Kafka, RedisView, WorkerEnv, WorkerProcess

NUDGE = Path(sys.executable).parent / "nudge"

RULES = """\
version: 1
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
  - id: visit
    kind: on_event
    events: [page_view]
    template: welcome
  - id: cart_abandonment
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    wait: 1h
    template: cart_abandonment
  - id: winback
    kind: inactivity
    wait: 30d
    template: winback
"""


def ev(kind: str, user: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "ts": at.isoformat(),
        "properties": props,
    }


def nudge(env: WorkerEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NUDGE), *args],
        env=env.environ(0),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def user_keys(redis_url: str, env: WorkerEnv, user: str) -> list[bytes]:
    """Every key under the test's prefix that names ``user``."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = await client.keys(f"{env.keys.prefix}:*")
        timers = [
            tid
            for p in range(PARTITIONS)
            for tid in await client.hkeys(env.keys.timers_data(p))
            if tid == f"@{user}".encode() or f"|{user}|".encode() in tid
        ]
    finally:
        await client.aclose()
    return [k for k in keys if user.encode() in k] + timers


async def test_export_then_erase_leaves_nothing_and_old_events_send_nothing(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
    redis_view: Callable[..., RedisView],
    redis_url: str,
) -> None:
    env = worker_env(rules=RULES)
    start_worker(env)
    view = redis_view(env.keys)
    user, address = "ada-42", "ada.lovelace@example.com"
    start = datetime.now(UTC) - timedelta(minutes=5)
    history = [
        ev("signup", user, start, email=address, first_name="Ada", consent={"email": True}),
        ev("product_view", user, start + timedelta(seconds=1), product_id="mug"),
        ev("add_to_cart", user, start + timedelta(seconds=2), product_id="mug", price=9.0),
    ]
    await kafka.produce(env.events_topic, *history)
    await kafka.wait_for_sends(env.send_topic, user, "welcome")
    await view.wait_until(lambda: _pending(view, user, 2))

    exported = nudge(env, "export", user)
    assert exported.returncode == 0, exported.stderr
    document = orjson.loads(exported.stdout)
    assert document["profile"]["email"] == address
    assert document["consent"]["email"] is True
    assert {t["rule_id"] for t in document["pending_timers"]} == {"cart_abandonment", "winback"}
    assert document["watching_products"] == ["mug"]
    assert document["suppression"]["erasure_tombstone_at"] is None

    erased = nudge(env, "erase", user, "--wait", "30")
    assert erased.returncode == 0, erased.stderr + erased.stdout
    assert await user_keys(redis_url, env, user) == []
    assert (await view.profile(user)).erased_ms is not None

    # the whole history again, as a replay from the topic's start would deliver it, and a
    # late event dated before the erasure: ignored, each with a decision
    late = ev("page_view", user, start + timedelta(seconds=3), url="/late")
    await kafka.produce(env.events_topic, *history, late)
    found = await kafka.wait_for_decision(env.decisions_topic, user, ("*", "suppressed", "erased"))
    for _ in range(50):
        if found.count(("*", "suppressed", "erased")) >= len(history) + 1:
            break
        await asyncio.sleep(0.2)
        found = await kafka.decisions(env.decisions_topic, user)
    assert found.count(("*", "suppressed", "erased")) == len(history) + 1
    assert await user_keys(redis_url, env, user) == []
    assert [s["rule_id"] for s in await kafka.sends(env.send_topic, user)] == ["welcome"]

    after = orjson.loads(nudge(env, "export", user).stdout)
    assert after["profile"] is None
    assert after["suppression"]["erasure_tombstone_at"] is not None

    # the address comes back under another id with a stale consent flag: no marketing mail
    # until that user signs up with consent
    other, now = "ada-again", datetime.now(UTC)
    await kafka.produce(
        env.events_topic,
        ev("consent", other, now, channel="email", granted=True),
        ev("profile_update", other, now, traits={"email": address}),
        ev("page_view", other, now, url="/"),
    )
    blocked = await kafka.wait_for_decision(
        env.decisions_topic, other, ("visit", "suppressed", "erased_address")
    )
    assert ("visit", "suppressed", "erased_address") in blocked
    fresh = now + timedelta(seconds=1)
    await kafka.produce(
        env.events_topic,
        ev("signup", other, fresh, email=address, consent={"email": True}),
    )
    assert len(await kafka.wait_for_sends(env.send_topic, other, "welcome")) == 1

    # the decisions topic names users by id only
    records = await kafka.read_all(env.decisions_topic)
    assert not [r for r in records if address.encode() in r.value]


async def _pending(view: RedisView, user: str, count: int) -> bool:
    return len(await view.pending(user)) >= count

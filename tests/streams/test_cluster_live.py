"""A real worker on a real Redis Cluster (``NUDGE_REDIS_CLUSTER=true``, the URL of one of
its three nodes): profiles, sends and timers as on a single node, across a restart."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from datetime import datetime

import redis.asyncio as aioredis

from profiles import Keys
from triggers import request_id

from .conftest import (
    Kafka,
    RedisView,
    WorkerEnv,
    WorkerProcess,
    add_to_cart,
    eventually,
    signup,
)


async def test_a_worker_on_redis_cluster_sends_and_its_timer_survives_a_restart(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
    redis_cluster_url: str,
    cluster_client: aioredis.RedisCluster,
    cluster_view: Callable[[Keys], RedisView],
) -> None:
    env = dataclasses.replace(
        worker_env(cart_wait="12s", winback_wait="1h"),  # no quiet hours in these rules
        redis_url=redis_cluster_url,
        extra={"NUDGE_REDIS_CLUSTER": "true"},
    )
    view = cluster_view(env.keys)
    users = [f"user-{n}" for n in range(8)]
    first = start_worker(env)
    signups = {user: signup(user) for user in users}
    await kafka.produce(env.events_topic, *signups.values())
    for user, event in signups.items():
        [welcome] = await kafka.wait_for_sends(env.send_topic, user, "welcome")
        assert welcome["request_id"] == request_id("welcome", user, "", event["event_id"])
        assert (await view.profile(user)).profile is not None
    await cluster_client.initialize()
    nodes = {cluster_client.get_node_from_key(env.keys.profile(u)).name for u in users}
    assert len(nodes) > 1  # the users' profiles were written on several nodes

    cart = add_to_cart("user-0")
    await kafka.produce(env.events_topic, cart)

    async def cart_timer(wanted: bool) -> bool:
        timers = [t for t in await view.pending("user-0") if t.rule_id == "cart_abandonment"]
        return bool(timers) == wanted

    await eventually(lambda: cart_timer(True))
    first.stop(signal.SIGKILL)  # while the timer waits; offsets possibly uncommitted
    start_worker(env)
    [sent] = await kafka.wait_for_sends(env.send_topic, "user-0", "cart_abandonment", timeout=60)
    assert sent["request_id"] == request_id("cart_abandonment", "user-0", "", cart["event_id"])
    created = datetime.fromisoformat(sent["created_at"])
    assert (created - datetime.fromisoformat(cart["ts"])).total_seconds() >= 12
    # once the timer is gone a second send could only come from a second firing
    await eventually(lambda: cart_timer(False))
    assert len(await kafka.sends(env.send_topic, "user-0", "cart_abandonment")) == 1
    # a redelivery after the kill may publish a welcome again, but under the same request_id
    welcomes = [await kafka.sends(env.send_topic, user, "welcome") for user in users]
    assert all(len({s["request_id"] for s in sent}) == 1 for sent in welcomes)

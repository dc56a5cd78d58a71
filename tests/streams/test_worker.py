"""The engine end to end: a real worker process, a real broker, a real Redis.

Negative checks ("did not send") never rely on sleeping: each waits for a later effect
that the same worker can only produce after the point in question (a later timer firing,
a timer leaving Redis), then reads the output topic up to its end.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from triggers import request_id

from .conftest import (
    PARTITIONS,
    TEST_RULES,
    Kafka,
    RedisView,
    WorkerEnv,
    WorkerProcess,
    add_to_cart,
    eventually,
)

Env = Callable[..., WorkerEnv]
Start = Callable[[WorkerEnv], WorkerProcess]
View = Callable[..., RedisView]


def ev(kind: str, user: str, event_id: str | None = None, **props: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(),
        "properties": props,
    }


def signup(user: str, consent: bool = True) -> dict[str, Any]:
    return ev(
        "signup", user, email=f"{user}@example.com", first_name="Ada", consent={"email": consent}
    )


async def test_welcome_fires_once_for_a_signup(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env()
    start_worker(env)
    event = signup("ada")
    await kafka.produce(env.events_topic, event)
    [welcome] = await kafka.wait_for_sends(env.send_topic, "ada", "welcome")
    assert welcome["request_id"] == request_id("welcome", "ada", "", event["event_id"])
    assert (welcome["to"], welcome["subject"]) == ("ada@example.com", "Welcome, Ada!")
    assert "Thanks for signing up" in welcome["html"]
    # the winback timer of the same user fires later; by then a second welcome would show
    await kafka.wait_for_sends(env.send_topic, "ada", "winback")
    assert len(await kafka.sends(env.send_topic, "ada", "welcome")) == 1


async def test_cart_abandonment_fires_after_the_wait(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(cart_wait="2s")
    start_worker(env)
    cart = add_to_cart("grace", quantity=2)
    await kafka.produce(env.events_topic, signup("grace"), cart)
    [sent] = await kafka.wait_for_sends(env.send_topic, "grace", "cart_abandonment")
    assert sent["subject"] == "Ada, you left 2 items in your cart"
    assert re.search(r"2 \N{MULTIPLICATION SIGN} Enamel mug\s+\$28\.00", sent["text"])
    assert sent["preheader"] == "2 items still in your cart, $28.00 in total."
    assert sent["trigger_event_id"] == cart["event_id"]
    created = datetime.fromisoformat(sent["created_at"])
    assert (created - datetime.fromisoformat(cart["ts"])).total_seconds() >= 2


async def test_purchase_in_time_cancels_cart_abandonment(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="3s", winback_wait="5s")
    start_worker(env)
    await kafka.produce(env.events_topic, signup("alan"), add_to_cart("alan"))
    await kafka.produce(env.events_topic, ev("purchase", "alan", order_id="o1", total=14.0))
    # winback is due 5 s after the purchase, i.e. after the cart's 3 s deadline
    assert await kafka.wait_for_sends(env.send_topic, "alan", "winback")
    assert await kafka.sends(env.send_topic, "alan", "cart_abandonment") == []
    assert await redis_view(env.keys).pending("alan") == []


async def test_winback_fires_after_inactivity(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(winback_wait="3s")
    start_worker(env)
    last = ev("page_view", "edsger", url="https://shop.example/")
    await kafka.produce(env.events_topic, signup("edsger"), last)
    [sent] = await kafka.wait_for_sends(env.send_topic, "edsger", "winback")
    assert sent["subject"] == "We miss you, Ada"
    assert sent["trigger_event_id"] == last["event_id"]


async def test_unconsented_user_gets_no_marketing_send(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="1s", winback_wait="2s")
    worker = start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(env.events_topic, signup("barbara", consent=False), add_to_cart("barbara"))

    async def timers_done() -> bool:
        snap = await view.profile("barbara")
        return snap.profile is not None and not await view.pending("barbara")

    await view.wait_until(timers_done)  # both marketing timers fired (and were suppressed)
    assert await kafka.sends(env.send_topic, "barbara") == []
    reason = {"outcome": "suppressed", "reason": "no_consent"}
    for rule in ("welcome", "cart_abandonment", "winback"):
        assert worker.metric("nudge_decisions_total", rule=rule, **reason) == 1
    # transactional mail still goes out
    await kafka.produce(env.events_topic, ev("purchase", "barbara", order_id="o9", total=14.0))
    [receipt] = await kafka.wait_for_sends(env.send_topic, "barbara", "receipt")
    assert receipt["category"] == "transactional"


async def test_duplicate_event_id_changes_nothing(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="1h", winback_wait="1h")
    worker = start_worker(env)
    view = redis_view(env.keys)
    first, cart = signup("linus"), add_to_cart("linus")
    await kafka.produce(env.events_topic, first, cart, first, cart)
    marker = ev("page_view", "linus", url="/done")
    await kafka.produce(env.events_topic, cart, marker)

    async def marker_applied() -> bool:
        snap = await view.profile("linus")
        return snap.profile is not None and snap.profile.counts.get("page_view") == 1

    await view.wait_until(marker_applied)
    profile = (await view.profile("linus")).profile
    assert profile is not None
    assert profile.counts == {"signup": 1, "add_to_cart": 1, "page_view": 1}
    assert profile.cart.items["mug"].quantity == 1
    assert len(await kafka.sends(env.send_topic, "linus", "welcome")) == 1
    assert worker.metric("nudge_duplicate_events_total") == 3


async def test_bad_input_is_dead_lettered_with_a_reason_and_processing_continues(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env()
    worker = start_worker(env)
    no_user = {k: v for k, v in signup("x").items() if k != "user_id"}
    await kafka.produce(env.events_topic, b"{this is not json", key=b"ken")
    await kafka.produce(env.events_topic, orjson.dumps(no_user), key=b"ken")
    await kafka.produce(env.events_topic, signup("ken"), key=b"someone-else")
    await kafka.produce(env.events_topic, signup("ken"))
    assert await kafka.wait_for_sends(env.send_topic, "ken", "welcome")
    letters = await kafka.read_all(env.dead_letter_topic)
    by_reason = {dict(r.headers)["nudge.dlq.reason"].decode(): r for r in letters}
    assert set(by_reason) == {"invalid_json", "schema_violation", "key_mismatch"}
    bad_json = by_reason["invalid_json"]
    assert bad_json.value == b"{this is not json"
    headers = dict(bad_json.headers)
    assert headers["nudge.dlq.topic"].decode() == env.events_topic
    assert int(headers["nudge.dlq.offset"]) >= 0
    assert b"user_id" in dict(by_reason["schema_violation"].headers)["nudge.dlq.detail"]
    assert worker.metric("nudge_dead_letters_total", reason="invalid_json") == 1
    assert worker.proc.poll() is None


async def test_worker_killed_mid_wait_fires_the_cart_timer_exactly_once(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="12s", winback_wait="1h")
    first = start_worker(env)
    view = redis_view(env.keys)
    cart = add_to_cart("margaret")
    await kafka.produce(env.events_topic, signup("margaret"), cart)

    async def timer_stored() -> bool:
        return any(t.rule_id == "cart_abandonment" for t in await view.pending("margaret"))

    await view.wait_until(timer_stored)
    first.stop(signal.SIGKILL)  # no clean shutdown, offsets possibly uncommitted
    start_worker(env)
    [sent] = await kafka.wait_for_sends(env.send_topic, "margaret", "cart_abandonment", timeout=60)
    assert sent["request_id"] == request_id("cart_abandonment", "margaret", "", cart["event_id"])
    # the timer is gone once fired; a second send could only come from a second firing
    await view.wait_until(lambda: _no_timers(view, "margaret"))
    assert len(await kafka.sends(env.send_topic, "margaret", "cart_abandonment")) == 1
    welcomes = await kafka.sends(env.send_topic, "margaret", "welcome")
    assert {w["request_id"] for w in welcomes} == {welcomes[0]["request_id"]}


async def _no_timers(view: RedisView, user: str) -> bool:
    return not [t for t in await view.pending(user) if t.rule_id == "cart_abandonment"]


async def test_health_and_metrics_endpoints(worker_env: Env, start_worker: Start) -> None:
    worker = start_worker(worker_env())
    assert worker.get("/health/live")[0] == 200
    status, body = worker.get("/health/ready")
    assert status == 200
    assert orjson.loads(body) == {
        "ready": True,
        "redis": True,
        "assigned": True,
        "partitions": 4,
    }
    _, metrics = worker.get("/metrics")
    assert b"# TYPE nudge_events_total counter" in metrics


async def test_metrics_show_latency_timers_render_failures_and_the_config(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    # a rule whose template requires a cart, on signups (transactional, so no arbitration
    # with the welcome): every signup is a render failure
    rules = TEST_RULES.format(cart_wait="2s", winback_wait="1h") + BROKEN_RULE
    env = worker_env(rules=rules)
    worker = start_worker(env)
    config = worker.info("nudge_config_info")
    assert config["rules"] == "5" and len(config["hash"]) == 12
    await kafka.produce(env.events_topic, signup("ida"), add_to_cart("ida"))
    missing = ("broken", "suppressed", "missing_data")
    assert missing in await kafka.wait_for_decision(env.decisions_topic, "ida", missing)
    # counted once the batch is durable, just after its output is published
    await eventually(lambda: worker.metric("nudge_send_latency_seconds_count", kind="immediate"))
    assert worker.metric("nudge_send_latency_seconds_count", kind="immediate") == 1
    assert 0 < worker.metric("nudge_send_latency_seconds_sum", kind="immediate") < 30
    assert worker.metric("nudge_render_failures_total", rule="broken", reason="missing_data") == 1
    # the winback timer (1 h) stays pending in the user's partition
    await eventually(lambda: sum(worker.metrics("nudge_pending_timers").values()) >= 1)
    await kafka.wait_for_sends(env.send_topic, "ida", "cart_abandonment")
    await eventually(lambda: worker.metric("nudge_send_latency_seconds_count", kind="timer") == 1)
    assert worker.metric("nudge_timer_lateness_seconds_count") >= 1
    # a timer fires within a sweep or two of its due time (0.2 s apart here)
    assert worker.metric("nudge_timer_lateness_seconds_bucket", le="2.5") >= 1
    assert worker.metric("nudge_batches_in_flight") == 0
    assert worker.metric("process_resident_memory_bytes") > 0

    rules_file = env.config_dir / "rules.yaml"
    rules_file.write_text(rules_file.read_text().replace(BROKEN_RULE, ""))
    await eventually(lambda: worker.info("nudge_config_info")["rules"] == "4")
    assert worker.info("nudge_config_info")["hash"] != config["hash"]


BROKEN_RULE = """\
  - id: broken
    kind: on_event
    events: [signup]
    category: transactional
    template: cart_abandonment
"""


async def test_timers_move_with_a_rebalance(
    worker_env: Env,
    start_worker: Callable[..., WorkerProcess],
    kafka: Kafka,
    redis_view: View,
) -> None:
    env = worker_env(cart_wait="30s", winback_wait="1h")
    first = start_worker(env)
    view = redis_view(env.keys)
    users = [f"shopper-{n}" for n in range(12)]
    carts = {user: add_to_cart(user) for user in users}
    await kafka.produce(env.events_topic, *(signup(u) for u in users), *carts.values())
    partitions = set()

    async def all_scheduled() -> bool:
        timers = [
            t for u in users for t in await view.pending(u) if t.rule_id == "cart_abandonment"
        ]
        partitions.update(t.partition for t in timers)
        return len(timers) == len(users)

    await view.wait_until(all_scheduled)
    assert len(partitions) > 1  # the carts' timers live in several partitions
    second = start_worker(env, partitions=1)  # joins the group: the partitions are shared
    assert second.partitions() < 4
    # each reports the timers and lag of the partitions it owns now, not those it lost
    await eventually(lambda: len(first.metrics("nudge_pending_timers")) == first.partitions())
    await eventually(lambda: len(first.metrics("nudge_partition_lag")) == first.partitions())
    clock = "nudge_partition_clock_seconds"
    await eventually(lambda: len(first.metrics(clock)) == first.partitions())
    clocks = first.metrics(clock)
    # caught up while the broker answers: the wall clock, give or take a sweep
    assert all(abs(at - time.time()) < 3 for at in clocks.values()), clocks
    first.stop()  # clean leave: the second worker takes every partition
    second.wait_ready(partitions=4)
    earliest_due = min(datetime.fromisoformat(c["ts"]) for c in carts.values()) + timedelta(
        seconds=20
    )
    assert datetime.now(UTC) < earliest_due  # every timer fires on the second worker
    for user, cart in carts.items():
        [sent] = await kafka.wait_for_sends(env.send_topic, user, "cart_abandonment", timeout=90)
        assert sent["request_id"] == request_id("cart_abandonment", user, "", cart["event_id"])
    for user in users:
        assert len(await kafka.sends(env.send_topic, user, "cart_abandonment")) == 1


async def test_not_ready_until_the_group_assigns_partitions(worker_env: Env) -> None:
    """Partitions, even none, must have been assigned: Redis alone does not make a
    worker ready."""
    from streams.app import create_app
    from streams.settings import Settings
    from triggers import load_rules

    env = worker_env()
    settings = Settings(redis_url=env.redis_url, config_dir=env.config_dir)
    nudge = create_app(settings, load_rules(env.config_dir))
    try:
        before = await nudge.readiness()
        assert before == {"ready": False, "redis": True, "assigned": False, "partitions": 0}
        nudge._on_assigned(nudge.app, signal=None)  # the group's answer: no partitions
        assert (await nudge.readiness())["ready"] is True
    finally:
        await nudge.redis.aclose()


async def test_a_purchase_in_the_backlog_cancels_the_cart_timer_after_a_restart(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    """A restarted worker has processed nothing yet: its clock must not run ahead of the
    backlog, or a cart timer due meanwhile fires before the purchase that cancels it."""
    env = worker_env(cart_wait="4s", winback_wait="1h")
    first = start_worker(env)
    view = redis_view(env.keys)
    cart = add_to_cart("olga")
    await kafka.produce(env.events_topic, signup("olga"), cart)
    await view.wait_until(lambda: _cart_timer(view, "olga"))
    first.stop(signal.SIGKILL)
    carted = datetime.fromisoformat(cart["ts"])
    # others' signups ahead of the purchase in olga's partition: a backlog to work through
    backlog = [
        {**signup(user), "ts": (carted + timedelta(seconds=0.5)).isoformat()}
        for user in _same_partition_users("olga", 1500)
    ]
    bought = {**ev("purchase", "olga", order_id="o1", total=14.0)}
    bought["ts"] = (carted + timedelta(seconds=1)).isoformat()
    await kafka.produce(env.events_topic, *backlog, bought)
    await eventually(lambda: datetime.now(UTC) > carted + timedelta(seconds=5), timeout=10)
    start_worker(env)
    assert await kafka.wait_for_sends(env.send_topic, "olga", "receipt", timeout=60)
    await view.wait_until(lambda: _no_timers(view, "olga"))
    assert await kafka.sends(env.send_topic, "olga", "cart_abandonment") == []


async def _cart_timer(view: RedisView, user: str) -> bool:
    return any(t.rule_id == "cart_abandonment" for t in await view.pending(user))


def _same_partition_users(user: str, count: int) -> list[str]:
    """``count`` user ids whose events land in ``user``'s partition (the producer's
    murmur2 partitioner)."""
    from aiokafka.partitioner import murmur2

    def partition(key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS

    names = (f"filler-{n}" for n in range(count * PARTITIONS * 4))
    return [name for name in names if partition(name) == partition(user)][:count]

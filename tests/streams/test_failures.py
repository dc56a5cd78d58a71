"""Chaos on a live worker: the store goes away, a message cannot be processed.

The failure policy (streams/failures.py): a store or broker outage is retried for as long
as it lasts, with nothing lost or skipped; a message that cannot be processed goes to the
dead-letter topic with reason ``processing_error`` while every other message goes on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from profiles import Keys
from streams.embedded import free_port, start_redis

from .conftest import Kafka, RedisView, WorkerEnv, WorkerProcess, signup

Env = Callable[..., WorkerEnv]
Start = Callable[[WorkerEnv], WorkerProcess]


async def test_redis_outage_is_waited_out_without_losing_or_repeating_sends(
    worker_env: Env, start_worker: Start, kafka: Kafka, tmp_path: Path
) -> None:
    port = free_port()
    persist = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    redis_proc, url = start_redis(port, extra_args=persist)
    env = dataclasses.replace(worker_env(winback_wait="1h"), redis_url=url)
    worker = start_worker(env)
    client = aioredis.Redis.from_url(url)
    view = RedisView(client, env.keys)
    try:
        before = [f"before-{n}" for n in range(3)]
        await kafka.produce(env.events_topic, *(signup(u) for u in before))
        await view.wait_until(lambda: _profiles_exist(view, before))

        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        during = [f"during-{n}" for n in range(3)]
        await kafka.produce(env.events_topic, *(signup(u) for u in during))
        deadline = time.monotonic() + 30
        while worker.metric("nudge_retries_total", stage="batch") < 2:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        assert worker.get("/health/ready")[0] == 503
        assert await kafka.sends(env.send_topic, "during-0") == []
        # ops see it: the batch waiting, and the failures counted against Redis
        assert worker.metric("nudge_batches_in_flight") == 1
        assert worker.metric("nudge_redis_errors_total", operation="batch") >= 2
        assert worker.metric("nudge_kafka_errors_total", operation="batch") == 0

        redis_proc, _ = start_redis(port, extra_args=persist)
        for user in during:
            assert await kafka.wait_for_sends(env.send_topic, user, "welcome", timeout=60)
        assert worker.get("/health/ready")[0] == 200
        assert worker.metric("nudge_batches_in_flight") == 0
        for user in before + during:
            sends = await kafka.sends(env.send_topic, user)
            assert [s["rule_id"] for s in sends] == ["welcome"], user
    finally:
        await client.aclose()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


async def _profiles_exist(view: RedisView, users: list[str]) -> bool:
    return all([(await view.profile(u)).profile is not None for u in users])


async def test_unprocessable_message_is_dead_lettered_alone(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_url: str
) -> None:
    env = worker_env(winback_wait="1h")
    worker = start_worker(env)
    client = aioredis.Redis.from_url(redis_url)
    try:  # a corrupt stored profile: this user's events cannot be applied
        await client.set(Keys(env.keys.prefix).profile("mallory"), "1:0:{")
    finally:
        await client.aclose()
    poison = signup("mallory")
    await kafka.produce(env.events_topic, poison, signup("trent"))
    assert await kafka.wait_for_sends(env.send_topic, "trent", "welcome")
    deadline = time.monotonic() + 30
    while not (letters := await kafka.read_all(env.dead_letter_topic)):
        assert time.monotonic() < deadline, worker.tail()
    [letter] = letters
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["nudge.dlq.reason"] == "processing_error"
    assert "stored profile of user 'mallory' is not valid" in headers["nudge.dlq.detail"]
    assert letter.key == b"mallory" and letter.value == kafka_value(poison)
    assert await kafka.sends(env.send_topic, "mallory") == []
    assert worker.metric("nudge_dead_letters_total", reason="processing_error") == 1
    assert worker.proc.poll() is None
    lines = [orjson.loads(line) for line in worker.log.read_text().splitlines()]
    [logged] = [line for line in lines if line["message"].startswith("dead-lettering")]
    assert logged["topic"] == env.events_topic and logged["user_id"] == "mallory"
    where = (str(logged["partition"]), str(logged["offset"]))
    assert where == (headers["nudge.dlq.partition"], headers["nudge.dlq.offset"])
    assert "stored profile of user 'mallory' is not valid" in logged["exc"]


def kafka_value(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


async def test_an_event_over_the_size_limit_is_dead_lettered_and_the_next_processed(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = dataclasses.replace(
        worker_env(winback_wait="1h"), extra={"NUDGE_MAX_EVENT_BYTES": "2000"}
    )
    worker = start_worker(env)
    big = kafka_value({**signup("mallory"), "properties": {"note": "x" * 2000}})
    await kafka.produce(env.events_topic, big, key=b"mallory")
    await kafka.produce(env.events_topic, signup("mallory"))
    assert await kafka.wait_for_sends(env.send_topic, "mallory", "welcome"), worker.tail()
    [letter] = await kafka.read_all(env.dead_letter_topic)
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["nudge.dlq.reason"] == "too_large"
    assert letter.value == big and letter.key == b"mallory"
    assert worker.metric("nudge_dead_letters_total", reason="too_large") == 1

"""A worker's log, in JSON, holds no address and no secret."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from .conftest import ERASURE_KEY, REDIS_PASSWORD, UNSUBSCRIBE_KEY, Kafka, WorkerEnv, WorkerProcess


async def test_every_line_is_json_without_an_address_or_a_secret(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
    guarded_redis: str,
) -> None:
    env = dataclasses.replace(
        worker_env(winback_wait="1h"),
        redis_url=guarded_redis,
        extra={"NUDGE_REDIS_PASSWORD": REDIS_PASSWORD},  # no NUDGE_LOG_FORMAT: the default
    )
    user = f"ada-{uuid.uuid4().hex[:8]}"
    address = f"lovelace.{uuid.uuid4().hex[:8]}@example.com"
    worker = start_worker(env)
    signup = {
        "event_id": uuid.uuid4().hex,
        "type": "signup",
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(),
        "properties": {"email": address, "consent": {"email": True}},
    }
    await kafka.produce(env.events_topic, signup)
    sends = await kafka.wait_for_sends(env.send_topic, user, "welcome")
    assert sends and sends[0]["to"] == address, worker.tail()
    worker.stop()

    lines = worker.log.read_text().splitlines()
    assert len(lines) > 5
    for line in lines:
        parsed = orjson.loads(line)  # raises on a line that is not JSON
        assert {"ts", "level", "logger", "message"} <= parsed.keys(), line
    text = "\n".join(lines)
    for secret in (address, UNSUBSCRIBE_KEY, ERASURE_KEY, REDIS_PASSWORD):
        assert secret not in text

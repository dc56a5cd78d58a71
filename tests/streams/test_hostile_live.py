"""Hostile input against a live worker: 10,000 messages from :mod:`.hostile`.

What producers may send must never crash or stall the worker: every bad message lands in
the dead-letter topic with the reason the contract gives it, every good one in the same
stream is applied, no string of an event is ever evaluated as a template, and `nudge
simulate` dead-letters the same corpus the same way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from triggers import load_rules, simulate

from .conftest import Kafka, WorkerEnv, WorkerProcess, eventually
from .hostile import EVALUATED, Message, corpus

#: a producer that lets the oversized messages through to the broker (the worker must
#: refuse them, not the producer)
MAX_REQUEST = 4 * 1024 * 1024


async def produce(bootstrap: str, topic: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_REQUEST
    )
    await producer.start()
    try:
        sent = [await producer.send(topic, m.value, key=m.key) for m in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def applied(worker: WorkerProcess) -> float:
    """Events applied so far (-1 while the worker is too busy to answer in 2 s)."""
    try:
        events = sum(worker.metrics("nudge_events_total").values())
        return events + worker.metric("nudge_duplicate_events_total")
    except OSError:  # a socket timeout
        return -1


async def test_hostile_messages_are_dead_lettered_by_reason_and_the_good_ones_applied(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
) -> None:
    env = worker_env(cart_wait="1s", winback_wait="2s")
    worker = start_worker(env)
    messages = corpus(10_000)
    expected = Counter(m.expect for m in messages)
    good = expected.pop("ok")
    assert good > 5_000 and len(expected) == 5  # every kind of bad input is in it
    await produce(env.bootstrap, env.events_topic, messages)

    async def dead_letters() -> list[Any]:
        return await kafka.read_all(env.dead_letter_topic)

    letters = await eventually(
        lambda: _when(dead_letters(), lambda found: len(found) >= expected.total()), timeout=180
    )
    reasons = Counter(dict(r.headers)["nudge.dlq.reason"].decode() for r in letters)
    assert reasons == expected
    await eventually(lambda: applied(worker) == good, timeout=120)
    assert worker.proc.poll() is None and worker.get("/health/ready")[0] == 200

    sends = [orjson.loads(r.value) for r in await kafka.read_all(env.send_topic)]
    assert len(sends) > 100  # welcomes, cart reminders and winbacks of hostile users
    for send in sends:
        shown = send["subject"] + send["html"] + send["text"]
        assert not [word for word in EVALUATED if word in shown], send["subject"][:200]

    # the simulator refuses the same messages for the same reasons (it reads values
    # without keys, so the key checks are the worker's alone)
    rules = load_rules(env.config_dir)
    lines = [m.value for m in messages if m.value is not None and m.expect != "key_mismatch"]
    simulated = await simulate(rules, lines)
    offline = Counter(d.reason for d in simulated.dead_letters)
    assert offline == expected - Counter({"key_mismatch": expected["key_mismatch"]}) - Counter(
        {"empty_value": expected["empty_value"]}
    )


async def _when(found: Any, done: Callable[[Any], bool]) -> Any:
    """``await found`` if ``done`` says it is complete, else ``None`` (for eventually)."""
    value = await found
    return value if done(value) else None

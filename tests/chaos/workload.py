"""The chaos workload: users' event scripts, published at a steady pace over a window.

Each user signs up; most put something in their cart, some of those buy it before the
cart reminder is due (the purchase cancels it), some browse a page afterwards, a few
events are sent twice (the same bytes: dedup). Every consenting user's winback timer
fires after their last event, so timers are in flight for the whole window.

Event times are the wall clock at the moment an event is handed to the producer, as in
the simulate property test: the lines actually published are what ``simulate`` replays.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["Published", "Step", "plan", "publish", "read_back"]


@dataclass(frozen=True)
class Step:
    """One event of a user's script, ``at`` seconds into the window; ``repeat`` resends
    the user's event number ``repeat`` (its exact bytes)."""

    at: float
    user: str
    kind: str
    properties: dict[str, Any] = field(default_factory=dict)
    repeat: int | None = None


def _script(rng: random.Random, user: str, start: float) -> Iterator[Step]:
    consent = rng.random() < 0.9
    props = {"email": f"{user}@example.com", "first_name": "Ada", "consent": {"email": consent}}
    at = start
    yield Step(at, user, "signup", props)
    if rng.random() < 0.05:
        yield Step(at + 0.2, user, "repeat", repeat=0)
    if rng.random() < 0.6:
        at += rng.uniform(0.3, 1.5)
        item = {"product_id": "mug", "name": "Enamel mug", "price": 14.0, "quantity": 1}
        yield Step(at, user, "add_to_cart", item)
        if rng.random() < 0.4:  # bought well before the cart reminder is due
            at += rng.uniform(0.3, 2.0)
            order = {"order_id": uuid.uuid4().hex[:8], "total": 14.0, "items": [item]}
            yield Step(at, user, "purchase", order)
    if rng.random() < 0.3:
        at += rng.uniform(0.5, 2.0)
        yield Step(at, user, "page_view", {"url": "https://shop.example/"})


def plan(users: int, window: float, seed: int) -> list[Step]:
    """Every user's script, starts spread uniformly over ``window`` seconds, in time order."""
    rng = random.Random(seed)
    steps = [
        step
        for n in range(users)
        for step in _script(rng, f"u{seed}-{n}", rng.uniform(0, window * 0.85))
    ]
    return sorted(steps, key=lambda s: s.at)


@dataclass
class Published:
    """The lines as published, in order, and when the publishing started and ended.

    A line the broker did not acknowledge in time is sent again (the same bytes) and
    appears here once per attempt: it may be on the topic once or twice, which the
    engine's dedup on ``event_id`` makes the same."""

    lines: list[bytes] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    #: records sent again because their first attempt was not acknowledged in time
    resent: int = 0

    def last_event_time(self) -> datetime:
        return max(datetime.fromisoformat(orjson.loads(line)["ts"]) for line in self.lines)


async def publish(
    bootstrap: str,
    topic: str,
    steps: list[Step],
    tick: float = 0.05,
    *,
    request_timeout_ms: int = 40_000,
) -> Published:
    """Publish ``steps`` at their times (relative to now), each with the wall clock as its
    event time; a tick's records are awaited together, and those not acknowledged within
    ``request_timeout_ms`` (a broker that does not answer) are sent again until they are.
    Steps falling due meanwhile wait, and get their event time when handed over."""
    out = Published(started=time.monotonic())
    sent: dict[str, list[bytes]] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=500,
    )
    await producer.start()
    try:
        pending = list(reversed(steps))
        while pending:
            await asyncio.sleep(tick)
            elapsed = time.monotonic() - out.started
            records = []
            while pending and pending[-1].at <= elapsed:
                step = pending.pop()
                records.append((step.user.encode(), _materialise(step, sent)))
            await _until_acked(producer, topic, records, out)
    finally:
        await producer.stop()
    out.finished = time.monotonic()
    return out


async def _until_acked(
    producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]], out: Published
) -> None:
    """Send ``records`` (in order), again and again for those not acknowledged."""
    while records:
        acks: list[Any] = []
        for key, line in records:
            out.lines.append(line)
            try:
                acks.append(await producer.send(topic, line, key=key))
            except KafkaError as exc:  # no metadata in time: the broker does not answer
                acks.append(_failed(exc))
        results = await asyncio.gather(*acks, return_exceptions=True)
        again = [
            record
            for record, result in zip(records, results, strict=True)
            if isinstance(result, Exception)
        ]
        if again:
            out.resent += len(again)
            await asyncio.sleep(0.5)
        records = again


async def _failed(exc: Exception) -> None:
    raise exc


async def read_back(bootstrap: str, topic: str) -> list[bytes]:
    """Every record on ``topic`` now: what was actually published, retries included."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fresh metadata: the topic's partitions
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        parts = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        lines: list[bytes] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                lines += [r.value for r in records if r.value is not None]
        return lines
    finally:
        await consumer.stop()


def _materialise(step: Step, sent: dict[str, list[bytes]]) -> bytes:
    mine = sent.setdefault(step.user, [])
    if step.repeat is not None:
        return mine[step.repeat]
    line = orjson.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "type": step.kind,
            "user_id": step.user,
            "ts": datetime.now(UTC).isoformat(),
            "properties": step.properties,
        }
    )
    mine.append(line)
    return line

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
from aiokafka import AIOKafkaProducer

__all__ = ["Published", "Step", "plan", "publish"]


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
    """The lines as published, in order, and when the publishing started and ended."""

    lines: list[bytes] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    def last_event_time(self) -> datetime:
        return max(datetime.fromisoformat(orjson.loads(line)["ts"]) for line in self.lines)


async def publish(bootstrap: str, topic: str, steps: list[Step], tick: float = 0.05) -> Published:
    """Publish ``steps`` at their times (relative to now), each with the wall clock as its
    event time; a tick's records are awaited together."""
    out = Published(started=time.monotonic())
    sent: dict[str, list[bytes]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending = list(reversed(steps))
        while pending:
            await asyncio.sleep(tick)
            elapsed = time.monotonic() - out.started
            acks = []
            while pending and pending[-1].at <= elapsed:
                step = pending.pop()
                line = _materialise(step, sent)
                out.lines.append(line)
                acks.append(await producer.send(topic, line, key=step.user.encode()))
            await asyncio.gather(*acks)
    finally:
        await producer.stop()
    out.finished = time.monotonic()
    return out


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

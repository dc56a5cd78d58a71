"""Event to send request latency at a steady rate (``--mode latency``).

What is measured
    One ``nudge worker`` (shipped config) owns a fresh topic. After a warm-up, signups
    with email consent, each a new user in a zone where it is early afternoon (so the
    welcome mail is sent at once, not deferred by quiet hours), are published at a steady
    ``--rate`` for ``--seconds``; each event's ``ts`` is the moment the bench creates it.
    Every welcome send request read back from the send topic gives two latencies:

    - **record time - ts**: the Kafka record timestamp, set by the worker's producer when
      it queues the request (the engine's decision, rendering and batching included);
    - **read - ts**: the bench's clock when the request reaches its reader (the broker
      round trip and the reader's fetch included).

    Both clocks are this machine's, so no clock skew enters. The bench's producer and
    reader share the machine with the worker, the broker and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import workload
from aiokafka import AIOKafkaProducer
from harness import (
    BenchError,
    Deadline,
    Services,
    WorkerSetup,
    create_topics,
    percentile,
    read_records,
    wait_ready,
    workers,
)

__all__ = ["latency"]

WARMUP_SECONDS = 3.0
#: how long to wait for the last send requests once every event is out
GRACE_SECONDS = 30.0
TICK_SECONDS = 0.005


@dataclass
class Latencies:
    """Event times of what was sent, and the two latencies of what came back."""

    sent_ms: dict[str, int] = field(default_factory=dict)
    recorded: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    produced_seconds: float = 0.0

    def expected(self) -> int:
        return len(self.sent_ms)

    def arrived(self) -> int:
        return len(self.recorded)


async def produce(
    bootstrap: str, topic: str, rate: float, seconds: float, prefix: str, into: dict[str, int]
) -> float:
    """Signups at ``rate`` per second for ``seconds``; return how long it really took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    total, pending = int(rate * seconds), []
    try:
        start = time.monotonic()
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > TICK_SECONDS:
                await asyncio.sleep(delay)
            user_id = f"{prefix}-{n:07d}"
            now_ms = int(time.time() * 1000)
            event = workload.signup_event(
                user_id, event_id=user_id, ts_ms=now_ms, zone_at_ms=now_ms
            )
            into[user_id] = now_ms
            pending.append(await producer.send(topic, orjson.dumps(event), key=user_id.encode()))
        await asyncio.gather(*pending)
        return time.monotonic() - start
    finally:
        await producer.stop()


async def collect(
    bootstrap: str, topic: str, found: Latencies, deadline: Deadline, stop: asyncio.Event
) -> None:
    """Latencies of the welcome send requests of the measured events, as they arrive."""
    async for record in read_records(bootstrap, topic, deadline):
        if record is not None:
            send = orjson.loads(record.value)
            ts_ms = found.sent_ms.get(send["trigger_event_id"])
            if send["rule_id"] == "welcome" and ts_ms is not None:
                found.recorded.append(record.timestamp - ts_ms)
                found.read.append(time.time() * 1000 - ts_ms)
        if stop.is_set():
            return


async def measure(args: argparse.Namespace, setup: WorkerSetup, deadline: Deadline) -> Latencies:
    found, warm, stop = Latencies(), dict[str, int](), asyncio.Event()
    reader = asyncio.create_task(collect(setup.bootstrap, setup.send_topic, found, deadline, stop))
    await produce(
        setup.bootstrap, setup.events_topic, args.rate, WARMUP_SECONDS, f"warm-{setup.unique}", warm
    )
    found.produced_seconds = await produce(
        setup.bootstrap,
        setup.events_topic,
        args.rate,
        args.seconds,
        f"user-{setup.unique}",
        found.sent_ms,
    )
    until = time.monotonic() + min(GRACE_SECONDS, deadline.remaining())
    while found.arrived() < found.expected() and time.monotonic() < until and not reader.done():
        await asyncio.sleep(0.1)
    stop.set()
    await reader
    return found


def latency(args: argparse.Namespace, svc: Services, work: Path, deadline: Deadline) -> list[str]:
    topic = f"bench.events-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics(svc.bootstrap, [topic], args.partitions))
    setup = WorkerSetup(svc.bootstrap, svc.redis_url, args.config, topic, work)
    with workers(setup) as (worker,):
        wait_ready([worker], args.partitions, deadline)
        steady = f"{args.rate:,.0f} signups/s for {args.seconds:.0f}s"
        print(f"worker ready; {WARMUP_SECONDS:.0f}s warm-up, then {steady} ...")
        found = asyncio.run(measure(args, setup, deadline))
        worker.watch(deadline, "the worker to stay up")
    if not found.recorded:
        raise BenchError("no welcome send request arrived: see the worker's log")
    rate = found.expected() / found.produced_seconds
    return [
        f"steady rate       {args.rate:,.0f} signups/s for {args.seconds:.0f}s asked, "
        f"{rate:,.0f}/s produced ({found.expected():,} events, each a welcome mail)",
        f"welcome sends     {found.arrived():,} of {found.expected():,} arrived",
        _row("record time - ts", found.recorded),
        _row("read - ts", found.read),
    ]


def _row(label: str, values: list[float]) -> str:
    quantiles = ", ".join(f"p{q} {percentile(values, q / 100):,.0f} ms" for q in (50, 95, 99))
    return f"{label:<18}{quantiles}, max {max(values):,.0f} ms"

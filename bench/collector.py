"""How many events one ``nudge collector`` process accepts: concurrent HTTP clients on
loopback.

What is measured
    One ``nudge collector`` process (its own tansu broker and redis-server on free ports,
    or ``--bootstrap`` / ``--redis-url``; a fresh 8-partition events topic) is driven by
    ``--connections`` concurrent keep-alive connections (aiohttp, in this process), first
    with single-event Segment ``track`` calls, then, on ``--batch-connections``
    connections, with ``/v1/batch`` calls of ``--batch-size`` events. Each phase runs for
    ``--seconds`` after a one-second warm-up that is not counted. Every event is a
    ``Product Viewed`` of one of 1,000 users, with its own ``messageId``.

    - **accepted events/s**: events of requests answered 200, i.e. acknowledged by the
      broker (``acks=all``), per second of the phase;
    - **p50 / p99**: request latency as the client sees it (send to whole answer);
    - **collector CPU**: the process's user + system CPU seconds per wall second of the
      phase (1.0 = one core busy), from ``/proc``.

    At the end the events topic is read back from its start: it must hold every accepted
    event (warm-ups included), since a 200 means the event is on the broker. The client, the
    collector and the broker share the machine's cores.

    .venv/bin/python bench/collector.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from harness import (
    BenchError,
    Deadline,
    command_line,
    create_topics,
    machine,
    memory_mib,
    percentile,
    services,
    stop,
)

from streams.embedded import free_port

__all__ = ["main"]

PARTITIONS = 8
USERS = 1000
WARMUP_SECONDS = 1.0
#: reading the topic back stops after this long without a new record
QUIET_SECONDS = 5.0


@dataclass
class Phase:
    """One phase's requests: latencies (s), accepted events, refused requests."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    refused: int = 0
    cpu_seconds: float = 0.0

    def line(self) -> str:
        rate = self.accepted / self.seconds if self.seconds else 0.0
        requests = len(self.latencies) / self.seconds if self.seconds else 0.0
        p50, p99 = (percentile(self.latencies, q) * 1000 for q in (0.5, 0.99))
        cpu = self.cpu_seconds / self.seconds if self.seconds else 0.0
        return (
            f"{self.name:<18}{rate:>9,.0f} events/s  {requests:>7,.0f} req/s  "
            f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  collector CPU {cpu:.2f}"
            + (f"  ({self.refused} refused)" if self.refused else "")
        )


class Collector:
    """One ``nudge collector`` process on the run's broker and Redis."""

    def __init__(self, bootstrap: str, redis_url: str, topic: str, work: Path) -> None:
        nudge = Path(sys.executable).parent / "nudge"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write_key = secrets.token_urlsafe(32)
        self.log = work / "collector.log"
        env = os.environ | {
            "NUDGE_KAFKA_BOOTSTRAP": bootstrap,
            "NUDGE_REDIS_URL": redis_url,
            "NUDGE_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "NUDGE_EVENTS_TOPIC": topic,
            "NUDGE_COLLECTOR_WRITE_KEYS": self.write_key,
            "NUDGE_UNSUBSCRIBE_KEY": secrets.token_urlsafe(32),
            "NUDGE_COLLECTOR_PORT": str(self.port),
            "NUDGE_LOG_LEVEL": "warning",
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(nudge), "collector"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def wait_ready(self, session: aiohttp.ClientSession, deadline: Deadline) -> None:
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the collector exited:\n{self.log.read_text()[-2000:]}")
            deadline.check("the collector to be ready")
            try:
                async with session.get(f"{self.url}/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


def track(n: int) -> dict[str, object]:
    return {
        "type": "track",
        "messageId": f"bench-{n}",
        "userId": f"user-{n % USERS}",
        "event": "Product Viewed",
        "properties": {"product_id": f"p{n % 3700}", "name": "Mug", "price": 12.5},
        "timestamp": "2026-03-02T12:00:00Z",
    }


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    body: Callable[[int], bytes],
    events_per_request: int,
    connections: int,
    seconds: float,
    phase: Phase,
    numbers: itertools.count[int],
) -> None:
    """``connections`` clients, each sending its next request as soon as the last is
    answered, until ``seconds`` have passed."""
    stop_at = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < stop_at:
            data = body(next(numbers))
            started = time.perf_counter()
            async with session.post(url, data=data) as response:
                await response.read()
            phase.latencies.append(time.perf_counter() - started)
            if response.status == 200:
                phase.accepted += events_per_request
            else:
                phase.refused += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    phase.seconds = time.monotonic() - started


async def run_phase(
    collector: Collector,
    session: aiohttp.ClientSession,
    name: str,
    *,
    path: str,
    size: int,
    connections: int,
    seconds: float,
    numbers: itertools.count[int],
) -> tuple[Phase, int]:
    """A warm-up, then the measured phase; and every event accepted (warm-up included)."""

    def body(n: int) -> bytes:
        if size == 1:
            return orjson.dumps(track(n))
        return orjson.dumps({"batch": [track(n * size + i) for i in range(size)]})

    url = f"{collector.url}{path}"
    warmup = Phase("warm-up")
    await drive(session, url, body, size, connections, WARMUP_SECONDS, warmup, numbers)
    phase = Phase(name)
    cpu = collector.cpu_seconds()
    await drive(session, url, body, size, connections, seconds, phase, numbers)
    phase.cpu_seconds = collector.cpu_seconds() - cpu
    return phase, warmup.accepted + phase.accepted


async def on_topic(bootstrap: str, topic: str, expected: int, deadline: Deadline) -> int:
    """The records on ``topic``, read from its start until ``expected`` are found or none
    came for a few seconds (tansu's end offsets lag the records it acknowledged, so the
    records are counted, not the offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        count, quiet_since = 0, time.monotonic()
        while count < expected and time.monotonic() - quiet_since < QUIET_SECONDS:
            deadline.check(f"{expected} records on {topic}")
            found = sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())
            if found:
                count, quiet_since = count + found, time.monotonic()
        return count
    finally:
        await consumer.stop()


async def bench(args: argparse.Namespace, bootstrap: str, redis_url: str, work: Path) -> list[str]:
    deadline = Deadline(args.timeout)
    topic = f"bench.collected-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [topic], PARTITIONS)
    collector = Collector(bootstrap, redis_url, topic, work)
    auth = base64.b64encode(f"{collector.write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    numbers = itertools.count()
    try:
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            await collector.wait_ready(session, deadline)
            single, accepted = await run_phase(
                collector,
                session,
                f"track x{args.connections}",
                path="/v1/track",
                size=1,
                connections=args.connections,
                seconds=args.seconds,
                numbers=numbers,
            )
            batch, more = await run_phase(
                collector,
                session,
                f"batch/{args.batch_size} x{args.batch_connections}",
                path="/v1/batch",
                size=args.batch_size,
                connections=args.batch_connections,
                seconds=args.seconds,
                numbers=numbers,
            )
        rss = memory_mib(collector.proc.pid, "VmHWM")
    finally:
        stop(collector.proc)
    stored = await on_topic(bootstrap, topic, accepted + more, deadline)
    if stored != accepted + more:
        raise BenchError(f"{accepted + more} events answered 200 but {stored} on the topic")
    return [
        single.line(),
        batch.line(),
        f"on the topic      {stored:,} events, every one answered 200 (warm-ups included)",
        f"collector peak RSS {rss or float('nan'):.0f} MiB",
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each phase")
    parser.add_argument("--connections", type=int, default=32, help="clients of track calls")
    parser.add_argument("--batch-connections", type=int, default=4, help="clients of batches")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch call")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the whole run")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting tansu")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    args = parser.parse_args(argv)
    if min(args.seconds, args.connections, args.batch_connections, args.batch_size) <= 0:
        parser.error("--seconds, --connections, --batch-connections, --batch-size: positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nudge-bench-") as tmp:
        work = Path(tmp)
        try:
            with services(args.bootstrap, args.redis_url, work) as found:
                figures = asyncio.run(bench(args, found.bootstrap, found.redis_url, work))
        except (BenchError, TimeoutError) as exc:
            print(f"bench failed: {exc or 'timed out'}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    print()
    print("\n".join(figures))
    print(f"machine           {machine(load)}")
    print(f"command           {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

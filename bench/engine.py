"""The engine's own cost per event: ``triggers.Engine`` in-process over a recorded stream.

What is timed
    The gift-shop workload (``bench/workload.py``) is recorded as a consumer would receive
    it: each event's partition comes from its key like the Kafka producer's (murmur2), and
    the stream is cut into batches of ``--batch`` events, either consecutive events of all
    partitions (``--fetch interleaved``, a caught-up worker) or runs of one partition at a
    time (``--fetch partition``, a worker catching up on a backlog). Each batch goes
    through ``Engine.process`` on the in-memory stores (default) or on a real redis-server
    (``--redis``), and the CPU time of this process (``time.process_time``) is summed over
    those calls only: parsing, dedup, loading and saving profiles, folding, rules,
    rendering, timer changes, and encoding every send request and decision as the Kafka
    outbox does (nothing is sent). Generating the stream is not timed.

    The garbage collector runs as in a worker: the young generation every
    ``NUDGE_GC_THRESHOLD`` allocations (50,000), what was built before the timed calls
    frozen out of collections (``--gc-threshold 0``: Python's defaults, as every run
    recorded before the option had them).

    The clock the engine sees is the newest event time so far (up to the end of the
    batch), as for a worker whose events are live. With ``--redis``, Redis's own CPU is
    not in the engine's figure; it is printed beside it (read from ``/proc`` of the
    redis-server this script started).

Timers
    Every ``--sweep-every`` batches, each partition's due timers fire (``Engine.fire_due``,
    500 at most, like one sweep of the worker), timed apart from the events. With the
    default span (the shop's year in 2 ms per event) no rule wait passes and nothing is
    due; ``--days 365`` replays the year at its own pace, so timers fall due as it goes.

Run it (no broker needed)::

    .venv/bin/python bench/engine.py [--events 100000] [--redis] [--profile]

``--profile`` adds a cProfile breakdown of the timed calls (top ``--top`` functions by own
time and by cumulative time); the profiler slows everything, so quote µs/event from a run
without it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import workload
from aiokafka.partitioner import murmur2
from harness import REPO, command_line, cpu_seconds, machine

from profiles import (
    InMemoryCatalog,
    InMemoryProfileStore,
    InMemoryStatistics,
    InMemoryTimerStore,
    Keys,
    LookupCache,
    LookupSource,
    Product,
    ProfileStore,
    RecommendationConfig,
    RedisCatalog,
    RedisProfileStore,
    RedisStatistics,
    RedisTimerStore,
    Statistics,
    TimerStore,
    load_catalog,
)
from profiles.keys import slot_tag
from streams.cli import tune_gc
from streams.embedded import start_redis
from streams.settings import Settings
from triggers import DeadLetter, Decision, Engine, Incoming, SendRequest, load_rules
from triggers.firing import MOMENT_MS

TOPIC = "bench.events"
#: a fixed end of the event stream, so every run records the same events
END = datetime(2026, 6, 1, 12, tzinfo=UTC)


# --- the recorded stream ------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    messages: list[Incoming]
    #: newest event time in the batch (epoch ms): the engine's clock moves up to it
    newest_ms: int
    users: int


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the Kafka producer's default partitioner picks for ``key``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def record(shop: workload.Workload, *, partitions: int, size: int, fetch: str) -> list[Batch]:
    """The stream as batches of at most ``size`` messages."""
    offsets = Counter[int]()
    messages: list[tuple[Incoming, int]] = []
    for planned, (key, value) in zip(shop.planned, shop.messages(), strict=True):
        partition = partition_of(key, partitions)
        messages.append((Incoming(value, key, TOPIC, partition, offsets[partition]), planned.ts_ms))
        offsets[partition] += 1
    runs = _by_partition(messages, size) if fetch == "partition" else _chunks(messages, size)
    return [
        Batch(
            [message for message, _ in run],
            max(ts for _, ts in run),
            len({message.key for message, _ in run}),
        )
        for run in runs
    ]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_partition(
    messages: list[tuple[Incoming, int]], size: int
) -> Iterator[list[tuple[Incoming, int]]]:
    """Runs of one partition at a time, taking the partitions in turn."""
    queues: dict[int, list[tuple[Incoming, int]]] = {}
    for item in messages:
        queues.setdefault(item[0].partition, []).append(item)
    runs = {p: list(_chunks(queue, size)) for p, queue in sorted(queues.items())}
    for turn in range(max((len(chunks) for chunks in runs.values()), default=0)):
        for chunks in runs.values():
            if turn < len(chunks):
                yield chunks[turn]


# --- what the engine talks to ----------------------------------------------------------------


@dataclass
class EncodingOutbox:
    """Encodes every message as the Kafka outbox does, and only counts them."""

    sends: Counter[str] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: int = 0
    bytes: int = 0

    async def publish(
        self,
        sends: Sequence[SendRequest],
        dead_letters: Sequence[DeadLetter],
        decisions: Sequence[Decision] = (),
    ) -> None:
        for send in sends:
            self.bytes += len(send.to_json())
            self.sends[send.rule_id] += 1
        for letter in dead_letters:
            letter.headers()
            self.dead_letters += 1
        for decision in decisions:
            self.bytes += len(decision.to_json())
            self.decisions[decision.rule_id, decision.outcome] += 1


class Clock:
    """The engine's ``now``: the newest event time so far (it never goes back)."""

    def __init__(self) -> None:
        self.now = datetime.fromtimestamp(0, tz=UTC)

    def __call__(self) -> datetime:
        return self.now

    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000)

    def advance_ms(self, epoch_ms: int) -> None:
        self.now = max(self.now, datetime.fromtimestamp(epoch_ms / 1000, tz=UTC))


@dataclass
class Stores:
    profiles: ProfileStore
    timers: TimerStore
    label: str
    redis_pid: int | None = None
    #: the Redis client and key prefix of the run (``None``: in-memory stores)
    client: aioredis.Redis | None = None
    keys: Keys | None = None

    async def statistics(
        self, catalog: list[Product], config: RecommendationConfig, clock: Clock
    ) -> tuple[Statistics, LookupSource]:
        """Shop-wide statistics over ``catalog``, as the worker (Redis, behind its
        lookup cache) or ``simulate`` (in memory) keeps them."""
        if self.client is None:
            memory = InMemoryStatistics(
                InMemoryCatalog(catalog), config=config, clock_ms=clock.now_ms
            )
            return memory, memory
        await RedisCatalog(self.client, keys=self.keys).put(catalog)
        redis = RedisStatistics(self.client, keys=self.keys, config=config, clock_ms=clock.now_ms)
        return redis, LookupCache(redis)


@asynccontextmanager
async def stores(redis_url: str | None, use_redis: bool) -> AsyncIterator[Stores]:
    """In-memory twins, or the Redis stores on ``redis_url`` or a redis-server started here."""
    if not use_redis and not redis_url:
        yield Stores(InMemoryProfileStore(), InMemoryTimerStore(), "in-memory stores")
        return
    proc = None
    if not redis_url:
        proc, redis_url = start_redis()
    client = aioredis.Redis.from_url(redis_url)
    keys = Keys(f"bench-{uuid.uuid4().hex[:8]}")
    try:
        yield Stores(
            RedisProfileStore(client, keys=keys),
            RedisTimerStore(client, keys=keys),
            f"Redis at {redis_url} (prefix {keys.prefix})",
            proc.pid if proc else None,
            client,
            keys,
        )
    finally:
        await client.aclose()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


# --- the timed loop -------------------------------------------------------------------------


@dataclass
class Tally:
    cpu: float = 0.0
    wall: float = 0.0
    redis_cpu: float = 0.0
    events: int = 0
    timers: int = 0
    sweeps: int = 0


@dataclass
class Run:
    engine: Engine
    clock: Clock
    partitions: int
    redis_pid: int | None
    profiler: cProfile.Profile | None
    events: Tally = field(default_factory=Tally)
    sweeps: Tally = field(default_factory=Tally)

    @contextmanager
    def timed(self, tally: Tally) -> Iterator[None]:
        redis_before = cpu_seconds(self.redis_pid)
        if self.profiler:
            self.profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            tally.cpu += time.process_time() - cpu
            tally.wall += time.perf_counter() - wall
            if self.profiler:
                self.profiler.disable()
            tally.redis_cpu += cpu_seconds(self.redis_pid) - redis_before

    async def batch(self, batch: Batch) -> None:
        self.clock.advance_ms(batch.newest_ms)
        with self.timed(self.events):
            result = await self.engine.process(batch.messages)
        self.events.events += result.events + result.duplicates

    async def sweep(self) -> None:
        now = self.clock.now
        horizon_ms = (int(now.timestamp() * 1000) // MOMENT_MS) * MOMENT_MS - 1
        horizon = datetime.fromtimestamp(horizon_ms / 1000, tz=UTC)
        for partition in range(self.partitions):
            with self.timed(self.sweeps):
                result = await self.engine.fire_due(partition, now, horizon=horizon)
            self.sweeps.timers += result.timers_fired
        self.sweeps.sweeps += 1


async def replay(run: Run, batches: list[Batch], sweep_every: int) -> None:
    for n, batch in enumerate(batches, start=1):
        await run.batch(batch)
        if sweep_every and n % sweep_every == 0:
            await run.sweep()


# --- report ---------------------------------------------------------------------------------


def rules_table(outbox: EncodingOutbox) -> list[str]:
    by_rule: dict[str, Counter[str]] = {}
    for (rule, outcome), count in outbox.decisions.items():
        by_rule.setdefault(rule, Counter())[outcome] += count
    return [
        f"  {rule:<20} " + ", ".join(f"{outcome} {n:,}" for outcome, n in sorted(counts.items()))
        for rule, counts in sorted(by_rule.items())
    ]


def report(
    args: argparse.Namespace,
    run: Run,
    shop: workload.Workload,
    batches: list[Batch],
    outbox: EncodingOutbox,
    label: str,
) -> None:
    ev, sw = run.events, run.sweeps
    per_event = ev.cpu / max(ev.events, 1) * 1e6
    users = sum(b.users for b in batches) / max(len(batches), 1)
    print(
        f"stream            {len(shop):,} events of {shop.users:,} shoppers, "
        f"{len(batches):,} batches of <= {args.batch} ({args.partitions} partitions, "
        f"{args.fetch}), {users:.0f} shoppers per batch on average"
    )
    print(f"stores            {label}")
    collector = f"every {args.gc_threshold:,} allocations" if args.gc_threshold else "defaults"
    print(f"garbage collector {collector} (--gc-threshold)")
    print(
        f"engine CPU        {per_event:,.1f} us/event ({ev.cpu:.2f}s CPU for {ev.events:,} "
        f"events; {ev.events / max(ev.wall, 1e-9):,.0f} events/s wall)"
    )
    if run.redis_pid is not None:
        print(f"redis-server CPU  {ev.redis_cpu / max(ev.events, 1) * 1e6:,.1f} us/event beside it")
    if sw.timers:
        per_timer = sw.cpu / sw.timers * 1e6
        print(
            f"timer sweeps      {sw.sweeps:,} sweeps, {sw.timers:,} timers fired, "
            f"{sw.cpu:.2f}s CPU ({per_timer:,.0f} us/timer)"
        )
    elif sw.sweeps:
        print(f"timer sweeps      {sw.sweeps:,} sweeps, no timer due ({sw.cpu:.2f}s CPU)")
    sends = sum(outbox.sends.values())
    print(
        f"output            {sends:,} send requests, {sum(outbox.decisions.values()):,} "
        f"decisions, {outbox.dead_letters} dead letters ({outbox.bytes / 1e6:.1f} MB encoded)"
    )
    print("decisions by rule")
    print("\n".join(rules_table(outbox)))
    print(f"machine           {machine(args.load)}")
    print(f"command           {command_line()}")


def print_profile(profiler: cProfile.Profile, top: int) -> None:
    for order in ("tottime", "cumulative"):
        print(f"\ncProfile: top {top} by {order} (the profiler's overhead included)")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(top)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the stream")
    parser.add_argument("--seed", type=int, default=7, help="seed of the workload")
    parser.add_argument("--days", type=float, help="event-time span in days (default 2 ms/event)")
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--fetch", choices=["interleaved", "partition"], default="interleaved")
    parser.add_argument(
        "--sweep-every", type=int, default=8, help="batches between sweeps (0: none)"
    )
    parser.add_argument(
        "--redis", action="store_true", help="Redis stores on a redis-server started here"
    )
    parser.add_argument("--redis-url", help="Redis stores on this Redis instead (implies --redis)")
    parser.add_argument("--config", type=Path, default=REPO / "config", help="rules directory")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed calls")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=Settings.model_fields["gc_threshold"].default,
        help="young-generation collections every N allocations, what was built before "
        "the timed calls frozen out of them, as a worker does (NUDGE_GC_THRESHOLD); "
        "0: Python's defaults (the runs recorded before this option)",
    )
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    args = parser.parse_args(argv)
    args.load = os.getloadavg()
    if min(args.events, args.batch, args.partitions) < 1:
        parser.error("--events, --batch and --partitions must be positive")
    return args


async def bench(args: argparse.Namespace) -> None:
    span_ms = int(args.days * workload.DAY_S * 1000) if args.days else None
    end_ms = int(END.timestamp() * 1000)
    shop = workload.shop(args.events, seed=args.seed, end_ms=end_ms, span_ms=span_ms)
    batches = record(shop, partitions=args.partitions, size=args.batch, fetch=args.fetch)
    outbox, clock = EncodingOutbox(), Clock()
    rules = load_rules(args.config)
    catalog = load_catalog(args.config / "catalog.jsonl")
    async with stores(args.redis_url, args.redis) as found:
        statistics, lookups = await found.statistics(catalog, rules.config.recommendations, clock)
        engine = Engine(
            rules=rules,
            profiles=found.profiles,
            timers=found.timers,
            outbox=outbox,
            clock=clock,
            lookups=lookups,
            statistics=statistics,
        )
        # a worker builds its table of hash slot tags (~0.2 s) at its first batch, once: built
        # here, that start-up cost is not counted as the first events' cost
        slot_tag("")
        tune_gc(args.gc_threshold)
        profiler = cProfile.Profile() if args.profile else None
        run = Run(engine, clock, args.partitions, found.redis_pid, profiler)
        await replay(run, batches, args.sweep_every)
    report(args, run, shop, batches, outbox, found.label)
    if profiler:
        print_profile(profiler, args.top)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(bench(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

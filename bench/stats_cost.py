"""What the shop-wide statistics cost per batch on a real redis-server.

The bench workload's events (``workload.shop``: 3,700 products, orders of median 15
lines) in batches of ``--batch`` events, as the engine would see them: per batch one
:class:`profiles.Activity` built from the events (a cart's products passed in the order
added), one ``RedisStatistics.record`` call, one uncached ``fetch`` of the products the
batch names, and ``LookupCache.lookups`` as the worker calls it (TTL 30 s, the clock
moving ``--batch / --rate`` seconds per batch, as for a worker keeping up with
``--rate`` events/s). Prints
median and p90 wall time of each, redis-server's own time per call (``INFO
commandstats``), pair updates per batch, the cache's Redis reads per batch and Redis
memory after the run.

    .venv/bin/python bench/stats_cost.py [--events 300000] [--batch 500] [--rate 2000]
        [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import workload
from harness import REPO, command_line, machine

from profiles import (
    Activity,
    Event,
    Keys,
    LookupCache,
    RedisCatalog,
    RedisStatistics,
    load_catalog,
    parse_event,
)
from streams.embedded import start_redis


def _quantiles(seconds: Sequence[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"median {statistics.median(ordered) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms"


def _activity(batch: Sequence[Event], carts: dict[str, dict[str, None]]) -> Activity:
    """The batch's activity; ``carts`` follows each user's cart across batches."""
    activity = Activity()
    for event in batch:
        cart = carts.setdefault(event.user_id, {})
        activity.add_event(event, in_cart=list(cart), local_hour=event.ts.hour)
        if event.type == "add_to_cart":
            cart[event.properties["product_id"]] = None
        elif event.type == "remove_from_cart":
            cart.pop(event.properties["product_id"], None)
        elif event.type == "purchase":
            cart.clear()
    return activity


async def _timed(seconds: list[float], action: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    result = await action(*args)
    seconds.append(time.perf_counter() - started)
    return result


async def run(url: str, events: int, size: int, rate: float) -> None:
    client = aioredis.Redis.from_url(url)
    keys = Keys(f"bench-stats-{os.getpid()}")
    clock = [0]
    stats = RedisStatistics(client, keys=keys, clock_ms=lambda: clock[0])
    wall = [0.0]
    cache = LookupCache(stats, ttl=30, clock=lambda: wall[0])
    await RedisCatalog(client, keys=keys).put(load_catalog(REPO / "config" / "catalog.jsonl"))
    shop = workload.shop(events, end_ms=int(time.time() * 1000))
    stream = [parse_event(value) for _, value in shop.messages()]
    carts: dict[str, dict[str, None]] = {}
    build: list[float] = []
    record: list[float] = []
    fetch: list[float] = []
    cached: list[float] = []
    pairs = []
    before_last = 0
    await client.config_resetstat()
    for start in range(0, len(stream), size):
        batch = stream[start : start + size]
        clock[0] = batch[-1].ts_ms
        wall[0] += len(batch) / rate
        started = time.perf_counter()
        activity = _activity(batch, carts)
        build.append(time.perf_counter() - started)
        pairs.append(len(activity.pairs))
        named = {e.properties["product_id"] for e in batch if "product_id" in e.properties}
        await _timed(record, stats.record, activity)
        await _timed(fetch, stats.fetch, named)
        await _timed(cached, cache.lookups, named)
        await cache.settle()  # a refresh overlaps the next batch in a worker: not timed here
        if len(cached) == len(range(0, len(stream), size)) - 100:
            before_last = cache.reads
    late = cache.reads - before_last
    server = await client.info("commandstats")
    memory = (await client.info("memory"))["used_memory_human"]
    await client.aclose()
    evalsha = server.get("cmdstat_evalsha", {})
    print(f"{len(stream)} workload events in {len(record)} batches of {size}, {rate:.0f}/s\n")
    print(f"- Activity built from a batch: {_quantiles(build)}")
    print(f"- pair updates per batch: median {statistics.median(pairs):.0f}, max {max(pairs)}")
    print(f"- record (one Lua call): {_quantiles(record)}")
    print(f"- fetch, uncached (one Lua call): {_quantiles(fetch)}")
    per_call = evalsha.get("usec_per_call", 0) / 1000
    print(f"- redis-server time per script call (record and fetch): {per_call:.1f} ms")
    waited = f"{cache.reads} reads waited for in {len(cached)} batches"
    print(f"- LookupCache.lookups: {_quantiles(cached)}; {waited}, {late} in the last 100;")
    print(f"  {cache.refresh_reads} background refresh reads")
    print(f"- Redis memory after the run: {memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s (cache clock)")
    parser.add_argument("--redis-url", help="an existing Redis (default: start redis-server)")
    args = parser.parse_args()
    load = os.getloadavg()
    proc = None
    url = args.redis_url
    if url is None:
        proc, url = start_redis()
    try:
        asyncio.run(run(url, args.events, args.batch, args.rate))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    print(f"\n{machine(load)}\n{command_line()}")


if __name__ == "__main__":
    main()

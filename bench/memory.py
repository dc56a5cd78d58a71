"""Worker memory over a long run, and Redis bytes per user (``--mode memory``).

What is measured
    ``--events`` events of the gift-shop workload (default 1,000,000) go to a fresh topic;
    one ``nudge worker`` drains them while the bench samples its resident memory
    (``VmRSS``) against the events it has handled. The figure is RSS after
    ``--checkpoint`` events (default 100,000) against RSS after the last one.

    The workload spans a real year here (``--days 365`` unless given), so timers fall due
    and fire while the worker catches up, as they would have in that year: what Redis
    holds at the end is what a shop holds after a year, not every timer ever scheduled.
    Once the backlog is drained the bench waits until no timer is overdue, then stops
    the worker and weighs every Redis key of the run with ``MEMORY USAGE key SAMPLES 0``:
    per user, the key of their profile and dedup records (the records' bytes count as
    dedup ids, the rest as profile); the timers live in per-partition keys (a sorted set
    and a hash, one entry a user in each), so each partition's two keys are shared out
    among its users in proportion to the bytes of their entries. The figures are the
    average and typical (median) user, and the heaviest one with its number of events;
    then the profile alone, its key less the dedup records (median, p90, and the
    heaviest profile with its number of events).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
from harness import (
    BenchError,
    Deadline,
    Services,
    Worker,
    WorkerSetup,
    handled,
    percentile,
    workers,
)
from throughput import backlog

from profiles import Keys

__all__ = ["memory"]

SAMPLE_SECONDS = 0.5
#: a timer this late counts as overdue (the sweep fires whole seconds, every second)
OVERDUE_MS = 3000
#: the shares of the run at which the RSS series is printed
SERIES = (0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Weights:
    """Redis bytes per user, by kind of key."""

    profile: Counter[str] = field(default_factory=Counter)
    dedup: Counter[str] = field(default_factory=Counter)
    #: a share of the partition's timer keys (fractions of bytes)
    timers: dict[str, float] = field(default_factory=dict)
    unattributed: int = 0

    def total(self, user: str) -> float:
        return self.profile[user] + self.dedup[user] + self.timers.get(user, 0.0)


def sample_rss(worker: Worker, expected: int, deadline: Deadline) -> list[tuple[int, float]]:
    """(events handled, VmRSS MiB) every ``SAMPLE_SECONDS`` until the backlog is done."""
    samples: list[tuple[int, float]] = []
    while True:
        done, rss = handled(worker.metrics()), worker.memory_mib()
        if done and rss:
            samples.append((done, rss))
        if done >= expected:
            return samples
        worker.watch(deadline, f"the worker to drain {expected:,} events ({done:,} so far)")
        time.sleep(SAMPLE_SECONDS)


def settle_timers(client: redis.Redis, keys: Keys, partitions: int, deadline: Deadline) -> float:
    """Wait until no timer is overdue (the sweep caught up); return how long it took."""
    start = time.monotonic()
    while True:
        overdue_ms = int(time.time() * 1000) - OVERDUE_MS
        dues = [keys.timers_due(p) for p in range(partitions)]
        if not sum(client.zcount(due, "-inf", overdue_ms) for due in dues):
            return time.monotonic() - start
        deadline.check("the timer sweep to catch up")
        time.sleep(SAMPLE_SECONDS)


def rss_at(samples: list[tuple[int, float]], events: int) -> tuple[int, float]:
    """The first sample at or after ``events`` handled."""
    return next(((n, rss) for n, rss in samples if n >= events), samples[-1])


def weigh(client: redis.Redis, keys: Keys, users: list[str], partitions: int) -> Weights:
    weights = Weights()
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.memory_usage(keys.profile(user), samples=0)
        pipe.getrange(keys.profile(user), 0, 40)
    replies = iter(pipe.execute())
    for user in users:
        size, head = next(replies) or 0, next(replies)
        # the user's key holds their dedup records too (profiles/stored_user.lua)
        records = int(head.split(b":", 2)[1]) if head else 0
        weights.profile[user] = size - records
        weights.dedup[user] = records
    for partition in range(partitions):
        share_timers(client, keys, partition, weights)
    return weights


def share_timers(client: redis.Redis, keys: Keys, partition: int, weights: Weights) -> None:
    """A partition's timer keys, shared out by the bytes of each user's entries (one
    per user, ``@`` and the user id; see ``profiles/timer_buckets.lua``)."""
    due, data = keys.timers_due(partition), keys.timers_data(partition)
    size = sum(client.memory_usage(key, samples=0) or 0 for key in (due, data))
    raw: Counter[str] = Counter()
    for name, doc in client.hscan_iter(data):
        if name.startswith(b"@"):
            raw[name[1:].decode()] += 2 * len(name) + len(doc) + 8
    total = sum(raw.values())
    if not total:
        weights.unattributed += size
        return
    for user, part in raw.items():
        weights.timers[user] = weights.timers.get(user, 0.0) + size * part / total


def memory(args: argparse.Namespace, svc: Services, work: Path, deadline: Deadline) -> list[str]:
    topic = f"bench.events-{uuid.uuid4().hex[:8]}"
    shop = backlog(args, svc, deadline, [topic])
    checkpoint = args.checkpoint if args.checkpoint < args.events else args.events // 10
    setup = WorkerSetup(svc.bootstrap, svc.redis_url, args.config, topic, work)
    client, keys = redis.Redis.from_url(svc.redis_url), Keys(setup.redis_prefix)
    with workers(setup) as (worker,):
        print(f"draining {args.events:,} events, sampling the worker's RSS ...")
        samples = sample_rss(worker, args.events, deadline)
        peak = worker.memory_mib("VmHWM")
        settled = settle_timers(client, keys, args.partitions, deadline)
    if not samples:
        raise BenchError("the worker's memory could not be read")
    per_user = shop.events_per_user()
    weights = weigh(client, keys, sorted(per_user), args.partitions)
    timers = f"timers            no timer overdue {settled:.1f}s after the last event"
    return [*rss_lines(samples, checkpoint, peak), timers, *redis_lines(weights, per_user)]


def rss_lines(samples: list[tuple[int, float]], checkpoint: int, peak: float | None) -> list[str]:
    (at_n, at_rss), (end_n, end_rss) = rss_at(samples, checkpoint), samples[-1]
    change = (end_rss - at_rss) / at_rss
    series = ", ".join(
        f"{n:,}: {rss:.0f}" for n, rss in (rss_at(samples, int(end_n * s)) for s in SERIES)
    )
    return [
        f"worker RSS        {at_rss:.0f} MiB at {at_n:,} events, {end_rss:.0f} MiB at {end_n:,} "
        f"({change:+.1%}); peak {peak or 0:.0f} MiB",
        f"RSS series (MiB)  {series}",
    ]


def redis_lines(weights: Weights, per_user: Counter[str]) -> list[str]:
    users = sorted(per_user)
    totals = {user: weights.total(user) for user in users}
    heavy = max(users, key=totals.__getitem__)

    def mean(bytes_by_user: Mapping[str, float]) -> float:
        return sum(bytes_by_user.values()) / len(users)

    def middle(bytes_by_user: Mapping[str, float]) -> float:
        return percentile([float(bytes_by_user.get(user, 0)) for user in users], 0.5)

    values = list(totals.values())
    lines = [
        f"Redis per user    average {statistics.mean(values) / 1024:.1f} KB, median "
        f"{percentile(values, 0.5) / 1024:.1f} KB ({percentile(values, 0.5):,.0f} B), p90 "
        f"{percentile(values, 0.9) / 1024:.1f} KB ({len(users):,} users)",
        f"  average split   profile {mean(weights.profile) / 1024:.1f} KB, dedup ids "
        f"{mean(weights.dedup) / 1024:.1f} KB, timers {mean(weights.timers) / 1024:.1f} KB",
        f"  medians         dedup ids {middle(weights.dedup):,.0f} B, timers "
        f"{middle(weights.timers):,.0f} B (each alone; the profile's is below)",
        f"  heaviest        {totals[heavy] / 1024:.1f} KB for {per_user[heavy]:,} events "
        f"({heavy}: profile {weights.profile[heavy] / 1024:.1f}, dedup "
        f"{weights.dedup[heavy] / 1024:.1f}, timers {weights.timers.get(heavy, 0) / 1024:.1f} KB)",
    ]
    if weights.unattributed:
        lines.append(f"  unattributed    {weights.unattributed:,} bytes")
    return [*lines, *profile_lines(weights, per_user)]


def profile_lines(weights: Weights, per_user: Counter[str]) -> list[str]:
    """The profile alone (its key less the dedup records): what the profile model costs,
    whatever the timers."""
    sizes = [float(weights.profile[user]) for user in per_user]
    heavy = max(per_user, key=lambda user: weights.profile[user])
    return [
        f"profile           median {percentile(sizes, 0.5):,.0f} B, p90 "
        f"{percentile(sizes, 0.9):,.0f} B, heaviest {weights.profile[heavy]:,} B for "
        f"{per_user[heavy]:,} events ({heavy})",
    ]

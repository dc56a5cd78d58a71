"""Draining a backlog: nudge against a bare Faust agent (throughput), 2 workers against 1 (scale).

What is measured
    ``--events`` events of the gift-shop workload (``bench/workload.py``: every shipped
    rule gets work, timers included) are published, keyed by ``user_id``, to fresh topics
    with the same partition count. Consumers then read them as a backlog, one run after
    the other so they never compete for CPU; each rate is the catch-up rate: events done
    between the first observed progress and the last event, divided by that time.

throughput
    1. **baseline**: a bare Faust agent that only reads its topic in batches
       (``stream.take(500, within=0.2)``) and counts, i.e. the floor cost of Faust +
       aiokafka + the broker on this machine;
    2. **nudge**: the real ``nudge worker`` console script (parse, dedup, Redis profile
       update, rule evaluation, rendering, send requests to Kafka, offset acks), with its
       progress read from ``/metrics`` (events + duplicates + dead letters).

    The figure is the ratio nudge / baseline; the worker's peak resident memory
    (``VmHWM``) is read just before it is stopped. Beside it, CPU per event counted
    between the same two moments: the bare agent's own (``time.process_time`` in it), and
    during the worker's run the worker's, tansu's and redis-server's (``/proc``, for the
    services this run started). ``--baseline-take take_events`` makes the bare agent read
    as the worker does (``stream.take_events``).

scale
    The same backlog for one ``nudge worker``, then for two in one consumer group (one
    fresh topic, group and Redis prefix each). The two-worker clock starts at the first
    progress once both workers own partitions (what one did alone before the group
    settled is left out); the figure is the ratio of the two rates.

Why a ratio
    Absolute events/s depend on the machine, the broker (tansu with memory storage here,
    not a tuned Kafka cluster) and what else is running. Running the reference in the same
    run, on the same broker, with the same data, cancels most of that out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import workload
from harness import (
    POLL_SECONDS,
    BenchError,
    Deadline,
    Services,
    Worker,
    WorkerSetup,
    cpu_seconds,
    create_topics,
    handled,
    memory_mib,
    publish,
    stop,
    workers,
)

__all__ = ["scale", "throughput"]

#: The bare Faust agent, run in its own process: argv is
#: app_id bootstrap topic expected_count result_file data_dir take_method
#: (``take``, the reference, or ``take_events``, the worker's way of reading)
BASELINE_APP = """
import json, os, sys, time
import faust

app_id, bootstrap, topic_name, expected, result_file, data_dir, take = sys.argv[1:8]
expected = int(expected)
app = faust.App(
    app_id,
    broker=f"kafka://{bootstrap}",
    store="memory://",
    key_serializer="raw",
    value_serializer="raw",
    broker_session_timeout=10,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    datadir=data_dir,
    autodiscover=False,
)
topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
seen = {"count": 0, "first": None, "first_count": 0, "first_cpu": 0.0}


@app.agent(topic)
async def count(stream):
    async for batch in getattr(stream, take)(500, within=0.2):
        now = time.time()
        seen["count"] += len(batch)
        if seen["first"] is None:
            seen["first"], seen["first_count"] = now, seen["count"]
            seen["first_cpu"] = time.process_time()
        if seen["count"] >= expected:
            with open(result_file + ".tmp", "w") as out:
                json.dump({**seen, "last": now, "last_cpu": time.process_time()}, out)
            os.replace(result_file + ".tmp", result_file)


faust.Worker(app, loglevel="WARNING", redirect_stdouts=False).execute_from_commandline()
"""


@dataclass
class Measurement:
    """Progress of one consumer run: first observed progress to the last event."""

    events: int
    first_count: int
    first: float
    last: float
    peak_rss_mib: float | None = None
    extra: dict[str, int] = field(default_factory=dict)
    #: CPU seconds of each process (consumers, tansu, redis) between the two observations
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_line(self) -> str:
        """CPU per event counted, by process."""
        counted = max(self.events - self.first_count, 1)
        return ", ".join(f"{name} {spent / counted * 1e6:,.0f}" for name, spent in self.cpu.items())

    @property
    def seconds(self) -> float:
        return max(self.last - self.first, 1e-9)

    @property
    def rate(self) -> float:
        # the events counted at the first observation finished before the clock started
        counted = self.events - self.first_count
        if counted <= 0:
            raise BenchError("all events were done at the first observation: use more --events")
        return counted / self.seconds


def shop_workload(args: argparse.Namespace) -> workload.Workload:
    span_ms = int(args.days * workload.DAY_S * 1000) if args.days else None
    return workload.shop(
        args.events, seed=args.seed, end_ms=int(time.time() * 1000), span_ms=span_ms
    )


def backlog(
    args: argparse.Namespace, svc: Services, deadline: Deadline, names: list[str]
) -> workload.Workload:
    """Publish the workload to fresh topics ``names``."""
    shop = shop_workload(args)
    shoppers = f"{len(shop):,} events of {shop.users:,} shoppers"
    print(f"publishing {shoppers} to {', '.join(names)} ...")

    async def setup() -> None:
        await create_topics(svc.bootstrap, names, args.partitions)
        await publish(svc.bootstrap, names, shop.messages())

    asyncio.run(asyncio.wait_for(setup(), timeout=deadline.remaining()))
    return shop


# --- consumers --------------------------------------------------------------------------


def run_baseline(
    svc: Services,
    topic: str,
    expected: int,
    work: Path,
    deadline: Deadline,
    take: str = "take",
) -> Measurement:
    """The bare agent in its own process; it writes its timing to a file when done."""
    script = work / "baseline_app.py"
    script.write_text(BASELINE_APP)
    result, log_path = work / "baseline.json", work / "baseline.log"
    app_id = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    data_dir = str(work / "baseline-data")
    args = [app_id, svc.bootstrap, topic, str(expected), str(result), data_dir, take]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        while not result.exists():
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"baseline agent exited with {proc.returncode}:\n{tail}")
            deadline.check(f"baseline agent ({expected} events)")
            time.sleep(POLL_SECONDS)
        data = json.loads(result.read_text())
        rss = memory_mib(proc.pid, "VmHWM")
    finally:
        stop(proc)
    measured = Measurement(data["count"], data["first_count"], data["first"], data["last"], rss)
    measured.cpu["agent"] = data["last_cpu"] - data["first_cpu"]
    return measured


def drain(
    found: list[Worker],
    partitions: int,
    expected: int,
    deadline: Deadline,
    services: dict[str, int] | None = None,
) -> Measurement:
    """Poll the workers until they handled ``expected`` messages between them.

    The clock starts at the first progress seen once every worker owns a partition and
    together they own them all. The CPU of the workers and of ``services`` (name -> pid)
    is read at the same two moments.
    """
    pids = {worker.name: worker.proc.pid for worker in found} | (services or {})
    first: tuple[float, int] | None = None
    cpu: dict[str, float] = {}
    while True:
        totals = [worker.metrics() for worker in found]
        now, done = time.time(), sum(handled(t) for t in totals)
        for worker in found:
            worker.watch(deadline, f"{len(found)} worker(s): {done:,}/{expected:,} events")
        if first is None and done and balanced(found, partitions):
            first = (now, done)
            cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if first is not None and done >= expected:
            extra = {name: sum(t[name] for t in totals if t) for name in totals[0] or {}}
            spent = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
            return Measurement(done, first[1], first[0], now, extra=extra, cpu=spent)
        time.sleep(POLL_SECONDS)


def balanced(found: list[Worker], partitions: int) -> bool:
    if len(found) == 1:
        return True
    owned = [worker.partitions() or 0 for worker in found]
    return all(owned) and sum(owned) == partitions


def run_workers(
    setup: WorkerSetup,
    count: int,
    args: argparse.Namespace,
    deadline: Deadline,
    services: dict[str, int] | None = None,
) -> Measurement:
    with workers(setup, count) as found:
        measured = drain(found, args.partitions, args.events, deadline, services)
        measured.peak_rss_mib = max(worker.memory_mib("VmHWM") or 0 for worker in found)
    return measured


# --- the two modes ------------------------------------------------------------------------


def throughput(
    args: argparse.Namespace, svc: Services, work: Path, deadline: Deadline
) -> list[str]:
    unique = uuid.uuid4().hex[:8]
    base_topic, nudge_topic = f"bench.baseline-{unique}", f"bench.events-{unique}"
    shop = backlog(args, svc, deadline, [base_topic, nudge_topic])
    print("baseline: bare Faust agent ...")
    baseline = run_baseline(svc, base_topic, args.events, work, deadline, args.baseline_take)
    print(f"baseline: {baseline.rate:,.0f} events/s; nudge worker ...")
    setup = WorkerSetup(svc.bootstrap, svc.redis_url, args.config, nudge_topic, work)
    nudge = run_workers(setup, 1, args, deadline, svc.pids)
    counts = ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in nudge.extra.items())
    return [
        _events_line(shop, args.partitions),
        f"baseline (Faust)  {baseline.rate:>9,.0f} events/s  ({baseline.seconds:.1f}s, "
        f"stream.{args.baseline_take})",
        f"nudge worker      {nudge.rate:>9,.0f} events/s  ({nudge.seconds:.1f}s)",
        f"ratio             nudge runs at {nudge.rate / baseline.rate:.2f}x a bare Faust agent",
        f"peak memory       nudge worker {_mib(nudge.peak_rss_mib)}, "
        f"bare agent {_mib(baseline.peak_rss_mib)} (VmHWM)",
        f"nudge counters    {counts}",
        f"CPU us/event      bare agent: {baseline.cpu_line()}; worker run: {nudge.cpu_line()}",
    ]


def scale(args: argparse.Namespace, svc: Services, work: Path, deadline: Deadline) -> list[str]:
    unique = uuid.uuid4().hex[:8]
    topics = [f"bench.scale1-{unique}", f"bench.scale2-{unique}"]
    shop = backlog(args, svc, deadline, topics)
    rates = []
    for count, topic in zip((1, 2), topics, strict=True):
        print(f"{count} worker(s) ...")
        setup = WorkerSetup(
            svc.bootstrap, svc.redis_url, args.config, topic, work / f"scale{count}"
        )
        setup.work.mkdir()
        measured = run_workers(setup, count, args, deadline)
        rates.append(measured)
        print(f"{count} worker(s): {measured.rate:,.0f} events/s")
    one, two = rates
    return [
        _events_line(shop, args.partitions),
        f"1 worker          {one.rate:>9,.0f} events/s  ({one.seconds:.1f}s)",
        f"2 workers         {two.rate:>9,.0f} events/s  ({two.seconds:.1f}s, clock started with "
        f"{two.first_count:,} events done)",
        f"ratio             2 workers run at {two.rate / one.rate:.2f}x one",
        f"peak memory       {_mib(one.peak_rss_mib)} (1 worker), {_mib(two.peak_rss_mib)} "
        "(largest of 2) (VmHWM)",
    ]


def _events_line(shop: workload.Workload, partitions: int) -> str:
    shoppers = f"{shop.users:,} shoppers"
    return f"events            {len(shop):,} ({shoppers}, {partitions} partitions)"


def _mib(value: float | None) -> str:
    return f"{value:.0f} MiB" if value else "n/a"


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--mode", "throughput", *sys.argv[1:]]))

"""nudge benchmarks on a real broker and Redis, one mode per run.

Modes (each module's docstring says exactly what it times):

- ``throughput`` (bench/throughput.py): a backlog through ``nudge worker`` against a bare
  Faust agent on the same broker; the ratio. ``make bench``.
- ``scale`` (bench/throughput.py): the same backlog for 1 and for 2 workers in one
  consumer group; the ratio.
- ``latency`` (bench/latency.py): signups at a steady ``--rate`` for ``--seconds``; event
  time to the welcome send request on its topic, p50/p95/p99.
- ``timers`` (bench/timers.py): ``--timers`` cart timers due at one moment (or spread
  over ``--spread`` seconds); drain rate and lateness.
- ``memory`` (bench/memory.py): worker RSS over a long run, Redis bytes per user.

Every mode starts its own tansu broker and redis-server on free ports and stops them at
the end; ``--bootstrap`` / ``--redis-url`` use existing ones instead (the run then leaves
its ``bench.*`` topics and ``bench-*`` Redis keys behind). ``--config`` picks the rules the
worker loads; other ``NUDGE_*`` variables in the environment (e.g. ``NUDGE_BATCH_SIZE``)
reach it. Every wait is bounded by ``--timeout``; on a timeout it exits non-zero and says
what it was waiting for, with the end of the worker's log. The engine alone, without a
broker, is ``bench/engine.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import latency
import memory
import throughput
import timers
from harness import REPO, BenchError, Deadline, Services, command_line, machine, services

Mode = Callable[[argparse.Namespace, Services, Path, Deadline], list[str]]

MODES: dict[str, Mode] = {
    "throughput": throughput.throughput,
    "scale": throughput.scale,
    "latency": latency.latency,
    "timers": timers.timers,
    "memory": memory.memory,
}

#: --events, --days and --timeout when not given
DEFAULT_EVENTS = {"memory": 1_000_000}
DEFAULT_DAYS = {"memory": 365.0}
DEFAULT_TIMEOUT = {"memory": 3600.0, "timers": 1200.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=list(MODES), default="throughput")
    parser.add_argument(
        "--events", type=int, help="workload size (throughput, scale: 100,000; memory: 1,000,000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    parser.add_argument(
        "--days", type=float, help="workload's event-time span (memory: 365; others: 2 ms/event)"
    )
    parser.add_argument("--partitions", type=int, default=8, help="partitions per events topic")
    parser.add_argument("--rate", type=float, default=500, help="latency: events per second")
    parser.add_argument("--seconds", type=float, default=30, help="latency: how long")
    parser.add_argument("--timers", type=int, default=100_000, help="timers: how many")
    parser.add_argument(
        "--spread",
        default="0,60",
        help="timers: seconds their due times spread over, one run per value (default 0,60)",
    )
    parser.add_argument(
        "--checkpoint", type=int, default=100_000, help="memory: RSS compared at this many events"
    )
    parser.add_argument(
        "--baseline-take",
        choices=["take", "take_events"],
        default="take",
        help="throughput: how the bare agent reads its batches (the worker uses take_events)",
    )
    parser.add_argument("--timeout", type=float, help="seconds for the whole run (default 600)")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting tansu")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    parser.add_argument(
        "--config", type=Path, default=REPO / "config", help="rules directory for the worker"
    )
    args = parser.parse_args(argv)
    args.events = args.events or DEFAULT_EVENTS.get(args.mode, 100_000)
    args.days = args.days or DEFAULT_DAYS.get(args.mode)
    args.timeout = args.timeout or DEFAULT_TIMEOUT.get(args.mode, 600.0)
    try:
        args.spread = [float(s) for s in args.spread.split(",")]
    except ValueError:
        parser.error("--spread takes seconds separated by commas, e.g. 0,60")
    if min(args.events, args.partitions, args.timers, args.rate, args.seconds) <= 0:
        parser.error("--events, --partitions, --timers, --rate and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    deadline = Deadline(args.timeout)
    with tempfile.TemporaryDirectory(prefix="nudge-bench-") as tmp:
        work = Path(tmp)
        try:
            with services(args.bootstrap, args.redis_url, work) as svc:
                figures = MODES[args.mode](args, svc, work, deadline)
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

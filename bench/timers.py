"""Durable timers falling due together (``--mode timers``).

What is measured
    One ``nudge worker`` (shipped config, so the cart wait is the shipped one) owns a
    fresh topic. ``--timers`` new users sign up (email consent, a zone where it is early
    afternoon); once the worker has applied them, each adds an item to a cart whose
    ``ts`` is chosen so that its cart_abandonment timer (``ts + wait``) falls due a little
    after the worker will have applied every cart: all at one moment (``--spread 0``) or
    evenly over ``--spread`` seconds. The lead time is twice what the signups took, so
    the run reports how long before the first due time the carts were all applied.

    Each cart_abandonment send request read back gives a lateness: its Kafka record
    timestamp (set by the worker's producer) minus its timer's due time. The drain rate
    is timers / (last send's record time - first due time). The sweep fires whole
    seconds every ``NUDGE_TIMER_INTERVAL`` (1 s), so about a second of lateness is by
    design.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import orjson
import workload
from harness import (
    POLL_SECONDS,
    BenchError,
    Deadline,
    Services,
    Worker,
    WorkerSetup,
    create_topics,
    handled,
    percentile,
    publish,
    read_records,
    wait_ready,
    workers,
)

from triggers import AbsenceRule, load_rules

__all__ = ["timers"]

RULE = "cart_abandonment"
MIN_LEAD_SECONDS = 10.0
#: once every timer fired, how long to wait for send requests that may still come
QUIET_SECONDS = 5.0


@dataclass
class Drain:
    """Due times of the timers and, as their send requests arrive, record times."""

    due_ms: dict[str, int] = field(default_factory=dict)
    fired_ms: list[int] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)


def cart_wait(config: Path) -> timedelta:
    rule = load_rules(config).rule(RULE)
    if not isinstance(rule, AbsenceRule):
        raise BenchError(f"the config in {config} has no absence rule {RULE!r}")
    return rule.wait


def wait_handled(worker: Worker, count: int, deadline: Deadline) -> float:
    """Poll until ``worker`` handled ``count`` messages; return when (epoch seconds)."""
    while (done := handled(worker.metrics())) < count:
        worker.watch(deadline, f"the worker to apply {count:,} events ({done:,} so far)")
        time.sleep(POLL_SECONDS)
    return time.time()


def signups(setup: WorkerSetup, users: list[str], ts_ms: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            user.encode(),
            orjson.dumps(
                workload.signup_event(
                    user, event_id=f"{user}-signup", ts_ms=ts_ms, zone_at_ms=int(time.time() * 1000)
                )
            ),
        )
        for user in users
    ]


def carts(
    users: list[str], first_due_ms: int, spread_ms: int, wait_ms: int, drain: Drain
) -> list[tuple[bytes, bytes]]:
    messages = []
    for n, user in enumerate(users):
        due_ms = first_due_ms + spread_ms * n // max(len(users) - 1, 1)
        event_id = f"{user}-cart"
        event = workload.cart_event(
            user, event_id=event_id, ts_ms=due_ms - wait_ms, cart_id=f"cart-{user}"
        )
        drain.due_ms[event_id] = due_ms
        messages.append((user.encode(), orjson.dumps(event)))
    return messages


async def collect(worker: Worker, setup: WorkerSetup, drain: Drain, deadline: Deadline) -> None:
    """Read the rule's send requests until every timer fired and no more arrive."""
    last_arrival, fired = time.monotonic(), 0
    async for record in read_records(setup.bootstrap, setup.send_topic, deadline):
        now = time.monotonic()
        if record is not None:
            send = orjson.loads(record.value)
            due_ms = drain.due_ms.get(send["trigger_event_id"])
            if send["rule_id"] == RULE and due_ms is not None:
                drain.fired_ms.append(record.timestamp)
                drain.lateness.append(record.timestamp - due_ms)
                last_arrival = now
        if len(drain.fired_ms) >= len(drain.due_ms):
            return
        if record is None:
            fired = (worker.metrics() or {}).get("timers_fired", fired)
            if fired >= len(drain.due_ms) and now - last_arrival > QUIET_SECONDS:
                return
            worker.watch(
                deadline, f"{len(drain.due_ms):,} timers ({len(drain.fired_ms):,} sends so far)"
            )


def variant(
    args: argparse.Namespace, svc: Services, work: Path, deadline: Deadline, spread: float
) -> list[str]:
    wait_ms = int(cart_wait(args.config).total_seconds() * 1000)
    unique = uuid.uuid4().hex[:8]
    topic = f"bench.events-{unique}"
    asyncio.run(create_topics(svc.bootstrap, [topic], args.partitions))
    setup = WorkerSetup(svc.bootstrap, svc.redis_url, args.config, topic, work / f"timers-{unique}")
    setup.work.mkdir()
    users = [f"user-{unique}-{n:07d}" for n in range(args.timers)]
    drain = Drain()
    with workers(setup) as (worker,):
        wait_ready([worker], args.partitions, deadline)
        started = time.time()
        signed_up_ms = int(started * 1000) - wait_ms - 5 * 60_000  # before every cart
        asyncio.run(publish(svc.bootstrap, [topic], signups(setup, users, signed_up_ms)))
        lead = max(MIN_LEAD_SECONDS, 2 * (wait_handled(worker, len(users), deadline) - started))
        if lead * 1000 > wait_ms - 60_000:
            raise BenchError(
                f"applying {len(users):,} carts needs ~{lead:.0f}s, more than the cart wait allows"
            )
        first_due_ms = int((time.time() + lead) * 1000)
        print(f"spread {spread:g}s: {len(users):,} carts due from {lead:.0f}s from now ...")
        messages = carts(users, first_due_ms, int(spread * 1000), wait_ms, drain)
        asyncio.run(publish(svc.bootstrap, [topic], messages))
        applied = wait_handled(worker, 2 * len(users), deadline)
        asyncio.run(collect(worker, setup, drain, deadline))
    return report(drain, spread, first_due_ms - applied * 1000)


def report(drain: Drain, spread: float, margin_ms: float) -> list[str]:
    if not drain.fired_ms:
        raise BenchError(f"no {RULE} send request arrived: see the worker's log")
    first_due = min(drain.due_ms.values())
    seconds = max(max(drain.fired_ms) - first_due, 1) / 1000
    due = "at one moment" if not spread else f"spread over {spread:g}s"
    rate = f"{len(drain.fired_ms) / seconds:,.0f} timers/s"
    pace = f"{rate} (the spread sets the pace)" if spread else rate
    quantiles = ", ".join(
        f"p{q} {percentile(drain.lateness, q / 100) / 1000:,.2f}s" for q in (50, 95, 99)
    )
    applied = f"applied {margin_ms / 1000:.1f}s before the first due time"
    if margin_ms < 0:
        applied = (
            f"applied {-margin_ms / 1000:.1f}s AFTER the first due time (lateness includes it)"
        )
    return [
        f"timers            {len(drain.due_ms):,} {RULE} timers due {due}; {applied}",
        f"fired             {len(drain.fired_ms):,} send requests in {seconds:.1f}s after the "
        f"first due time: {pace}",
        f"lateness          {quantiles}, max {max(drain.lateness) / 1000:,.2f}s",
    ]


def timers(args: argparse.Namespace, svc: Services, work: Path, deadline: Deadline) -> list[str]:
    lines: list[str] = []
    for spread in args.spread:
        lines += variant(args, svc, work, deadline, spread)
    return lines

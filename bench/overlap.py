"""Would the engine's pure work, moved to another process, overlap with Faust? (issue 7)

What is measured
    The batch stream ``bench/engine.py`` records (the same workload, partitions from the
    producer's murmur2, batches of 500, interleaved across partitions) through
    ``Engine.process`` on a redis-server started here (or ``--redis-url``), the
    collector tuned as the worker tunes it. Per batch, the engine's CPU
    (``time.process_time``) is split in two:

    - **I/O**, what the agent would keep: CPU spent while a store, lookup or statistics
      call is in flight (the profile load and save scripts, the suppression list, timer
      changes, the lookup cache, the statistics recorded behind the batch: redis-py's
      command packing and reply parsing, the event loop), less the pure parts inside them;
    - **pure**, what a worker process could do: the rest. Parsing events, the fold, rules,
      rendering, scoring, plus the stored profiles' parse (inside the load) and dump
      (inside the save) and encoding every send request and decision (the outbox here
      only encodes; a real worker then produces them, which stays on the agent).

    Then what shipping a batch to another process and back costs, measured on copies
    outside the timed engine work: ``pickle`` of the inputs (the raw messages, the
    loaded snapshots, the batch's lookups and clock) and of the outputs (every user's
    step: new profile, timer changes, sends, decisions, what the statistics record), both
    dumped and loaded, with their bytes, in three forms: ``parsed`` (profiles as parsed
    objects), ``stored`` (profiles as the stored, deflated bytes the Redis scripts carry;
    the child parses and dumps them) and ``lean`` (stored, and the lookups stay in the
    child, which sends back the batch's statistics ``Activity`` instead of every observed
    event). And a real round trip of each batch's bytes through a one-process
    ``ProcessPoolExecutor`` (the child loads the inputs and sends back the outputs'
    bytes), timed: the agent's CPU and wall per batch, the child's CPU.

The estimate
    With the pure work in a child process, the agent's thread costs per event what the
    worker spends outside ``Engine.process`` (``--outside-us``: Faust's consumption,
    producing, acks, metrics) + the I/O + its side of shipping; the child the pure work +
    its side of shipping. Given ``--outside-us`` and ``--services-us`` (tansu and
    redis-server CPU per event beside the worker), both read from a throughput run's
    ``CPU us/event`` line, it prints the rate each limit allows on ``--cores`` cores: the
    agent's thread, the child, all the CPU spread over the cores, and (one pipeline, the
    same users in consecutive batches) the child and the I/O in series. It assumes
    perfect overlap: an upper bound.

Run it::

    .venv/bin/python bench/overlap.py [--events 20000] [--outside-us 240 --services-us 100]
"""

from __future__ import annotations

import argparse
import asyncio
import copyreg
import os
import pickle
import statistics
import sys
import time
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import engine as engine_bench
import workload
from harness import REPO, command_line, machine

import profiles.redis_store
import triggers.engine
from profiles import Activity, load_catalog
from streams.cli import tune_gc
from streams.settings import Settings
from triggers import Engine, load_rules

#: store and lookup calls whose CPU counts as the agent's I/O, by attribute of the engine
IO_CALLS = {
    "profiles": ("load", "save", "counters"),
    "suppression": ("erased", "apply"),
    "timers": ("apply",),
    "statistics": ("record", "forget"),
    "lookups": ("lookups",),
}


@dataclass
class Ledger:
    """CPU seconds by part, for the whole run; ``io`` counts while any I/O call is open."""

    total: float = 0.0
    io: float = 0.0
    nested_pure: float = 0.0
    encode: float = 0.0
    excluded: float = 0.0
    by_call: Counter[str] = field(default_factory=Counter)
    open_calls: int = 0
    opened_at: float = 0.0

    @property
    def pure(self) -> float:
        return self.total - self.excluded - (self.io - self.nested_pure)

    @property
    def agent_io(self) -> float:
        return self.io - self.nested_pure


@dataclass
class Shipped:
    """One batch's inputs and outputs, as they would cross to the worker process."""

    messages: list[tuple[bytes | None, bytes | None, int, int]]
    snapshots: dict[str, Any] = field(default_factory=dict)
    stored: dict[str, bytes] = field(default_factory=dict)
    #: the user's timers overdue at the batch's first event, fired in the fold
    overdue: dict[str, Any] = field(default_factory=dict)
    lookups: Any = None
    now: Any = None
    steps: dict[str, Any] = field(default_factory=dict)


class Tap:
    """Wraps the engine's ports and pure helpers to split CPU and capture what crosses."""

    def __init__(self, engine: Engine) -> None:
        self.ledger = Ledger()
        self.batch: Shipped | None = None
        self._wrap_ports(engine)
        self._wrap_pure()

    @contextmanager
    def excluded(self) -> Iterator[None]:
        started = time.process_time()
        try:
            yield
        finally:
            self.ledger.excluded += time.process_time() - started

    def _io(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        ledger = self.ledger

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            if ledger.open_calls == 0:
                ledger.opened_at = started
            ledger.open_calls += 1
            try:
                return await call(*args, **kwargs)
            finally:
                ledger.open_calls -= 1
                now = time.process_time()
                ledger.by_call[name] += now - started
                if ledger.open_calls == 0:
                    ledger.io += now - ledger.opened_at

        return timed

    def _wrap_ports(self, engine: Engine) -> None:
        for port, calls in IO_CALLS.items():
            target = getattr(engine, port)
            if target is None:
                continue
            for call in calls:
                setattr(target, call, self._io(f"{port}.{call}", getattr(target, call)))
        engine.settle = self._io("statistics.settle", engine.settle)
        lookups = engine._lookups

        async def captured_lookups(*args: Any) -> Any:
            found = await lookups(*args)
            if self.batch is not None:
                self.batch.lookups = found
            return found

        engine._lookups = captured_lookups
        publish = engine.outbox.publish

        async def encoded(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return await publish(*args, **kwargs)
            finally:
                self.ledger.encode += time.process_time() - started

        engine.outbox.publish = encoded

    def _pure(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        ledger = self.ledger

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                spent = time.process_time() - started
                ledger.by_call[name] += spent
                if ledger.open_calls:
                    ledger.nested_pure += spent

        return timed

    def _wrap_pure(self) -> None:
        load_profile = self._pure("pure: stored profile parse", profiles.redis_store.load_profile)
        dump_profile = self._pure("pure: stored profile dump", profiles.redis_store.dump_profile)
        apply_user_events = triggers.engine.apply_user_events

        def loading(user_id: str, stored: bytes) -> Any:
            if self.batch is not None:
                self.batch.stored[user_id] = stored
            return load_profile(user_id, stored)

        def applying(
            rules: Any, snapshot: Any, events: Any, now: Any, lookups: Any, overdue: Any
        ) -> Any:
            batch = self.batch
            if batch is not None:
                with self.excluded():  # the fold changes the profile it is given: copy first
                    batch.snapshots[events[0][0].user_id] = pickle.dumps(snapshot)
                    if overdue:
                        batch.overdue[events[0][0].user_id] = overdue
                    batch.now = now
            step = apply_user_events(rules, snapshot, events, now, lookups, overdue)
            if batch is not None:
                batch.steps[events[0][0].user_id] = step
            return step

        profiles.redis_store.load_profile = loading
        profiles.redis_store.dump_profile = dump_profile
        triggers.engine.apply_user_events = applying


# --- shipping ----------------------------------------------------------------------------


def _proxy(mapping: types.MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _read_only, (dict(mapping),)


def _read_only(mapping: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(mapping)


#: read-only views in the lookups (and profiles) cross as the dicts behind them
copyreg.pickle(types.MappingProxyType, _proxy)


@dataclass
class Crossing:
    """Pickle CPU (seconds) and bytes of every batch, one form of the profiles."""

    dump_in: list[float] = field(default_factory=list)
    load_in: list[float] = field(default_factory=list)
    dump_out: list[float] = field(default_factory=list)
    load_out: list[float] = field(default_factory=list)
    bytes_in: list[int] = field(default_factory=list)
    bytes_out: list[int] = field(default_factory=list)
    payloads: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: bytes by part of the inputs and the outputs, summed over the batches
    parts: Counter[str] = field(default_factory=Counter)


def _cpu(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.process_time()
    value = call()
    return value, time.process_time() - started


#: how a batch crosses: profiles parsed or as stored bytes; ``lean`` also keeps the
#: lookups in the child (shipped once per refresh of the lookup cache, not per batch) and
#: sends back the batch's statistics ``Activity`` instead of every observed event
FORMS = ("parsed", "stored", "lean")


def cross(batch: Shipped, crossing: Crossing, form: str, config: Any) -> None:
    """Pickle ``batch`` as it would go to the worker process and back."""
    snapshots = {user: pickle.loads(snap) for user, snap in batch.snapshots.items()}
    steps: dict[str, Any] = {user: replace(s, probed=None) for user, s in batch.steps.items()}
    lookups, extra = batch.lookups, None
    if form != "parsed":  # the stored bytes instead of the parsed profile, both ways
        snapshots = {
            user: (replace(snap, profile=None), batch.stored.get(user))
            for user, snap in snapshots.items()
        }
        steps = {
            user: (
                replace(step, profile=None),
                profiles.redis_store.dump_profile(step.profile) if step.profile else None,
            )
            for user, step in steps.items()
        }
    if form == "lean":
        lookups, extra = None, Activity(config)
        for user, (step, stored) in steps.items():
            for seen in step.observed:
                extra.add_event(seen.event, in_cart=seen.in_cart, local_hour=seen.local_hour)
            steps[user] = (replace(step, observed=[]), stored)
    inputs = (batch.messages, snapshots, batch.overdue, lookups, batch.now)
    outputs = (steps, extra)
    data_in, spent = _cpu(lambda: pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL))
    crossing.dump_in.append(spent)
    crossing.load_in.append(_cpu(lambda: pickle.loads(data_in))[1])
    data_out, spent = _cpu(lambda: pickle.dumps(outputs, protocol=pickle.HIGHEST_PROTOCOL))
    crossing.dump_out.append(spent)
    crossing.load_out.append(_cpu(lambda: pickle.loads(data_out))[1])
    crossing.bytes_in.append(len(data_in))
    crossing.bytes_out.append(len(data_out))
    crossing.payloads.append((data_in, data_out))
    sizes = crossing.parts
    for name, part in zip(("messages", "snapshots", "overdue", "lookups"), inputs, strict=False):
        sizes[f"in: {name}"] += _size(part)
    for step in steps.values():
        profile = step[1] if isinstance(step, tuple) else step.profile
        step = step[0] if isinstance(step, tuple) else step
        sizes["out: profile"] += _size(profile)
        for name in ("observed", "decisions", "sends", "ops"):
            sizes[f"out: {name}"] += _size(getattr(step, name))
    if extra is not None:
        sizes["out: activity"] += _size(extra)


def _size(value: Any) -> int:
    return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def child_turn(data_in: bytes, data_out: bytes) -> tuple[bytes, float]:
    """In the worker process: load the inputs, hand back the outputs' bytes."""
    started = time.process_time()
    pickle.loads(data_in)
    return data_out, time.process_time() - started


def round_trips(payloads: list[tuple[bytes, bytes]]) -> tuple[float, float, float]:
    """Agent CPU, agent wall and child CPU (seconds, summed) of every batch's round trip,
    loading the outputs included on the agent's side."""
    agent_cpu = wall = child_cpu = 0.0
    with ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(child_turn, b"\x80\x05N.", b"").result()  # start the child first
        for data_in, data_out in payloads:
            started, cpu = time.perf_counter(), time.process_time()
            back, spent = pool.submit(child_turn, data_in, data_out).result()
            pickle.loads(back)
            agent_cpu += time.process_time() - cpu
            wall += time.perf_counter() - started
            child_cpu += spent
    return agent_cpu, wall, child_cpu


# --- the run -----------------------------------------------------------------------------


@dataclass
class Replayed:
    """The engine's run over the recorded stream, with what each batch would ship."""

    ledger: Ledger
    shipped: list[Shipped]
    per_batch: list[float]
    events: int
    label: str
    config: Any
    outbox: engine_bench.EncodingOutbox


async def replay(args: argparse.Namespace) -> Replayed:
    span_ms = int(args.days * workload.DAY_S * 1000) if args.days else None
    end_ms = int(engine_bench.END.timestamp() * 1000)
    shop = workload.shop(args.events, seed=args.seed, end_ms=end_ms, span_ms=span_ms)
    batches = engine_bench.record(
        shop, partitions=args.partitions, size=args.batch, fetch="interleaved"
    )
    rules = load_rules(args.config)
    catalog = load_catalog(args.config / "catalog.jsonl")
    clock, outbox = engine_bench.Clock(), engine_bench.EncodingOutbox()
    async with engine_bench.stores(args.redis_url, True) as found:
        stats, lookups = await found.statistics(catalog, rules.config.recommendations, clock)
        engine = Engine(
            rules=rules,
            profiles=found.profiles,
            timers=found.timers,
            outbox=outbox,
            clock=clock,
            lookups=lookups,
            statistics=stats,
        )
        tap = Tap(engine)
        run = Replayed(tap.ledger, [], [], 0, found.label, rules.config.recommendations, outbox)
        for batch in batches:
            clock.advance_ms(batch.newest_ms)
            tap.batch = Shipped([(m.value, m.key, m.partition, m.offset) for m in batch.messages])
            excluded = tap.ledger.excluded
            started = time.process_time()
            result = await engine.process(batch.messages)
            spent = time.process_time() - started
            tap.ledger.total += spent
            run.per_batch.append(spent - (tap.ledger.excluded - excluded))
            run.events += result.events + result.duplicates
            run.shipped.append(tap.batch)
        await engine.settle()
    return run


def us(seconds: float, events: int) -> float:
    return seconds / max(events, 1) * 1e6


def report(args: argparse.Namespace) -> None:
    tune_gc(Settings.model_fields["gc_threshold"].default)  # as a worker does
    run = asyncio.run(replay(args))
    ledger, events = run.ledger, run.events
    print(f"stream            {events:,} events in {len(run.shipped):,} batches of <= {args.batch}")
    print(f"stores            {run.label}")
    sends, decisions = sum(run.outbox.sends.values()), sum(run.outbox.decisions.values())
    print(f"output            {sends:,} send requests, {decisions:,} decisions (to be produced)")
    io, pure = us(ledger.agent_io, events), us(ledger.pure, events)
    print(
        f"engine CPU        {us(ledger.total - ledger.excluded, events):6.1f} us/event "
        f"(median batch {statistics.median(run.per_batch) * 1e3:.1f} ms)"
    )
    print(f"  I/O (agent)     {io:6.1f} us/event")
    print(
        f"  pure (movable)  {pure:6.1f} us/event, of which encoding sends and decisions "
        f"{us(ledger.encode, events):.1f}"
    )
    for name, spent in sorted(ledger.by_call.items(), key=lambda item: -item[1]):
        print(f"    {name:<30} {us(spent, events):6.1f} us/event")
    sides = {form: ship(run, form, io, pure) for form in FORMS}
    if args.outside_us is not None:
        estimate(args, io, pure, sides)
    print(f"machine           {machine(args.load)}")
    print(f"command           {command_line()}")


def ship(run: Replayed, form: str, io: float, pure: float) -> tuple[float, float]:
    """Print what crossing in ``form`` costs; return (agent, child) CPU per event."""
    events, ledger = run.events, run.ledger
    crossing = Crossing()
    for batch in run.shipped:
        cross(batch, crossing, form, run.config)
    agent = us(sum(crossing.dump_in) + sum(crossing.load_out), events)
    child = us(sum(crossing.load_in) + sum(crossing.dump_out), events)
    mean_in = statistics.mean(crossing.bytes_in) / 1024
    mean_out = statistics.mean(crossing.bytes_out) / 1024
    print(
        f"shipping, {form:<6} in {mean_in:6.1f} KiB/batch, out {mean_out:6.1f} KiB/batch; "
        f"pickle CPU agent {agent:5.1f} us/event, child {child:5.1f} us/event"
    )
    parts = ", ".join(
        f"{name} {size / len(run.shipped) / 1024:.1f}" for name, size in crossing.parts.items()
    )
    print(f"  KiB per batch   {parts} (each pickled alone)")
    agent_cpu, wall, child_cpu = round_trips(crossing.payloads)
    print(
        f"  round trip      agent {us(agent_cpu, events):5.1f} us/event CPU (loading the "
        f"outputs included), {wall / len(crossing.payloads) * 1e3:.2f} ms/batch wall; "
        f"child {us(child_cpu, events):5.1f} us/event loading the inputs"
    )
    # the agent dumps the inputs and does the round trip; the child loads and dumps;
    # with parsed profiles the agent keeps parsing and dumping the stored profiles
    agent_side = io + us(sum(crossing.dump_in) + agent_cpu, events)
    child_side = pure + us(sum(crossing.load_in) + sum(crossing.dump_out), events)
    if form == "parsed":
        stored = ledger.by_call["pure: stored profile parse"]
        stored += ledger.by_call["pure: stored profile dump"]
        agent_side, child_side = agent_side + us(stored, events), child_side - us(stored, events)
    return agent_side, child_side


def estimate(
    args: argparse.Namespace, io: float, pure: float, sides: dict[str, tuple[float, float]]
) -> None:
    """The rate each limit allows, today and with the pure work in a child process."""
    outside, services, cores = args.outside_us, args.services_us, args.cores
    one = outside + io + pure
    print(
        f"today             the worker's thread {one:.0f} us/event, services {services:.0f}: "
        f"{1e6 / max(one, (one + services) / cores):,.0f} events/s at most"
    )
    for form, (engine_side, child) in sides.items():
        agent = outside + engine_side
        spread = (agent + child + services) / cores
        # one pipeline: a batch's profiles load after the previous batch's save (its
        # users come back), so the agent's Redis I/O runs in series with the child
        serial = child + io
        bound = max(agent, child, spread)
        which = {agent: "agent thread", child: "child", spread: f"{cores} cores"}[bound]
        print(
            f"overlap, {form:<6} agent {agent:.0f}, child {child:.0f}, all / {cores} cores "
            f"{spread:.0f} us/event: {1e6 / bound:,.0f} events/s at most ({which} bound); "
            f"one pipeline (child + I/O {serial:.0f}): {1e6 / max(bound, serial):,.0f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events in the stream")
    parser.add_argument("--seed", type=int, default=7, help="seed of the workload")
    parser.add_argument("--days", type=float, help="event-time span in days (default 2 ms/event)")
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    parser.add_argument("--config", type=Path, default=REPO / "config", help="rules directory")
    parser.add_argument(
        "--outside-us",
        type=float,
        help="the worker's CPU per event outside Engine.process (us): a throughput run's "
        "worker CPU per event less the engine CPU printed here",
    )
    parser.add_argument(
        "--services-us", type=float, default=0.0, help="tansu + redis-server CPU per event (us)"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    args.load = os.getloadavg()
    if min(args.events, args.batch, args.partitions, args.cores) < 1:
        parser.error("--events, --batch, --partitions and --cores must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    report(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

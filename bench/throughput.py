"""Throughput of ``nudge worker`` relative to a bare Faust agent on the same broker.

What is measured
    N synthetic shop events (a realistic mix of page views, product views, cart changes,
    purchases, email opens and clicks; a signup as each user's first event) are published,
    keyed by ``user_id``, to two fresh topics with the same partition count. Then, one
    after the other so they never compete for CPU:

    1. **baseline**: a bare Faust agent that only reads its topic in batches
       (``stream.take(500, within=0.2)``) and counts, i.e. the floor cost of Faust +
       aiokafka + the broker on this machine;
    2. **nudge**: the real ``nudge worker`` console script (parse, dedup, Redis profile
       update, rule evaluation, rendering, send requests to Kafka, offset acks), with its
       progress read from ``/metrics`` (events + duplicates + dead letters).

    Both read a full backlog, so the rate is the catch-up rate: events processed between
    the first observed progress and the last event, divided by that time. The worker's
    peak resident memory (``VmHWM``) is read just before it is stopped.

Why a ratio
    Absolute events/s depend on the machine, the broker (tansu with memory storage here,
    not a tuned Kafka cluster) and what else is running. Running the bare agent in the same
    run, on the same broker, with the same data, cancels most of that out: "nudge runs at
    0.4x a bare Faust agent" is comparable across machines and over time; "4,000 events/s"
    is not.

Run it (about a minute for the default 100,000 events on 2 cores)::

    .venv/bin/python bench/throughput.py [--events 100000] [--users 5000]

It starts its own tansu broker and redis-server on free ports and stops them at the end.
``--bootstrap`` / ``--redis-url`` use existing ones instead; the run then leaves its
``bench.*`` topics and ``bench-*`` Redis keys behind. ``--config`` picks the rules the
worker loads, and other ``NUDGE_*`` variables in the environment (e.g.
``NUDGE_BATCH_SIZE``) reach the worker. Every wait is bounded by ``--timeout``; on a
timeout it exits non-zero and says what it was waiting for, with the end of the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `streams` when run from a checkout without an install

from streams.embedded import free_port, start_broker, start_redis  # noqa: E402

POLL_SECONDS = 0.1

#: Relative frequency of each event type after a user's signup.
MIX: dict[str, float] = {
    "page_view": 45,
    "product_view": 25,
    "add_to_cart": 12,
    "remove_from_cart": 3,
    "purchase": 4,
    "email_open": 5,
    "email_click": 2,
    "consent": 0.5,
    "profile_update": 0.5,
}

#: (product_id, name, category, price)
Product = tuple[str, str, str, float]

PRODUCTS: list[Product] = [
    (f"sku-{n:04d}", f"Product {n}", category, round(5 + (n * 7.3) % 120, 2))
    for n, category in enumerate(["kitchen", "apparel", "home", "garden", "books"] * 40)
]

#: The bare Faust agent, run in its own process: argv is
#: app_id bootstrap topic expected_count result_file data_dir
BASELINE_APP = """
import json, sys, time
import faust

app_id, bootstrap, topic_name, expected, result_file, data_dir = sys.argv[1:7]
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
seen = {"count": 0, "first": None, "first_count": 0}


@app.agent(topic)
async def count(stream):
    async for batch in stream.take(500, within=0.2):
        now = time.time()
        seen["count"] += len(batch)
        if seen["first"] is None:
            seen["first"], seen["first_count"] = now, seen["count"]
        if seen["count"] >= expected:
            with open(result_file + ".tmp", "w") as out:
                json.dump({**seen, "last": now}, out)
            import os
            os.replace(result_file + ".tmp", result_file)


faust.Worker(app, loglevel="WARNING", redirect_stdouts=False).execute_from_commandline()
"""


class BenchError(Exception):
    """The benchmark could not finish; the message says what went wrong."""


@dataclass
class Deadline:
    """One time budget for every wait in the run."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(self.seconds - (time.monotonic() - self.start), 0.0)

    def check(self, waiting_for: str) -> None:
        if not self.remaining():
            raise BenchError(f"timed out after {self.seconds:.0f}s waiting for {waiting_for}")


@dataclass
class Stage:
    """What one consumer run needs: its backlog, a scratch directory, the time budget."""

    bootstrap: str
    topic: str
    expected: int
    work: Path
    deadline: Deadline


@dataclass
class Measurement:
    """Progress of one consumer: first observed progress to the last event."""

    events: int
    first_count: int
    first: float
    last: float
    peak_rss_mib: float | None = None
    extra: dict[str, int] = field(default_factory=dict)

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


# --- services ---------------------------------------------------------------------------


@dataclass
class Services:
    bootstrap: str
    redis_url: str
    started: list[str] = field(default_factory=list)


@contextlib.contextmanager
def services(bootstrap: str | None, redis_url: str | None, work: Path) -> Iterator[Services]:
    """Use the given broker/Redis, or start embedded ones; stop what was started."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        found = Services(bootstrap or "", redis_url or "")
        if not bootstrap:
            proc, found.bootstrap = start_broker(log=work / "tansu.log")
            procs.append(proc)
            found.started.append(f"tansu broker at {found.bootstrap}")
        if not redis_url:
            proc, found.redis_url = start_redis()
            procs.append(proc)
            found.started.append(f"redis-server at {found.redis_url}")
        yield found
    finally:
        for proc in procs:
            stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM`` (peak resident set) of a live process, in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


# --- events -----------------------------------------------------------------------------


@dataclass
class Shopper:
    user_id: str
    signed_up: bool = False
    cart: dict[str, Product] = field(default_factory=dict)


def properties(kind: str, shopper: Shopper, rng: random.Random) -> dict[str, Any]:
    """Valid properties for one event of a known type (see profiles/events.py)."""
    product = rng.choice(PRODUCTS)
    product_id, name, category, price = product
    if kind == "signup":
        return {
            "email": f"{shopper.user_id}@example.com",
            "first_name": shopper.user_id.title(),
            "locale": "en",
            "timezone": rng.choice(["Europe/London", "America/New_York", "Asia/Tokyo"]),
            "consent": {"email": rng.random() < 0.9},
        }
    if kind == "page_view":
        return {"url": f"https://shop.example/{category}", "title": category.title()}
    if kind == "product_view":
        return {"product_id": product_id, "name": name, "category": category, "price": price}
    if kind == "add_to_cart":
        shopper.cart[product_id] = product
        return {"product_id": product_id, "name": name, "category": category, "price": price}
    if kind == "remove_from_cart":
        removed = rng.choice(sorted(shopper.cart)) if shopper.cart else product_id
        shopper.cart.pop(removed, None)
        return {"product_id": removed}
    if kind == "purchase":
        return purchase(shopper, product, rng)
    if kind in ("email_open", "email_click"):
        message = {"message_id": f"msg-{rng.getrandbits(48):012x}"}
        return message | ({"url": "https://shop.example/sale"} if kind == "email_click" else {})
    if kind == "consent":
        return {"channel": "email", "granted": rng.random() < 0.8}
    return {"traits": {"plan": rng.choice(["free", "plus", "pro"])}}


def purchase(shopper: Shopper, fallback: Product, rng: random.Random) -> dict[str, Any]:
    bought = list(shopper.cart.values()) or [fallback]
    shopper.cart.clear()
    items = [
        {"product_id": pid, "name": name, "category": cat, "price": price, "quantity": 1}
        for pid, name, cat, price in bought
    ]
    total = round(sum(price for *_, price in bought), 2)
    return {"order_id": f"order-{rng.getrandbits(48):012x}", "items": items, "total": total}


def generate_events(count: int, users: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) messages, key = user_id, ts = epoch ms ending about now."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    shoppers = [Shopper(f"user-{n:06d}") for n in range(users)]
    kinds, weights = list(MIX), list(MIX.values())
    start_ms = int(time.time() * 1000) - 2 * count
    messages = []
    for n in range(count):
        shopper = rng.choice(shoppers)
        kind = rng.choices(kinds, weights)[0] if shopper.signed_up else "signup"
        shopper.signed_up = True
        event = {
            "event_id": f"bench-{run}-{n}",
            "type": kind,
            "user_id": shopper.user_id,
            "ts": start_ms + 2 * n,
            "properties": properties(kind, shopper, rng),
        }
        messages.append((shopper.user_id.encode(), orjson.dumps(event)))
    return messages


# --- Kafka ------------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def publish(bootstrap: str, topics: list[str], messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        for topic in topics:
            pending = [await producer.send(topic, value, key=key) for key, value in messages]
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


# --- the two consumers ------------------------------------------------------------------


def run_baseline(stage: Stage) -> Measurement:
    """The bare agent in its own process; it writes its timing to a file when done."""
    work = stage.work
    script = work / "baseline_app.py"
    script.write_text(BASELINE_APP)
    result, log_path = work / "baseline.json", work / "baseline.log"
    app_id = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    args = [app_id, stage.bootstrap, stage.topic, str(stage.expected), str(result)]
    args.append(str(work / "baseline-data"))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        while not result.exists():
            watch(proc, log_path, stage.deadline, f"baseline agent ({stage.expected} events)")
            time.sleep(POLL_SECONDS)
        data = json.loads(result.read_text())
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    return Measurement(data["count"], data["first_count"], data["first"], data["last"], rss)


def nudge_env(stage: Stage, redis_url: str, config: Path, port: int) -> dict[str, str]:
    """Settings of a worker isolated from anything else on the broker and in Redis."""
    unique = uuid.uuid4().hex[:8]
    return os.environ | {
        "NUDGE_KAFKA_BOOTSTRAP": stage.bootstrap,
        "NUDGE_REDIS_URL": redis_url,
        "NUDGE_EVENTS_TOPIC": stage.topic,
        "NUDGE_SEND_TOPIC": f"bench.send-{unique}",
        "NUDGE_DEAD_LETTER_TOPIC": f"bench.dead-letter-{unique}",
        "NUDGE_APP_ID": f"bench-nudge-{unique}",
        "NUDGE_REDIS_PREFIX": f"bench-{unique}",
        "NUDGE_WEB_HOST": "127.0.0.1",
        "NUDGE_WEB_PORT": str(port),
        "NUDGE_DATA_DIR": str(stage.work / "nudge-data"),
        "NUDGE_CONFIG_DIR": str(config.resolve()),
        "NUDGE_LOG_LEVEL": "warning",
    }


#: Prometheus sample names summed from /metrics, and what the bench calls them.
COUNTERS = {
    "nudge_events_total": "events",
    "nudge_duplicate_events_total": "duplicates",
    "nudge_dead_letters_total": "dead_letters",
    "nudge_send_requests_total": "send_requests",
    "nudge_retries_total": "retries",
}


def read_metrics(port: int) -> dict[str, int] | None:
    """Counters of the worker so far (all labels summed); ``None`` while it is not up."""
    totals = dict.fromkeys(COUNTERS.values(), 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            body = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in body.splitlines():
        name = COUNTERS.get(line.split("{", 1)[0].split(" ", 1)[0])
        if name is not None:
            totals[name] += int(float(line.rsplit(" ", 1)[1]))
    return totals


def handled(totals: dict[str, int] | None) -> int:
    """Messages the worker is done with: applied, skipped as duplicate, or dead-lettered."""
    return sum(totals[name] for name in ("events", "duplicates", "dead_letters")) if totals else 0


def run_nudge(stage: Stage, redis_url: str, config: Path) -> Measurement:
    """The real ``nudge worker`` console script; progress and counters from /metrics."""
    port = free_port()
    nudge = Path(sys.executable).parent / "nudge"
    if not nudge.exists():
        raise BenchError(f"no nudge console script at {nudge}: pip install -e . first")
    log_path = stage.work / "nudge.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(nudge), "worker"],
            env=nudge_env(stage, redis_url, config, port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        measured = poll_nudge(proc, port, stage, log_path)
        measured.peak_rss_mib = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    return measured


def poll_nudge(proc: subprocess.Popen[bytes], port: int, stage: Stage, log: Path) -> Measurement:
    first: tuple[float, int] | None = None
    while True:
        totals = read_metrics(port)
        now, done = time.time(), handled(totals)
        progress = f"{done}/{stage.expected} events, {totals['retries'] if totals else 0} retries"
        watch(proc, log, stage.deadline, f"nudge worker ({progress})")
        if done and first is None:
            first = (now, done)
        if first is not None and totals is not None and done >= stage.expected:
            return Measurement(done, first[1], first[0], now, extra=totals)
        time.sleep(POLL_SECONDS)


def watch(proc: subprocess.Popen[bytes], log: Path, deadline: Deadline, waiting_for: str) -> None:
    """Fail, with the end of the process's log, if it died or the time is up."""
    try:
        if proc.poll() is not None:
            raise BenchError(f"{waiting_for}: the process exited with code {proc.returncode}")
        deadline.check(waiting_for)
    except BenchError as exc:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise BenchError(f"{exc}\nlast lines of {log.name}:\n{tail or '(empty)'}") from None


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to publish")
    parser.add_argument("--users", type=int, default=5_000, help="distinct users")
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the event mix")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting tansu")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    parser.add_argument(
        "--config", type=Path, default=REPO / "config", help="rules directory for the worker"
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.users < 1 or args.partitions < 1:
        parser.error("--events, --users and --partitions must be positive")
    return args


def command_line() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), *sys.argv])


def report(args: argparse.Namespace, baseline: Measurement, nudge: Measurement) -> None:
    ratio = nudge.rate / baseline.rate

    def mib(value: float | None) -> str:
        return f"{value:.0f} MiB" if value is not None else "n/a"

    print()
    print(f"events            {args.events:,} ({args.users:,} users, {args.partitions} partitions)")
    print(f"baseline (Faust)  {baseline.rate:>9,.0f} events/s  ({baseline.seconds:.1f}s)")
    print(f"nudge worker      {nudge.rate:>9,.0f} events/s  ({nudge.seconds:.1f}s)")
    print(f"ratio             nudge runs at {ratio:.2f}x a bare Faust agent")
    print(f"peak memory       nudge worker {mib(nudge.peak_rss_mib)}, ", end="")
    print(f"bare agent {mib(baseline.peak_rss_mib)} (VmHWM)")
    counts = ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in nudge.extra.items())
    print(f"nudge counters    {counts}")
    print(f"machine           {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"command           {command_line()}")


def run(args: argparse.Namespace, work: Path) -> None:
    deadline = Deadline(args.timeout)
    with services(args.bootstrap, args.redis_url, work) as svc:
        for line in svc.started:
            print(f"started {line}")
        unique = uuid.uuid4().hex[:8]
        base_topic, nudge_topic = f"bench.baseline-{unique}", f"bench.events-{unique}"
        messages = generate_events(args.events, args.users, args.seed)
        print(f"publishing {len(messages):,} events to {base_topic} and {nudge_topic} ...")
        topics = [base_topic, nudge_topic]
        setup = prepare(svc.bootstrap, topics, args.partitions, messages)
        asyncio.run(asyncio.wait_for(setup, timeout=deadline.remaining()))
        print("baseline: bare Faust agent ...")
        baseline = run_baseline(Stage(svc.bootstrap, base_topic, args.events, work, deadline))
        print(f"baseline: {baseline.rate:,.0f} events/s; nudge worker ...")
        stage = Stage(svc.bootstrap, nudge_topic, args.events, work, deadline)
        nudge = run_nudge(stage, svc.redis_url, args.config)
    report(args, baseline, nudge)


async def prepare(
    bootstrap: str, topics: list[str], partitions: int, messages: list[tuple[bytes, bytes]]
) -> None:
    await create_topics(bootstrap, topics, partitions)
    await publish(bootstrap, topics, messages)


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="nudge-bench-") as tmp:
        try:
            run(args, Path(tmp))
        except (BenchError, TimeoutError) as exc:
            print(f"bench failed: {exc or 'timed out publishing the events'}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

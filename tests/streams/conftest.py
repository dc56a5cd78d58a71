"""A real ``nudge worker`` process against the session's broker and Redis.

Readers of output topics use manual partition assignment (no consumer group): joining a
group on tansu takes seconds, assignment is immediate.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from profiles import Keys, Pseudonyms, RedisProfileStore, RedisTimerStore, Snapshot, Timer
from streams.embedded import free_port, start_redis

NUDGE = Path(sys.executable).parent / "nudge"
PARTITIONS = 4
#: the key the test workers sign unsubscribe links with
UNSUBSCRIBE_KEY = "test-workers-unsubscribe-key-not-secret"
ERASURE_KEY = "test-workers-erasure-key-not-secret-at-all"
#: the password of :func:`guarded_redis`
REDIS_PASSWORD = "requirepass-" + uuid.uuid4().hex


@dataclass
class WorkerEnv:
    """Names and settings one worker (and its restarts) runs with."""

    bootstrap: str
    redis_url: str
    config_dir: Path
    tmp: Path
    _: KW_ONLY
    unique: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    #: seconds (see :func:`session_timeout`)
    session_timeout: float = 6
    #: more NUDGE_* variables (e.g. credentials)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def events_topic(self) -> str:
        return f"events-{self.unique}"

    @property
    def send_topic(self) -> str:
        return f"sends-{self.unique}"

    @property
    def dead_letter_topic(self) -> str:
        return f"dlq-{self.unique}"

    @property
    def decisions_topic(self) -> str:
        return f"decisions-{self.unique}"

    @property
    def catalog_topic(self) -> str:
        return f"catalog-{self.unique}"

    @property
    def keys(self) -> Keys:
        return Keys(prefix=f"it-{self.unique}")

    def environ(self, web_port: int) -> dict[str, str]:
        return {
            **os.environ,
            "NUDGE_KAFKA_BOOTSTRAP": self.bootstrap,
            "NUDGE_REDIS_URL": self.redis_url,
            "NUDGE_REDIS_PREFIX": self.keys.prefix,
            "NUDGE_CONFIG_DIR": str(self.config_dir),
            "NUDGE_APP_ID": f"nudge-{self.unique}",
            "NUDGE_EVENTS_TOPIC": self.events_topic,
            "NUDGE_SEND_TOPIC": self.send_topic,
            "NUDGE_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "NUDGE_DECISIONS_TOPIC": self.decisions_topic,
            "NUDGE_CATALOG_TOPIC": self.catalog_topic,
            "NUDGE_CONFIG_POLL_INTERVAL": "0.3",
            "NUDGE_TOPIC_PARTITIONS": str(PARTITIONS),
            "NUDGE_WEB_PORT": str(web_port),
            "NUDGE_DATA_DIR": str(self.tmp / f"data-{self.unique}"),
            "NUDGE_TIMER_INTERVAL": "0.2",
            "NUDGE_BATCH_WITHIN": "0.05",
            "NUDGE_SESSION_TIMEOUT": str(self.session_timeout),
            "NUDGE_LOG_LEVEL": "info",
            "NUDGE_UNSUBSCRIBE_KEY": UNSUBSCRIBE_KEY,
            "NUDGE_ERASURE_KEY": ERASURE_KEY,
            **self.extra,
        }


class WorkerProcess:
    def __init__(self, env: WorkerEnv, name: str) -> None:
        self.env = env
        self.port = free_port()
        self.log = env.tmp / f"worker-{env.unique}-{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(NUDGE), "worker"],
                env=env.environ(self.port),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as rsp:
                return rsp.status, rsp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def partitions(self) -> int:
        try:
            status, body = self.get("/health/ready")
        except OSError:
            return 0
        return int(orjson.loads(body)["partitions"]) if status == 200 else 0

    def wait_ready(self, timeout: float = 60, partitions: int = PARTITIONS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.tail()}")
            try:
                if self.partitions() >= partitions:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def metric(self, name: str, **labels: str) -> float:
        _, body = self.get("/metrics")
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in body.decode().splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def metrics(self, name: str) -> dict[str, float]:
        """Every sample of ``name``, by its labels as written (``partition="3"``)."""
        _, body = self.get("/metrics")
        found = {}
        for line in body.decode().splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == name or sample.startswith(f"{name}{{"):
                found[sample[len(name) :].strip("{}")] = float(value)
        return found

    def info(self, name: str) -> dict[str, str]:
        """The labels of an info metric (one sample, value 1)."""
        [labels] = self.metrics(name)
        return dict(re.findall(r'(\w+)="([^"]*)"', labels))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Kafka:
    """Produce events and read output topics (manual assignment, from the beginning)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def produce(
        self, topic: str, *events: dict[str, Any] | bytes, key: bytes | None = None
    ) -> None:
        for event in events:
            value = event if isinstance(event, bytes) else orjson.dumps(event)
            k = key if key is not None or isinstance(event, bytes) else event["user_id"].encode()
            await self.producer.send_and_wait(topic, value, key=k)

    async def read_all(self, topic: str) -> list[Any]:
        """Every record on ``topic`` up to its current end."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            parts = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not parts:
                return []
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            records: list[Any] = []
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=200)
                for recs in batch.values():
                    records += recs
            return records
        finally:
            await consumer.stop()

    async def decisions(self, topic: str, user_id: str) -> list[tuple[str, str, str]]:
        """(rule, outcome, reason) of every decision about ``user_id`` so far."""
        found = [orjson.loads(r.value) for r in await self.read_all(topic)]
        return [(d["rule_id"], d["outcome"], d["reason"]) for d in found if d["user_id"] == user_id]

    async def wait_for_decision(
        self, topic: str, user_id: str, decision: tuple[str, str, str], timeout: float = 30
    ) -> list[tuple[str, str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.decisions(topic, user_id)
            if decision in found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)

    async def sends(
        self, topic: str, user_id: str, rule_id: str | None = None
    ) -> list[dict[str, Any]]:
        out = [orjson.loads(r.value) for r in await self.read_all(topic)]
        return [s for s in out if s["user_id"] == user_id and rule_id in (None, s["rule_id"])]

    async def wait_for_sends(
        self, topic: str, user_id: str, rule_id: str, count: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.sends(topic, user_id, rule_id)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)


class RedisView:
    """Read what the worker wrote to Redis."""

    def __init__(self, client: aioredis.Redis | aioredis.RedisCluster, keys: Keys) -> None:
        cluster = isinstance(client, aioredis.RedisCluster)
        store = cast(aioredis.Redis, client)
        self.profiles = RedisProfileStore(
            store, keys=keys, pseudonyms=Pseudonyms(ERASURE_KEY.encode()), cluster=cluster
        )
        self.timers = RedisTimerStore(store, keys=keys)

    async def profile(self, user_id: str) -> Snapshot:
        return await self.profiles.snapshot(user_id)

    async def pending(self, user_id: str) -> list[Timer]:
        out = []
        for partition in range(PARTITIONS):
            out += [t for t in await self.timers.pending(partition) if t.user_id == user_id]
        return out

    async def wait_until(self, check: Callable[[], Any], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.1)
        raise AssertionError("condition not reached in time")


TEST_RULES = """\
version: 1
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
  - id: receipt
    kind: on_event
    events: [purchase]
    category: transactional
    template: welcome
  - id: cart_abandonment
    kind: absence
    start: [add_to_cart, remove_from_cart]
    cancel: [purchase]
    wait: {cart_wait}
    condition: "profile.cart.item_count > 0"
    template: cart_abandonment
  - id: winback
    kind: inactivity
    wait: {winback_wait}
    template: winback
"""


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's promtool: the one `make test` unpacks beside this interpreter, else one
    on PATH; the test skips without either."""
    beside = Path(sys.executable).parent / "promtool"
    found = str(beside) if beside.is_file() else shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool not installed: `make .venv/bin/promtool` fetches it "
            "(Debian's prometheus package, unpacked), or put one on PATH"
        )
    return found


def session_timeout() -> float:
    """The test workers' consumer session (s). tansu holds a joining worker for half of
    it, so on the suite's own tansu 2 s makes every start and rebalance wait ~1 s instead
    of 3 s; a broker named by NUDGE_TEST_KAFKA_BOOTSTRAP gets 6 s, Kafka's smallest
    (``group.min.session.timeout.ms``)."""
    return 6 if os.environ.get("NUDGE_TEST_KAFKA_BOOTSTRAP") else 2


@pytest.fixture
def worker_env(
    kafka_bootstrap: str, redis_url: str, make_config: Callable[[str], Path], tmp_path: Path
) -> Callable[..., WorkerEnv]:
    def make(
        cart_wait: str = "3s", winback_wait: str = "8s", rules: str | None = None
    ) -> WorkerEnv:
        text = rules or TEST_RULES.format(cart_wait=cart_wait, winback_wait=winback_wait)
        config = make_config(text)
        return WorkerEnv(
            kafka_bootstrap, redis_url, config, tmp_path, session_timeout=session_timeout()
        )

    return make


@pytest.fixture
def start_worker(request: pytest.FixtureRequest) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: WorkerEnv, partitions: int = PARTITIONS) -> WorkerProcess:
        worker = WorkerProcess(env, str(len(started)))
        started.append(worker)
        worker.wait_ready(partitions=partitions)
        return worker

    yield start
    for worker in started:
        worker.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for worker in started:
            print(f"--- {worker.log.name} ---\n{worker.tail()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[Kafka]:
    client = Kafka(kafka_bootstrap)
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
async def redis_view(redis_url: str) -> AsyncIterator[Callable[[Keys], RedisView]]:
    client = aioredis.Redis.from_url(redis_url)
    yield lambda keys: RedisView(client, keys)
    await client.aclose()


@pytest.fixture
async def cluster_view(redis_cluster_url: str) -> AsyncIterator[Callable[[Keys], RedisView]]:
    """:class:`RedisView` on the session's Redis Cluster."""
    client = aioredis.RedisCluster.from_url(redis_cluster_url)
    yield lambda keys: RedisView(client, keys)
    await client.aclose()


@pytest.fixture
def guarded_redis() -> Iterator[str]:
    """The URL (without credentials) of a redis-server that refuses clients without
    :data:`REDIS_PASSWORD`."""
    proc, url = start_redis(extra_args=["--requirepass", REDIS_PASSWORD])
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def signup(user: str) -> dict[str, Any]:
    """A signup of ``user`` now, at ``<user>@example.com``, with email consent."""
    return {
        "event_id": uuid.uuid4().hex,
        "type": "signup",
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(),
        "properties": {"email": f"{user}@example.com", "consent": {"email": True}},
    }


def add_to_cart(user: str, **extra: Any) -> dict[str, Any]:
    """``user`` adding an enamel mug ($14) to their cart now; ``extra`` properties added."""
    return {
        "event_id": uuid.uuid4().hex,
        "type": "add_to_cart",
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(),
        "properties": {"product_id": "mug", "name": "Enamel mug", "price": 14.0, **extra},
    }


async def eventually(check: Callable[[], Any], timeout: float = 30, every: float = 0.1) -> Any:
    """``check()`` (awaited if it is a coroutine) once it is truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s")
        await asyncio.sleep(every)

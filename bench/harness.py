"""What the broker-backed bench modes share: services, worker processes, Kafka, reporting.

Each mode starts its own tansu broker and redis-server on free ports (or uses
``--bootstrap`` / ``--redis-url``), gives every run fresh topics, a fresh consumer group and
a fresh Redis key prefix, and bounds every wait by one ``Deadline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `streams` when run from a checkout without an install

from streams.embedded import free_port, start_broker, start_redis  # noqa: E402

__all__ = [
    "POLL_SECONDS",
    "REPO",
    "BenchError",
    "Deadline",
    "Services",
    "Worker",
    "WorkerSetup",
    "command_line",
    "cpu_seconds",
    "create_topics",
    "handled",
    "machine",
    "memory_mib",
    "percentile",
    "publish",
    "read_records",
    "services",
    "stop",
    "wait_ready",
    "workers",
]

POLL_SECONDS = 0.1
#: messages in flight while publishing (their futures are kept until acked)
PUBLISH_CHUNK = 10_000


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


# --- services ---------------------------------------------------------------------------


@dataclass
class Services:
    bootstrap: str
    redis_url: str
    started: list[str] = field(default_factory=list)
    #: ``tansu`` and ``redis`` -> process id, for those started here
    pids: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def services(bootstrap: str | None, redis_url: str | None, work: Path) -> Iterator[Services]:
    """Use the given broker/Redis, or start embedded ones; stop what was started."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        found = Services(bootstrap or "", redis_url or "")
        if not bootstrap:
            proc, found.bootstrap = start_broker(log=work / "tansu.log")
            procs.append(proc)
            found.pids["tansu"] = proc.pid
            found.started.append(f"tansu broker at {found.bootstrap}")
        if not redis_url:
            proc, found.redis_url = start_redis()
            procs.append(proc)
            found.pids["redis"] = proc.pid
            found.started.append(f"redis-server at {found.redis_url}")
        for line in found.started:
            print(f"started {line}")
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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of another process so far (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field_name: str) -> float | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of a live process, in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    return None


# --- Kafka ------------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def publish(
    bootstrap: str, topics: list[str], messages: Iterable[tuple[bytes, bytes]]
) -> int:
    """Publish every (key, value) to each of ``topics``; return how many messages."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    count = 0
    try:
        pending = []
        for key, value in messages:
            count += 1
            pending += [await producer.send(topic, value, key=key) for topic in topics]
            if len(pending) >= PUBLISH_CHUNK:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


async def read_records(bootstrap: str, topic: str, deadline: Deadline) -> AsyncIterator[Any]:
    """Every record of ``topic`` from its start (all partitions), until the caller stops."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        while not (partitions := consumer.partitions_for_topic(topic)):
            deadline.check(f"topic {topic} to exist")
            await consumer.topics()  # refresh metadata
            await asyncio.sleep(POLL_SECONDS)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while True:
            deadline.check(f"records on {topic}")
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    yield record
            if not batches:
                yield None  # a tick, so the caller may check its own progress
    finally:
        await consumer.stop()


# --- nudge worker processes ---------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSetup:
    """What the workers of one run share: broker, Redis, topics, group, key prefix."""

    bootstrap: str
    redis_url: str
    config: Path
    events_topic: str
    work: Path
    unique: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    #: the run's unsubscribe key (a worker refuses to start without one)
    unsubscribe_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    erasure_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def send_topic(self) -> str:
        return f"bench.send-{self.unique}"

    @property
    def redis_prefix(self) -> str:
        return f"bench-{self.unique}"

    def env(self, port: int, name: str) -> dict[str, str]:
        return os.environ | {
            "NUDGE_KAFKA_BOOTSTRAP": self.bootstrap,
            "NUDGE_REDIS_URL": self.redis_url,
            "NUDGE_EVENTS_TOPIC": self.events_topic,
            "NUDGE_SEND_TOPIC": self.send_topic,
            "NUDGE_DEAD_LETTER_TOPIC": f"bench.dead-letter-{self.unique}",
            "NUDGE_DECISIONS_TOPIC": f"bench.decisions-{self.unique}",
            "NUDGE_APP_ID": f"bench-nudge-{self.unique}",
            "NUDGE_REDIS_PREFIX": self.redis_prefix,
            "NUDGE_WEB_HOST": "127.0.0.1",
            "NUDGE_WEB_PORT": str(port),
            "NUDGE_DATA_DIR": str(self.work / f"{name}-data"),
            "NUDGE_CONFIG_DIR": str(self.config.resolve()),
            "NUDGE_LOG_LEVEL": "warning",
            "NUDGE_UNSUBSCRIBE_KEY": self.unsubscribe_key,
            "NUDGE_ERASURE_KEY": self.erasure_key,
        }


#: Prometheus sample names summed from /metrics, and what the bench calls them.
COUNTERS = {
    "nudge_events_total": "events",
    "nudge_duplicate_events_total": "duplicates",
    "nudge_dead_letters_total": "dead_letters",
    "nudge_send_requests_total": "send_requests",
    "nudge_timers_fired_total": "timers_fired",
    "nudge_retries_total": "retries",
}


class Worker:
    """One ``nudge worker`` process, its /metrics and /health/ready, its log."""

    def __init__(self, setup: WorkerSetup, name: str = "nudge") -> None:
        nudge = Path(sys.executable).parent / "nudge"
        if not nudge.exists():
            raise BenchError(f"no nudge console script at {nudge}: pip install -e . first")
        self.name = name
        self.port = free_port()
        self.log = setup.work / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(nudge), "worker"],
                env=setup.env(self.port, name),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _get(self, path: str) -> tuple[int, bytes] | None:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return None

    def metrics(self) -> dict[str, int] | None:
        """Counters so far (all labels summed); ``None`` while the worker is not up."""
        got = self._get("/metrics")
        if got is None:
            return None
        totals = dict.fromkeys(COUNTERS.values(), 0)
        for line in got[1].decode().splitlines():
            name = COUNTERS.get(line.split("{", 1)[0].split(" ", 1)[0])
            if name is not None:
                totals[name] += int(float(line.rsplit(" ", 1)[1]))
        return totals

    def partitions(self) -> int | None:
        """Partitions of the events topic this worker owns (``None`` while not up)."""
        got = self._get("/health/ready")
        return None if got is None else int(orjson.loads(got[1]).get("partitions", 0))

    def memory_mib(self, field_name: str = "VmRSS") -> float | None:
        return memory_mib(self.proc.pid, field_name)

    def watch(self, deadline: Deadline, waiting_for: str) -> None:
        """Fail, with the end of the log, if the worker died or the time is up."""
        try:
            if self.proc.poll() is not None:
                raise BenchError(f"{waiting_for}: {self.name} exited with {self.proc.returncode}")
            deadline.check(waiting_for)
        except BenchError as exc:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(
                f"{exc}\nlast lines of {self.log.name}:\n{tail or '(empty)'}"
            ) from None

    def stop(self) -> None:
        stop(self.proc)


def handled(totals: dict[str, int] | None) -> int:
    """Messages a worker is done with: applied, skipped as duplicate, or dead-lettered."""
    return sum(totals[name] for name in ("events", "duplicates", "dead_letters")) if totals else 0


@contextlib.contextmanager
def workers(setup: WorkerSetup, count: int = 1) -> Iterator[list[Worker]]:
    """``count`` workers of one consumer group, stopped on the way out."""
    started: list[Worker] = []
    try:
        for n in range(count):
            started.append(Worker(setup, f"nudge-{n + 1}" if count > 1 else "nudge"))
        yield started
    finally:
        for worker in started:
            worker.stop()


def wait_ready(found: list[Worker], partitions: int, deadline: Deadline) -> None:
    """Until the workers own every partition between them, each at least one."""
    while True:
        owned = [worker.partitions() for worker in found]
        if all(owned) and sum(n or 0 for n in owned) == partitions:
            return
        for worker in found:
            worker.watch(deadline, f"{len(found)} worker(s) to own {partitions} partitions")
        time.sleep(POLL_SECONDS)


# --- reporting --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(max(round(q * len(ordered)) - 1, 0), len(ordered) - 1)]


def machine(load: tuple[float, float, float]) -> str:
    """CPUs, Python, and the load average ``load`` taken before the run started."""
    average = ", ".join(f"{n:.2f}" for n in load)
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load before {average}"


def command_line() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), *sys.argv])

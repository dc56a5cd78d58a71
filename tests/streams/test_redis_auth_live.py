"""A real worker against a redis-server that wants a password (``--requirepass``), and
against one that speaks only TLS."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.embedded import free_port, start_redis

from .conftest import NUDGE, Kafka, WorkerEnv, WorkerProcess, signup
from .conftest import REDIS_PASSWORD as PASSWORD


async def test_a_worker_with_the_password_setting_sends_a_welcome(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
    guarded_redis: str,
) -> None:
    env = dataclasses.replace(
        worker_env(winback_wait="1h"),
        redis_url=guarded_redis,
        extra={"NUDGE_REDIS_PASSWORD": PASSWORD},
    )
    worker = start_worker(env)
    await kafka.produce(env.events_topic, signup("ada"))
    assert await kafka.wait_for_sends(env.send_topic, "ada", "welcome"), worker.tail()
    assert PASSWORD not in worker.tail()


def test_a_wrong_password_stops_the_worker_with_a_clear_error(
    worker_env: Callable[..., WorkerEnv], guarded_redis: str
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    url = guarded_redis.replace("redis://", f"redis://default:{wrong}@")
    env = dataclasses.replace(worker_env(winback_wait="1h"), redis_url=url)
    done = subprocess.run(
        [str(NUDGE), "worker"], env=env.environ(0), capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "refused the credentials" in output and "NUDGE_REDIS_PASSWORD" in output
    assert wrong not in output and "Traceback" not in output


def test_a_verb_that_reads_redis_says_the_password_was_refused(guarded_redis: str) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    env = {**os.environ, "NUDGE_REDIS_URL": guarded_redis, "NUDGE_REDIS_PASSWORD": wrong}
    done = subprocess.run(
        [str(NUDGE), "export", "ada"], env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"Redis at {guarded_redis} refused the credentials" in output
    assert wrong not in output and "Traceback" not in output


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server with no plaintext port, TLS only, wanting :data:`PASSWORD`: its
    ``rediss://`` URL and the CA (its own self-signed certificate) that verifies it."""
    cert, key = tmp_path / "redis.pem", tmp_path / "redis.key"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    out = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *subject, *out], check=True, capture_output=True)
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
    files = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    proc, _ = start_redis(port, extra_args=[*tls, *files, "--requirepass", PASSWORD])
    yield f"rediss://127.0.0.1:{port}/0", cert
    proc.terminate()
    proc.wait(timeout=10)


async def test_a_worker_over_tls_trusting_the_servers_ca_sends_a_welcome(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
    tls_redis: tuple[str, Path],
) -> None:
    url, ca = tls_redis
    env = dataclasses.replace(
        worker_env(winback_wait="1h"),
        redis_url=url,
        extra={"NUDGE_REDIS_PASSWORD": PASSWORD, "NUDGE_REDIS_TLS_CA_FILE": str(ca)},
    )
    worker = start_worker(env)
    await kafka.produce(env.events_topic, signup("grace"))
    assert await kafka.wait_for_sends(env.send_topic, "grace", "welcome"), worker.tail()

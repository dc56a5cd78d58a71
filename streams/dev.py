"""``nudge dev --demo``'s two ends of the pipe: the collector and the mailer as processes
of their own, and an SMTP sink that prints what arrives.

Both children run in a session of their own, as the embedded broker and Redis do (see
:mod:`streams.embedded`), so a Ctrl-C at the terminal reaches only the ``nudge dev``
process. It stops its worker first, then :class:`Pipe` stops the collector and the
mailer, then the broker and Redis stop: every process finds what it depends on until
it has stopped itself.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from streams.embedded import EmbeddedError, free_port, wait_started
from streams.settings import Settings

__all__ = ["Child", "Pipe", "SmtpSink", "child_env", "start_child", "wait_ready"]

#: how long a child may take to answer its health check
READY_TIMEOUT = 30.0


@dataclass
class Child:
    """A ``nudge`` verb running as a process of its own, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (its clean shutdown), then SIGKILL if it has not stopped in ``timeout``."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_child(name: str, args: list[str], env: dict[str, str], log: Path) -> Child:
    """``nudge <args>`` with ``env``, its output appended to ``log``, in its own session."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "streams.cli", *args]
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Child(name, proc, log)


def wait_ready(child: Child, url: str, timeout: float = READY_TIMEOUT) -> None:
    """Until ``url`` answers 200; :class:`EmbeddedError` with the log's tail if the child
    exits or ``timeout`` passes first."""
    try:
        wait_started(child.proc, lambda: _answers(url), f"nudge {child.name}", timeout)
    except EmbeddedError as exc:
        raise EmbeddedError(f"{exc}: {_tail(child.log)}") from exc


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 within a second."""
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(url, timeout=1) as answer,
    ):
        return bool(answer.status == 200)
    return False


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Printer:
    """aiosmtpd's handler: every message accepted is handed to ``show``."""

    def __init__(self, show: Callable[[EmailMessage], None]) -> None:
        self.show = show

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # policy.default builds an EmailMessage
        self.show(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@dataclass
class SmtpSink:
    """An SMTP server on a free loopback port (aiosmtpd, in a thread of its own) that
    accepts every mail and shows it."""

    show: Callable[[EmailMessage], None]
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[SmtpSink]:
        controller = Controller(_Printer(self.show), hostname="127.0.0.1", port=self.port)
        controller.start()
        try:
            yield self
        finally:
            controller.stop()


@dataclass
class Pipe:
    """The collector (on ``collector_port``) and the mailer of one ``nudge dev`` run,
    with a write key made for the run; their output goes to ``log_dir``."""

    log_dir: Path
    collector_port: int = field(default_factory=free_port)
    mailer_port: int = field(default_factory=free_port)
    write_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    children: list[Child] = field(default_factory=list)

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    @contextlib.contextmanager
    def running(self, env: dict[str, str], smtp_url: str) -> Iterator[Pipe]:
        """Both started with ``env`` (``NUDGE_*`` settings) and ready, the mailer
        delivering to ``smtp_url``; both stopped on the way out, the collector first."""
        try:
            self._start(env, smtp_url)
            yield self
        finally:
            for child in self.children:
                child.stop()
            self.children.clear()

    def _start(self, env: dict[str, str], smtp_url: str) -> None:
        env = {
            **os.environ,
            **env,
            "NUDGE_COLLECTOR_WRITE_KEYS": self.write_key,
            "NUDGE_PUBLIC_URL": self.public_url,
            "NUDGE_SMTP_URL": smtp_url,
            "NUDGE_MAILER_WEB_PORT": str(self.mailer_port),
        }
        port = str(self.collector_port)
        collector = start_child(
            "collector",
            ["collector", "--host", "127.0.0.1", "--port", port],
            env,
            self.log_dir / "collector.log",
        )
        self.children.append(collector)
        mailer = start_child("mailer", ["mailer"], env, self.log_dir / "mailer.log")
        self.children.append(mailer)
        wait_ready(collector, f"{self.public_url}/health/ready")
        wait_ready(mailer, f"http://127.0.0.1:{self.mailer_port}/health/live")


def child_env(settings: Settings) -> dict[str, str]:
    """The settings a child must share with the ``nudge dev`` process that starts it:
    where the broker and Redis are (started by it, perhaps), the rules, and the secret
    keys (made for the run, perhaps)."""
    env = {
        "NUDGE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NUDGE_REDIS_URL": settings.redis_url.get_secret_value(),
        "NUDGE_CONFIG_DIR": str(settings.config_dir),
        "NUDGE_LOG_FORMAT": settings.log_format or "text",  # dev logs are for reading
    }
    for name in ("unsubscribe_key", "erasure_key"):
        key = getattr(settings, name)
        if key is not None:
            env[f"NUDGE_{name.upper()}"] = key.get_secret_value()
    return env

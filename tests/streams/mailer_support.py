"""What the mailer tests share: send requests and a real SMTP server that records.

The server is aiosmtpd's ``Controller`` (its own thread and loop) on a free loopback
port. Its handler can refuse chosen recipients (e.g. ``550 5.1.1``), answer 421 to a
chosen request the first N times, hold each message a while, or never answer one.
"""

from __future__ import annotations

import asyncio
import email
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from streams.embedded import free_port
from triggers import SendRequest, request_id

REQUEST_ID_HEADER = "X-Nudge-Request-Id"


def send_request(n: int = 1, **fields: Any) -> SendRequest:
    """A marketing send request for user ``u<n>``; ``fields`` override."""
    user = fields.pop("user_id", f"u{n}")
    rid = fields.pop("request_id", request_id("welcome", user, "", f"e{n}"))
    values: dict[str, Any] = {
        "request_id": rid,
        "message_id": rid,
        "user_id": user,
        "to": f"{user}@example.com",
        "to_name": f"Ünïcode Üser {n}",
        "from_email": "shop@shop.example",
        "from_name": "Shop, Inc.",
        "reply_to": "help@shop.example",
        "rule_id": "welcome",
        "template": "welcome",
        "subject": f"Willkommen, Nummer {n} — schön, dass du da bist",
        "preheader": "Your first order ships free",
        "html": f"<html><body><p>Hallo {n} &amp; willkommen</p></body></html>",
        "text": f"Hallo {n} & willkommen\n.a line that starts with a dot\n",
        "headers": {
            "List-Unsubscribe": f"<https://shop.example/u/token-{n}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "category": "marketing",
        "trigger_event_id": f"e{n}",
        "trigger_event_type": "signup",
        "created_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }
    values.update(fields)
    return SendRequest(**values)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def request_id(self) -> str:
        return str(parse(self.data)[REQUEST_ID_HEADER])


@dataclass
class SinkHandler:
    """aiosmtpd handler: records every accepted message."""

    received: list[Received] = field(default_factory=list)
    #: recipient -> the reply to its RCPT (e.g. ``550 5.1.1 <x>: user unknown``)
    refuse: dict[str, str] = field(default_factory=dict)
    #: request id -> how many more times its DATA is answered 421
    defer: dict[str, int] = field(default_factory=dict)
    #: request ids whose DATA is never answered
    silent: set[str] = field(default_factory=set)
    #: seconds each message is held before 250
    hold: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = bytes(envelope.original_content or envelope.content)
        rid = str(parse(data)[REQUEST_ID_HEADER])
        with self.lock:
            if self.defer.get(rid, 0) > 0:
                self.defer[rid] -= 1
                return "421 4.3.2 Service busy, try again later"
        if rid in self.silent:
            await asyncio.sleep(3600)
        if self.hold:
            await asyncio.sleep(self.hold)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 2.0.0 OK queued"

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(r.request_id for r in self.received)

    def by_id(self) -> dict[str, Received]:
        with self.lock:
            return {r.request_id: r for r in self.received}


class SmtpSink:
    """A running aiosmtpd server with a :class:`SinkHandler`."""

    def __init__(self, port: int | None = None) -> None:
        self.handler = SinkHandler()
        self.port = port or free_port()
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?helo=test.local"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop(no_assert=True)

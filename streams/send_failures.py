"""What the mailer publishes besides mail: failure reports and bounce events.

A **send failure** goes to ``NUDGE_SEND_FAILURES_TOPIC`` (key ``user_id``), one JSON
object per request the mailer gave up on, with the whole send request for a replay. A
hard bounce (a 5xx to RCPT) is also a ``bounce`` **event** on the events topic, so the
worker learns the address is dead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson

from triggers import SendRequest

__all__ = [
    "DETAIL_LIMIT",
    "FailureReason",
    "InMemoryReporter",
    "KafkaReporter",
    "Reporter",
    "SendFailure",
    "Source",
    "bounce_event",
]

#: ``hard_bounce``: 5xx to RCPT; ``rejected``: 5xx to MAIL or to the message;
#: ``deferred``: 4xx answers until ``NUDGE_MAILER_MAX_ATTEMPTS``; ``interrupted``: a
#: transaction cut off where the mail may have gone (delivery unknown); ``unsupported``:
#: the server lacks SMTPUTF8 for a non-ASCII address; ``invalid_request``: a record that
#: is no send request, or one that makes no valid message
FailureReason = Literal[
    "hard_bounce", "rejected", "deferred", "interrupted", "unsupported", "invalid_request"
]

#: the most characters of server text a report or bounce event carries
DETAIL_LIMIT = 200


@dataclass(frozen=True)
class Source:
    """Where a send request was read."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class SendFailure:
    reason: FailureReason
    detail: str
    at: datetime
    source: Source
    request: SendRequest | None = None
    code: int | None = None
    #: ``mail``, ``rcpt`` or ``data`` when the server refused, else ``None``
    stage: str | None = None
    #: SMTP transactions tried (4xx answers and outages included)
    attempts: int = 0
    #: the record's key, for a value that is no send request
    key: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        request = self.request
        return {
            "request_id": request.request_id if request else None,
            "message_id": request.message_id if request else None,
            "user_id": request.user_id if request else None,
            "rule_id": request.rule_id if request else None,
            "domain": request.to.rpartition("@")[2] if request else None,
            "reason": self.reason,
            "code": self.code,
            "stage": self.stage,
            "detail": self.detail[:DETAIL_LIMIT],
            "attempts": self.attempts,
            "at": _iso(self.at),
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
            },
            "request": request.model_dump(mode="json") if request else None,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_dict())

    @property
    def message_key(self) -> bytes | None:
        return self.request.user_id.encode() if self.request else self.key


def bounce_event(request: SendRequest, code: int, detail: str, at: datetime) -> dict[str, Any]:
    """The ``bounce`` event of a hard bounce, keyed by ``user_id`` on the events topic;
    its ``event_id`` derives from the request, so a repeated report is one event."""
    return {
        "event_id": f"bounce-{request.request_id}",
        "type": "bounce",
        "user_id": request.user_id,
        "ts": _iso(at),
        "properties": {
            "email": request.to,
            "kind": "hard",
            "code": code,
            "detail": detail[:DETAIL_LIMIT],
            "message_id": request.message_id,
        },
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Reporter(Protocol):
    async def report(self, failure: SendFailure, bounce: dict[str, Any] | None = None) -> None:
        """Publish ``failure`` (and ``bounce``, the event of a hard bounce); return once
        the broker has both."""


class KafkaReporter:
    """Publishes through an aiokafka producer (``acks=all``)."""

    def __init__(self, producer: Any, *, failures_topic: str, events_topic: str) -> None:
        self._producer = producer
        self._failures_topic = failures_topic
        self._events_topic = events_topic

    async def report(self, failure: SendFailure, bounce: dict[str, Any] | None = None) -> None:
        pending = [
            await self._producer.send(
                self._failures_topic, failure.to_json(), key=failure.message_key
            )
        ]
        if bounce is not None:
            pending.append(
                await self._producer.send(
                    self._events_topic, orjson.dumps(bounce), key=bounce["user_id"].encode()
                )
            )
        await asyncio.gather(*pending)


class InMemoryReporter:
    """The twin: keeps what would have been published."""

    def __init__(self) -> None:
        self.failures: list[SendFailure] = []
        self.bounces: list[dict[str, Any]] = []

    async def report(self, failure: SendFailure, bounce: dict[str, Any] | None = None) -> None:
        self.failures.append(failure)
        if bounce is not None:
            self.bounces.append(bounce)

"""What the collector's routes share: its ports, signers, metrics, and the one check every
event passes before it is published.

Every event the collector publishes, whether a client sent it, a Segment call was mapped
to it or a tracking link made it, goes through :meth:`CollectorServices.record`: the
worker's own :func:`profiles.parse_event`, so nothing reaches the topic that the worker
would dead-letter, and nothing the collector accepts is refused there.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import SecretStr

from profiles import KNOWN_EVENT_TYPES, InvalidEvent, LinkSigner, UnsubscribeSigner, parse_event
from streams.identities import Identities
from streams.publisher import Publisher, PublishFailed, Record
from streams.segment import InvalidMessage, Mapped
from streams.settings import Settings

__all__ = [
    "EVENTS",
    "IGNORED",
    "INVALID_TOKENS",
    "PUBLISH_FAILURES",
    "REQUESTS",
    "REQUEST_SECONDS",
    "CollectorMetrics",
    "CollectorServices",
]

log = logging.getLogger("streams.collector")

#: counter ``{route, status}``: requests answered; ``route`` is the route's template
#: (``/c/{token}``), ``unmatched`` for a path no route has
REQUESTS = "nudge_collector_requests"
#: histogram ``{route}``: seconds from the request to the end of the response
REQUEST_SECONDS = "nudge_collector_request_seconds"
#: counter ``{type}``: events the broker acknowledged, by nudge type (``custom`` for
#: every custom type: a label per custom name would grow without bound)
EVENTS = "nudge_collector_events"
#: counter ``{route}``: publishes the broker did not acknowledge in time
PUBLISH_FAILURES = "nudge_collector_publish_failures"
#: counter ``{kind, reason}``: tracking and unsubscribe tokens that did not verify
INVALID_TOKENS = "nudge_collector_invalid_tokens"
#: counter ``{type}``: Segment messages of a type nudge drops (``screen``, ``group``)
IGNORED = "nudge_collector_ignored_messages"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class CollectorMetrics:
    """The collector's metrics, on their own registry (one per app, for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.requests = Counter(
            REQUESTS,
            "HTTP requests answered, by route template and status",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            REQUEST_SECONDS,
            "Time to answer a request, by route template",
            ["route"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.events = Counter(
            EVENTS,
            "Events published and acknowledged, by type (custom types as custom)",
            ["type"],
            registry=r,
        )
        self.publish_failures = Counter(
            PUBLISH_FAILURES,
            "Publishes the broker did not acknowledge in time, by route",
            ["route"],
            registry=r,
        )
        self.invalid_tokens = Counter(
            INVALID_TOKENS,
            "Open, click and unsubscribe tokens that did not verify",
            ["kind", "reason"],
            registry=r,
        )
        self.ignored = Counter(
            IGNORED,
            "Segment messages of a type nudge does not use (screen, group)",
            ["type"],
            registry=r,
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


#: event types only nudge's own parts publish: a browser's write key is public, and
#: either would let anyone act on any user (erase a profile, stop every mail to them)
SERVER_ONLY_TYPES = {
    "erase": "use `nudge erase`",
    "bounce": "the mailer reports bounces",
}


@dataclass
class CollectorServices:
    """The collector's ports and keys. ``write_keys``: the keys a client may send;
    ``clock``: the receive time of events that carry none, and the time tokens verify at."""

    settings: Settings
    publisher: Publisher
    identities: Identities
    unsubscribe: UnsubscribeSigner
    write_keys: Sequence[SecretStr]
    metrics: CollectorMetrics = field(default_factory=CollectorMetrics)
    clock: Callable[[], datetime] = _utc_now
    #: called by :meth:`close` after the publisher stopped (the Redis client's ``aclose``)
    on_close: Sequence[Callable[[], Any]] = ()

    def __post_init__(self) -> None:
        self.links = LinkSigner.derived_from(self.unsubscribe)
        self._keys = [key.get_secret_value().encode() for key in self.write_keys]

    def authorised(self, key: str | None) -> bool:
        """Whether ``key`` is one of the write keys (compared in constant time, against
        every key)."""
        if key is None:
            return False
        given = key.encode("utf-8", "replace")
        found = False
        for known in self._keys:
            found |= hmac.compare_digest(given, known)
        return found

    def record(
        self, event: Mapping[str, Any], *, where: str = "", renames: Mapping[str, str] | None = None
    ) -> tuple[str, Record]:
        """``event``'s type and the record that publishes it, keyed by its user id, if the
        worker would accept it; :class:`InvalidMessage` naming the field if not (with the
        names ``renames`` maps it to: the fields the client sent)."""
        value = orjson.dumps(event)
        try:
            parsed = parse_event(value)
        except InvalidEvent as exc:
            raise InvalidMessage(exc.reason, _located(exc.detail, where, renames or {})) from exc
        if parsed.type in SERVER_ONLY_TYPES:
            raise InvalidMessage(
                "forbidden_type",
                f"{_join(where, 'type')}: {parsed.type} is not accepted over HTTP "
                f"({SERVER_ONLY_TYPES[parsed.type]})",
            )
        return parsed.type, Record(parsed.user_id.encode(), value)

    def mapped(self, item: Mapped) -> tuple[str, Record]:
        """:meth:`record` of a mapped Segment message."""
        return self.record(item.event, where=item.where, renames=item.renames)

    async def publish(self, route: str, typed: Sequence[tuple[str, Record]]) -> None:
        """Publish the records to the events topic and count them once acknowledged;
        :class:`PublishFailed` (counted for ``route``, logged without the records) if not."""
        try:
            await self.publisher.publish(self.settings.events_topic, [r for _, r in typed])
        except PublishFailed as exc:
            self.metrics.publish_failures.labels(route).inc()
            log.warning("%s: %d event(s) not published: %s", route, len(typed), exc)
            raise
        for kind, _ in typed:
            self.metrics.events.labels(kind if kind in KNOWN_EVENT_TYPES else "custom").inc()

    async def close(self) -> None:
        """Stop the publisher (delivering what is pending), then close the rest."""
        await self.publisher.stop()
        for close in self.on_close:
            await close()
        self.on_close = ()


def _located(detail: str, where: str, renames: Mapping[str, str]) -> str:
    """``parse_event``'s detail (``loc: message; loc: message``) with each location
    renamed to the field the client sent and prefixed with ``where``."""
    parts = []
    for part in detail.split("; "):
        loc, sep, message = part.partition(": ")
        parts.append(f"{_join(where, _renamed(loc, renames))}{sep}{message}")
    return "; ".join(parts)


def _renamed(loc: str, renames: Mapping[str, str]) -> str:
    """``loc`` with its longest renamed prefix (a whole path segment) replaced."""
    for prefix in sorted(renames, key=len, reverse=True):
        if loc == prefix or loc.startswith(prefix + "."):
            return renames[prefix] + loc[len(prefix) :]
    return loc


def _join(where: str, loc: str) -> str:
    if not where or loc == "<root>":
        return where or loc
    return f"{where}{loc}" if loc.startswith("[") else f"{where}.{loc}"

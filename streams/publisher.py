"""Put records on a topic and wait until the broker has them: the collector's port to Kafka.

:class:`KafkaPublisher` is aiokafka's producer with ``acks=all``; :class:`InMemoryPublisher`
is its twin for tests (it can be told to fail). Both run through one suite
(``tests/streams/test_publisher.py``). :meth:`Publisher.publish` returns only once every
record of the call is acknowledged, and raises :class:`PublishFailed` when that does not
happen within the publisher's timeout: a caller never reports a record as stored that the
broker has not acknowledged (it may still land later; event ids make a retry harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.errors import StreamsError

__all__ = ["InMemoryPublisher", "KafkaPublisher", "PublishFailed", "Publisher", "Record"]


class PublishFailed(StreamsError):
    """The broker did not acknowledge every record in time (or refused one)."""


@dataclass(frozen=True)
class Record:
    """One message: ``key`` chooses the partition (the user id, for events)."""

    key: bytes
    value: bytes


class Publisher(Protocol):
    async def start(self) -> None:
        """Connect; :class:`PublishFailed` if the broker cannot be reached."""

    async def stop(self) -> None:
        """Deliver what is pending, then disconnect (idempotent)."""

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        """Send every record, then wait for all their acknowledgements at once (one round
        of batching for the lot); :class:`PublishFailed` if they do not all come in time."""

    async def ready(self) -> bool:
        """Whether the publisher is started and the broker answers now."""


class KafkaPublisher:
    """aiokafka's producer, ``acks=all``: a record is acknowledged once every in-sync
    replica has it. ``linger_ms`` lets concurrent requests' records share a batch."""

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        *,
        timeout: float,
        linger_ms: int = 2,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """``security``: the keywords of :func:`streams.kafka_security.kafka_security_options`."""
        self._bootstrap = ",".join(bootstrap_servers)
        self._timeout = timeout
        self._producer = AIOKafkaProducer(
            **(security or {}),
            bootstrap_servers=list(bootstrap_servers),
            acks="all",
            linger_ms=linger_ms,
            request_timeout_ms=max(int(timeout * 1000), 1000),
        )
        self._started = False

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as exc:
            with contextlib.suppress(Exception):  # what a half-started producer holds
                await self._producer.stop()
            raise PublishFailed(f"cannot reach Kafka at {self._bootstrap}: {exc}") from exc
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self._producer.stop()

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        if not records:
            return
        try:
            await asyncio.wait_for(self._send(topic, records), self._timeout)
        except TimeoutError as exc:
            raise PublishFailed(f"no acknowledgement within {self._timeout:g}s") from exc
        except KafkaError as exc:
            raise PublishFailed(f"the broker refused: {exc}") from exc

    async def _send(self, topic: str, records: Sequence[Record]) -> None:
        # a timeout cancels the futures of records still waiting: aiokafka skips those
        pending = [await self._producer.send(topic, r.value, key=r.key) for r in records]
        await asyncio.gather(*pending)

    async def ready(self) -> bool:
        if not self._started:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), self._timeout)
        except (TimeoutError, KafkaError):
            return False
        return True


class InMemoryPublisher:
    """Keeps what it is given, per topic, in order. ``failing = True`` makes it refuse
    (as a broker that does not answer)."""

    def __init__(self) -> None:
        self.topics: dict[str, list[Record]] = {}
        self.failing = False
        self.started = False

    async def start(self) -> None:
        if self.failing:
            raise PublishFailed("cannot reach the in-memory broker")
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def publish(self, topic: str, records: Sequence[Record]) -> None:
        if self.failing:
            raise PublishFailed("no acknowledgement (the in-memory broker is failing)")
        self.topics.setdefault(topic, []).extend(records)

    async def ready(self) -> bool:
        return self.started and not self.failing

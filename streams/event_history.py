"""The events topic as a training history: every partition from its beginning to the end
offset it had when reading started, merged into one stream in time order.

Each partition is in time order per user; merging them by ``ts`` (a heap over one
buffered batch per partition) gives the global order training's cutoffs need, with
memory bounded by one batch per partition. It is a plain iterator (training is
synchronous) that drives its own event loop. Records that are not valid events are
skipped and counted, as the worker dead-letters them.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any

from profiles import Event, InvalidEvent, parse_event
from streams.errors import StreamsError
from streams.settings import Settings

__all__ = ["TopicHistory"]

_BATCH = 2000


class TopicHistory:
    """Iterate once: the events of ``settings.events_topic`` in time order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.read = 0
        #: records that were not valid events
        self.skipped = 0

    def __iter__(self) -> Iterator[Event]:
        loop = asyncio.new_event_loop()
        try:
            yield from self._merged(loop)
        finally:
            loop.close()

    def _merged(self, loop: asyncio.AbstractEventLoop) -> Iterator[Event]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        from streams.kafka_security import kafka_client_options

        async def connected() -> Any:
            # created inside the loop it will run on (aiokafka binds to the running loop)
            return AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False)

        consumer = loop.run_until_complete(connected())
        try:
            loop.run_until_complete(consumer.start())
            parts, ends = loop.run_until_complete(self._assign(consumer))
            buffers: dict[Any, deque[Event]] = {tp: deque() for tp in parts}
            heap: list[tuple[float, int, Event]] = []
            for i, tp in enumerate(parts):
                self._push(loop, consumer, tp, i, ends[tp], buffers, heap)
            while heap:
                _, i, event = heapq.heappop(heap)
                self.read += 1
                yield event
                self._push(loop, consumer, parts[i], i, ends[parts[i]], buffers, heap)
        except KafkaError as exc:
            raise StreamsError(f"reading {self.settings.events_topic}: {exc}") from exc
        finally:
            loop.run_until_complete(consumer.stop())

    async def _assign(self, consumer: Any) -> tuple[list[Any], dict[Any, int]]:
        from aiokafka import TopicPartition

        topic = self.settings.events_topic
        await consumer.topics()
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise StreamsError(f"topic {topic} does not exist on {self.settings.kafka_bootstrap}")
        parts = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        return parts, await consumer.end_offsets(parts)

    def _push(
        self,
        loop: asyncio.AbstractEventLoop,
        consumer: Any,
        tp: Any,
        index: int,
        end: int,
        buffers: dict[Any, deque[Event]],
        heap: list[tuple[float, int, Event]],
    ) -> None:
        """Put partition ``tp``'s next event on the heap, fetching a batch if needed."""
        buffer = buffers[tp]
        while not buffer and loop.run_until_complete(consumer.position(tp)) < end:
            batch = loop.run_until_complete(
                consumer.getmany(tp, timeout_ms=500, max_records=_BATCH)
            )
            # no per-record offset check: a fetch that crosses ``end`` is kept whole
            # (brokers differ in how end offsets and record offsets line up in a batch)
            for record in batch.get(tp, []):
                try:
                    buffer.append(parse_event(record.value, key=record.key))
                except InvalidEvent:
                    self.skipped += 1
        if buffer:
            event = buffer.popleft()
            heapq.heappush(heap, (event.ts.timestamp(), index, event))

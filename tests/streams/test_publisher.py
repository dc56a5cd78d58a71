"""One suite, two publishers: aiokafka's on the session's broker, and the in-memory twin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from streams.embedded import free_port
from streams.publisher import InMemoryPublisher, KafkaPublisher, Publisher, PublishFailed, Record

from .conftest import Kafka


@dataclass
class Under:
    publisher: Publisher
    #: every (key, value) on a topic, in order per key
    read: Callable[[str], Awaitable[list[tuple[bytes, bytes]]]]


@pytest.fixture(params=["memory", "kafka"])
async def under(request: pytest.FixtureRequest, kafka: Kafka) -> AsyncIterator[Under]:
    if request.param == "memory":
        memory = InMemoryPublisher()

        async def held(topic: str) -> list[tuple[bytes, bytes]]:
            return [(r.key, r.value) for r in memory.topics.get(topic, [])]

        await memory.start()
        yield Under(memory, held)
        await memory.stop()
        return
    real = KafkaPublisher([kafka.bootstrap], timeout=10)

    async def on_topic(topic: str) -> list[tuple[bytes, bytes]]:
        return [(r.key, r.value) for r in await kafka.read_all(topic)]

    await real.start()
    yield Under(real, on_topic)
    await real.stop()


async def test_published_records_are_on_the_topic_in_order_per_key(
    under: Under, unique: str
) -> None:
    topic = f"publish-{unique}"
    records = [Record(f"u{i % 3}".encode(), f"event {i}".encode()) for i in range(30)]
    await under.publisher.publish(topic, records)
    found = await under.read(topic)
    for key in (b"u0", b"u1", b"u2"):
        assert [v for k, v in found if k == key] == [r.value for r in records if r.key == key]
    assert len(found) == len(records)


async def test_nothing_to_publish_is_no_message(under: Under, unique: str) -> None:
    await under.publisher.publish(f"publish-{unique}", [])
    assert await under.read(f"publish-{unique}") == []


async def test_ready_while_started_and_stop_twice(under: Under) -> None:
    assert await under.publisher.ready()
    await under.publisher.stop()
    assert not await under.publisher.ready()
    await under.publisher.stop()


async def test_a_publisher_that_cannot_reach_its_broker_says_so() -> None:
    memory = InMemoryPublisher()
    memory.failing = True
    with pytest.raises(PublishFailed):
        await memory.start()
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(PublishFailed, match=f"cannot reach Kafka at {nowhere}"):
        await KafkaPublisher([nowhere], timeout=1).start()

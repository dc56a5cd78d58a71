"""Training from the events topic: partitions merged into one time-ordered history."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from profiles.predictions.synthetic import SyntheticHistory
from streams.cli import cli
from streams.event_history import TopicHistory
from streams.settings import Settings
from streams.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent.parent


async def _topic_with(kafka_bootstrap: str, history: SyntheticHistory) -> tuple[Settings, int]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        events_topic=f"events-{uuid.uuid4().hex}",
        topic_partitions=3,
    )
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    count = 0
    try:
        for event in history.events():
            key = event["user_id"].encode()
            await producer.send(settings.events_topic, orjson.dumps(event), key=key)
            count += 1
        await producer.send(settings.events_topic, b"not an event", key=b"u-bad")
        await producer.flush()
    finally:
        await producer.stop()
    return settings, count


async def test_the_topic_reads_back_in_time_order(kafka_bootstrap: str) -> None:
    history = SyntheticHistory(users=60, days=40, seed=2)
    settings, count = await _topic_with(kafka_bootstrap, history)
    topic = TopicHistory(settings)
    events = await asyncio.to_thread(lambda: list(topic))
    assert (topic.read, topic.skipped) == (count, 1)
    times = [e.ts for e in events]
    assert times == sorted(times)
    assert sorted(e.event_id for e in events) == sorted(e["event_id"] for e in history.events())


async def test_train_from_the_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    history = SyntheticHistory(users=300, days=120, seed=3)
    settings, _ = await _topic_with(kafka_bootstrap, history)
    env = {"NUDGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "NUDGE_EVENTS_TOPIC": settings.events_topic}
    args = [
        "model", "train", "--from-topic", "--as-of", history.end.isoformat(),
        "--horizon-days", "20", "--cutoffs", "3", "--config", str(REPO / "config"),
        "--out", str(tmp_path / "model"),
    ]  # fmt: skip
    result = await asyncio.to_thread(lambda: CliRunner().invoke(cli, args, env=env))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "manifest.json").is_file()

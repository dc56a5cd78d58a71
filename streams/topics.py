"""Create nudge's topics with the configured partition count when they are missing (the
catalog topic compacted)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.errors import StreamsError
from streams.kafka_security import kafka_client_options
from streams.settings import Settings

__all__ = ["COMPACTED", "ensure_topics"]

#: the catalog topic keeps the latest product per key (a null value deletes it)
COMPACTED = {"cleanup.policy": "compact"}


async def ensure_topics(settings: Settings) -> list[str]:
    """Create nudge's topics that are missing; return those created."""
    names = [
        settings.events_topic,
        settings.send_topic,
        settings.dead_letter_topic,
        settings.decisions_topic,
        settings.catalog_topic,
        settings.send_failures_topic,
    ]
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            new = [
                NewTopic(
                    name,
                    settings.topic_partitions,
                    settings.topic_replication,
                    topic_configs=COMPACTED if name == settings.catalog_topic else None,
                )
                for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(new)
        return missing
    except KafkaError as exc:
        raise StreamsError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        await admin.close()

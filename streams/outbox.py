"""Publish send requests and dead letters through Faust's producer, awaiting the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streams.settings import Settings
from triggers import DeadLetter, SendRequest

__all__ = ["KafkaOutbox"]


class KafkaOutbox:
    """Queue every message of a batch without awaiting each, then await all acks."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self._app = app
        self._send_topic = settings.send_topic
        self._dead_letter_topic = settings.dead_letter_topic

    async def publish(
        self, sends: Sequence[SendRequest], dead_letters: Sequence[DeadLetter]
    ) -> None:
        producer = self._app.producer
        pending = []
        for send in sends:
            pending.append(
                await producer.send(
                    self._send_topic, send.user_id.encode(), send.to_json(), None, None, None
                )
            )
        for letter in dead_letters:
            pending.append(
                await producer.send(
                    self._dead_letter_topic, letter.key, letter.value, None, None, letter.headers()
                )
            )
        if pending:
            await asyncio.gather(*pending)

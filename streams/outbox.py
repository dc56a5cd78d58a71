"""Publish send requests, dead letters and decisions through Faust's producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streams.settings import Settings
from triggers import DeadLetter, Decision, SendRequest

__all__ = ["KafkaOutbox"]


class KafkaOutbox:
    """Queue every message of a batch without awaiting each, then await all acks."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self._app = app
        self._send_topic = settings.send_topic
        self._dead_letter_topic = settings.dead_letter_topic
        self._decisions_topic = settings.decisions_topic

    async def publish(
        self,
        sends: Sequence[SendRequest],
        dead_letters: Sequence[DeadLetter],
        decisions: Sequence[Decision] = (),
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
        for decision in decisions:
            pending.append(
                await producer.send(
                    self._decisions_topic,
                    decision.user_id.encode(),
                    decision.to_json(),
                    None,
                    None,
                    None,
                )
            )
        if pending:
            await asyncio.gather(*pending)

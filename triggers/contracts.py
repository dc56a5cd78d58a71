"""What the engine emits: send requests for the mailer, dead letters, decisions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = ["DeadLetter", "Decision", "Outcome", "SendRequest", "request_id"]


def request_id(
    rule_id: str, user_id: str, key: str, trigger_event_id: str, instance: str = ""
) -> str:
    """The idempotency key of one trigger instance: the same instance, the same id.

    ``instance`` tells apart several sends of one trigger (a sequence's steps, a
    birthday's years).
    """
    parts = (rule_id, user_id, key, trigger_event_id) + ((instance,) if instance else ())
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class SendRequest(BaseModel):
    """One email for the mailer to deliver. Keyed by ``user_id`` on the outbound topic.

    The mailer must deliver each ``request_id`` at most once (the engine is at-least-once
    and may repeat a request after a crash). Opens and clicks reported back as
    ``email_open``/``email_click`` events carry ``message_id``: they count for the mail,
    and for its experiment's arm (see :mod:`profiles.attribution`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    request_id: str = Field(description="deterministic idempotency key of the trigger instance")
    message_id: str = Field(
        description="the id email_open and email_click events report back (the request id)"
    )
    user_id: str
    to: str = Field(description="recipient email address")
    to_name: str | None = None
    from_email: str
    from_name: str
    reply_to: str | None = None
    rule_id: str
    template: str
    subject: str
    preheader: str = Field(
        default="",
        description="the line inboxes show after the subject (already hidden in the HTML)",
    )
    html: str
    text: str
    headers: dict[str, str] = Field(
        description="extra email headers, e.g. List-Unsubscribe for marketing mail"
    )
    category: Literal["marketing", "transactional"]
    trigger_event_id: str
    trigger_event_type: str
    locale: str | None = None
    experiment_id: str | None = Field(
        default=None, description="the experiment the mail belongs to, if the rule has one"
    )
    variant: str | None = Field(
        default=None, description="the experiment's variant this mail is (its name)"
    )
    tags: list[str] = []
    products: list[str] = Field(
        default=[],
        description="catalog products the mail showed (recommendations, items), in order",
    )
    created_at: datetime

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        schema = cls.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "nudge send request"
        return schema


#: the bytes of its value a dead letter keeps when the whole would not fit on the topic
DEAD_LETTER_KEEP = 64 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """An input message the engine could not accept, with why and where it came from."""

    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int

    def cut(self, keep: int = DEAD_LETTER_KEEP) -> DeadLetter:
        """This dead letter with only the first ``keep`` bytes of its value, saying so in
        its detail: for a value the broker would refuse whole (``too_large``)."""
        if self.value is None or len(self.value) <= keep:
            return self
        detail = f"{self.detail} (value cut to its first {keep} of {len(self.value)} bytes)"
        return replace(self, value=self.value[:keep], detail=detail)

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("nudge.dlq.reason", self.reason.encode()),
            ("nudge.dlq.detail", self.detail.encode()),
            ("nudge.dlq.topic", self.topic.encode()),
            ("nudge.dlq.partition", str(self.partition).encode()),
            ("nudge.dlq.offset", str(self.offset).encode()),
        ]


#: ``fired``, ``deferred`` (quiet hours) and ``suppressed`` resolve a firing;
#: ``scheduled``, ``rescheduled`` and ``cancelled`` follow a delayed rule's timer
Outcome = Literal["fired", "deferred", "suppressed", "scheduled", "rescheduled", "cancelled"]


@dataclass(frozen=True)
class Decision:
    """Why a rule did, did not, or did not yet send: for metrics, logs and ``explain``."""

    rule_id: str
    user_id: str
    outcome: Outcome
    reason: str
    trigger_event_id: str
    at: datetime
    request_id: str | None = None
    detail: str = ""
    step: int | None = None
    #: the correlation key of a timer (``cart_id`` value, ...)
    key: str = ""
    #: when a scheduled or rescheduled timer falls due
    due: datetime | None = None
    #: the prediction model version the decision used (see
    #: :func:`triggers.predict.used_model`); ``None`` while no model is loaded
    model_version: str | None = None
    #: a send's (or a holdout's withheld send's) experiment and arm
    experiment: str | None = None
    arm: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "user_id": self.user_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
            "step": self.step,
            "key": self.key,
            "trigger_event_id": self.trigger_event_id,
            "request_id": self.request_id,
            "at": _iso(self.at),
            "due": None if self.due is None else _iso(self.due),
            "model_version": self.model_version,
            "experiment": self.experiment,
            "arm": self.arm,
        }

    def to_json(self) -> bytes:
        """The fields of :meth:`as_dict`, serialised by orjson straight from the dataclass."""
        return orjson.dumps(self, option=orjson.OPT_UTC_Z)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of :meth:`to_json` (topic ``nudge.decisions``)."""
        schema = TypeAdapter(cls).json_schema(mode="serialization")
        schema["required"] = list(schema["properties"])  # every field is written
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "nudge decision"
        return schema


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

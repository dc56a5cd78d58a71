"""Rule config models: what ``config/rules.yaml`` may say.

Three trigger kinds so far:

- ``on_event``: fire when one of ``events`` arrives (and ``condition`` holds);
- ``absence``: one of ``start`` arrives and none of ``cancel`` follows within ``wait``
  (every further ``start`` event moves the deadline); ``condition`` is checked at fire time;
- ``inactivity``: no event (or none of ``events``) from the user for ``wait``.

Every rule names a ``template`` and a ``category``: ``marketing`` sends need email consent,
``transactional`` ones do not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from profiles.events import EVENT_TYPE_PATTERN
from profiles.model import ScoringConfig
from triggers.durations import Duration

__all__ = [
    "AbsenceRule",
    "InactivityRule",
    "OnEventRule",
    "Rule",
    "RulesConfig",
    "Sender",
]

RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
Category = Literal["marketing", "transactional"]


def _check_event_types(values: list[str]) -> list[str]:
    for value in values:
        if not EVENT_TYPE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not an event type (lowercase [a-z0-9_.]+)")
    return values


class _RuleBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=RULE_ID_PATTERN, max_length=64)
    description: str = ""
    enabled: bool = True
    template: str = Field(min_length=1)
    category: Category = "marketing"
    #: a Jinja2 expression over ``event``, ``profile`` and ``now``; the rule fires only if true
    condition: str | None = None


class OnEventRule(_RuleBase):
    kind: Literal["on_event"]
    events: list[str] = Field(min_length=1)

    @field_validator("events")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        return _check_event_types(values)


class AbsenceRule(_RuleBase):
    kind: Literal["absence"]
    start: list[str] = Field(min_length=1)
    cancel: list[str] = Field(min_length=1)
    wait: Duration

    @field_validator("start", "cancel")
    @classmethod
    def _types(cls, values: list[str]) -> list[str]:
        return _check_event_types(values)

    @model_validator(mode="after")
    def _disjoint(self) -> AbsenceRule:
        both = set(self.start) & set(self.cancel)
        if both:
            raise ValueError(f"event types both start and cancel the rule: {sorted(both)}")
        return self


class InactivityRule(_RuleBase):
    kind: Literal["inactivity"]
    wait: Duration
    #: the event types that count as activity; all of them when omitted
    events: list[str] | None = None

    @field_validator("events")
    @classmethod
    def _types(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _check_event_types(values)


Rule = Annotated[OnEventRule | AbsenceRule | InactivityRule, Field(discriminator="kind")]


class Sender(BaseModel):
    """Who the mail is from, and where recipients unsubscribe (``{user_id}`` is filled in)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    from_email: str = Field(default="hello@example.com", pattern=r"^[^@\s]+@[^@\s]+$")
    from_name: str = "nudge"
    reply_to: str | None = None
    unsubscribe_url: str = "https://example.com/unsubscribe?user={user_id}"


class RulesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    sender: Sender = Sender()
    scoring: ScoringConfig = ScoringConfig()
    #: the longest a timer may stay leased by a worker that died before completing it
    timer_lease: Duration = timedelta(seconds=60)
    rules: list[Rule] = []

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[_RuleBase]) -> list[_RuleBase]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
        return rules

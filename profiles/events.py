"""The inbound event contract.

Producers publish one JSON object per Kafka message, keyed by ``user_id``. Known event
types have typed properties; any other lowercase type (``[a-z0-9_.]+``) is a custom event
whose properties are free-form. :func:`parse_event` turns raw bytes into an :class:`Event`
or raises :class:`InvalidEvent` with a short machine-readable ``reason`` and a human
``detail`` naming the offending field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from profiles.addresses import normalise_address
from profiles.errors import InvalidEvent

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "KNOWN_EVENT_TYPES",
    "AddToCart",
    "Bounce",
    "CartItem",
    "CheckoutStarted",
    "Consent",
    "EmailClick",
    "EmailOpen",
    "Event",
    "PageView",
    "ProductView",
    "ProfileUpdate",
    "Purchase",
    "RemoveFromCart",
    "Signup",
    "SignupConsent",
    "Unsubscribe",
    "event_json_schema",
    "parse_event",
]

#: the largest price or total an event may carry: anything past it is an error upstream
#: (and infinity, or amounts whose squares overflow, would break revenue sums)
MAX_AMOUNT = 1e12

EVENT_TYPE_PATTERN = re.compile(r"^[a-z0-9_.]+$")
#: a subscription name (``consent.category``, ``unsubscribe.category``, ``subscriptions:``
#: in ``rules.yaml``)
SUBSCRIPTION_PATTERN = re.compile(r"^[a-z0-9_]{1,40}$")


def _check_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class _Props(BaseModel):
    """Base of typed properties: unknown extra keys are kept, not rejected."""

    model_config = ConfigDict(extra="allow", frozen=True)


class SignupConsent(_Props):
    email: bool = False


#: an email address as events carry it, normalised (see :mod:`profiles.addresses`)
_Address = Annotated[
    str,
    AfterValidator(normalise_address),
    Field(
        description="trimmed; the domain is stored lowercased and IDNA-encoded",
        json_schema_extra={"format": "idn-email"},
    ),
]


class Signup(_Props):
    email: _Address
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    consent: SignupConsent = SignupConsent()

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, value: str | None) -> str | None:
        return _check_zone(value)


class ProfileUpdate(_Props):
    traits: dict[str, Any]

    @field_validator("traits")
    @classmethod
    def _iana_zone(cls, traits: dict[str, Any]) -> dict[str, Any]:
        # a zone nudge cannot read would break every later send to the user: refuse it here
        zone = traits.get("timezone")
        if zone is not None and not isinstance(zone, str):
            raise ValueError(f"timezone must be an IANA time zone name, got {zone!r}")
        _check_zone(zone)
        return traits


class PageView(_Props):
    url: str
    title: str | None = None


class ProductView(_Props):
    product_id: str
    name: str | None = None
    category: str | None = None
    price: float | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class AddToCart(_Props):
    product_id: str
    name: str | None = None
    category: str | None = None
    price: float = Field(ge=0, le=MAX_AMOUNT)
    quantity: int = Field(default=1, ge=1)
    cart_id: str | None = None


class RemoveFromCart(_Props):
    product_id: str
    cart_id: str | None = None


class CheckoutStarted(_Props):
    cart_id: str | None = None
    total: float = Field(ge=0, le=MAX_AMOUNT)


class CartItem(_Props):
    product_id: str
    name: str | None = None
    category: str | None = None
    price: float = Field(ge=0, le=MAX_AMOUNT)
    quantity: int = Field(default=1, ge=1)


class Purchase(_Props):
    order_id: str
    items: list[CartItem] = []
    total: float = Field(ge=0, le=MAX_AMOUNT)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class EmailOpen(_Props):
    message_id: str


class EmailClick(_Props):
    message_id: str
    url: str


class Empty(_Props):
    pass


class Consent(_Props):
    channel: Literal["email"]
    granted: bool
    #: the subscription it concerns; absent: the global email consent
    category: str | None = Field(default=None, pattern=SUBSCRIPTION_PATTERN.pattern)
    #: where the change was made (``preference_centre``, ``import``, ...)
    source: str | None = Field(default=None, max_length=40)


class Unsubscribe(_Props):
    #: the subscription left; absent: every marketing mail (the global email consent)
    category: str | None = Field(default=None, pattern=SUBSCRIPTION_PATTERN.pattern)
    #: where it was asked for (``unsubscribe_link``, ``support``, ...)
    source: str | None = Field(default=None, max_length=40)


class Bounce(_Props):
    """A mail the recipient's server refused: ``hard`` (permanently, the address does not
    take mail) or ``soft`` (for now: a full mailbox, a greylisting). Published by the
    mailer, keyed by the user it mailed."""

    #: the address refused (compared with the profile's)
    email: _Address
    kind: Literal["hard", "soft"] = "hard"
    #: the SMTP reply code (``550``)
    code: int | None = Field(default=None, ge=200, le=599)
    #: the server's reply text
    detail: str | None = Field(default=None, max_length=500)
    #: the refused mail's ``message_id`` (the send request's)
    message_id: str | None = None


#: Typed properties per known event type. Everything else is a custom event.
KNOWN_EVENT_TYPES: dict[str, type[_Props]] = {
    "signup": Signup,
    "profile_update": ProfileUpdate,
    "page_view": PageView,
    "product_view": ProductView,
    "add_to_cart": AddToCart,
    "remove_from_cart": RemoveFromCart,
    "checkout_started": CheckoutStarted,
    "purchase": Purchase,
    "email_open": EmailOpen,
    "email_click": EmailClick,
    "unsubscribe": Unsubscribe,
    "consent": Consent,
    "bounce": Bounce,
    "erase": Empty,
}


#: the window of event times nudge accepts: a timer set by an event, its wait added, and
#: every date computed from it stay representable (a year-9999 event would overflow them)
EARLIEST_TS = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TS = datetime(2100, 1, 1, tzinfo=UTC)


class Event(BaseModel):
    """One behavioural event. ``ts`` is normalised to an aware UTC datetime."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=200)
    type: str = Field(pattern=EVENT_TYPE_PATTERN.pattern, max_length=100)
    user_id: str = Field(min_length=1, max_length=200)
    ts: datetime
    properties: dict[str, Any] = {}
    context: dict[str, Any] | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _epoch_millis(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("ts must be ISO-8601 with a zone or epoch milliseconds")
        if isinstance(value, int | float):
            try:
                return datetime.fromtimestamp(value / 1000, tz=UTC)
            except (OverflowError, OSError, ValueError):
                raise ValueError(f"ts {value} is not a time in epoch milliseconds") from None
        return value

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("ts must carry a time zone (e.g. 2026-01-31T12:00:00Z)")
        value = value.astimezone(UTC)
        if not EARLIEST_TS <= value < LATEST_TS:
            raise ValueError(
                f"ts must be from {EARLIEST_TS:%Y-%m-%d} to before {LATEST_TS:%Y-%m-%d}"
            )
        return value

    @property
    def ts_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)

    @cached_property
    def typed(self) -> _Props | None:
        """The typed properties of a known event type (``None`` for custom events).

        Validated once, on first access; :func:`parse_event` touches it so that an event
        that got past parsing always has valid typed properties.
        """
        model = KNOWN_EVENT_TYPES.get(self.type)
        return None if model is None else model.model_validate(self.properties)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def _describe(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{where or '<root>'}: {err['msg']}")
    return "; ".join(parts)


#: the largest event parsed by default (bytes); see ``Settings.max_event_bytes``
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


def parse_event(
    raw: bytes | None, *, key: bytes | None = None, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> Event:
    """Validate one raw Kafka message value against the event contract. A value over
    ``max_bytes`` is refused (``too_large``) before it is parsed."""
    if raw is None:
        raise InvalidEvent("empty_value", "message has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"{len(raw)} bytes; the limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEvent("schema_violation", "<root>: event must be a JSON object")
    try:
        event = Event.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent("schema_violation", _describe(exc)) from exc
    try:
        _ = event.typed
    except ValidationError as exc:
        raise InvalidEvent("schema_violation", _describe(exc, "properties")) from exc
    if key is not None and key.decode("utf-8", "replace") != event.user_id:
        raise InvalidEvent(
            "key_mismatch",
            f"message key {key.decode('utf-8', 'replace')!r} must equal user_id "
            f"{event.user_id!r} (a user's events must share one partition)",
        )
    return event


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the event contract, typed properties included."""
    schema = Event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nudge event"
    schema["properties"]["ts"] = {
        "description": "ISO-8601 with a zone, or epoch milliseconds",
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
    }
    defs = schema.setdefault("$defs", {})
    branches = []
    for event_type, model in KNOWN_EVENT_TYPES.items():
        props = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(props.pop("$defs", {}))
        branches.append(
            {
                "if": {"properties": {"type": {"const": event_type}}, "required": ["type"]},
                "then": {"properties": {"properties": props}},
            }
        )
    schema["allOf"] = branches
    return schema

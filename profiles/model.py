"""The live profile of one user and how an event changes it.

:func:`apply_event` is pure: ``(profile | None, event, scoring) -> profile | None``. The
Redis store and the in-memory store only persist what it returns, so both behave alike
and rule evaluation sees the same profile whichever store is behind it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from profiles.addresses import InvalidAddress, normalise_address
from profiles.events import (
    AddToCart,
    CheckoutStarted,
    Consent,
    Event,
    ProductView,
    ProfileUpdate,
    Purchase,
    RemoveFromCart,
    Signup,
)
from profiles.hours import HourHistogram, HoursConfig, note_hour

__all__ = [
    "MAX_DECISIONS",
    "MAX_SENDS",
    "Cart",
    "CartLine",
    "Profile",
    "ScoringConfig",
    "SendRecord",
    "apply_event",
    "decayed_score",
]


class ScoringConfig(BaseModel):
    """Engagement score and affinity weights (the ``scoring:`` block of ``rules.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points: dict[str, float] = Field(
        default_factory=lambda: {"email_open": 10.0, "email_click": 15.0, "purchase": 20.0}
    )
    half_life_days: float = Field(default=14.0, gt=0)
    affinity: dict[str, float] = Field(
        default_factory=lambda: {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
    )
    #: the local hours at which users read mail (``send_at: best_hour``)
    send_hours: HoursConfig = HoursConfig()


class CartLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str
    name: str | None = None
    category: str | None = None
    price: float = 0.0
    quantity: int = 1


class Cart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cart_id: str | None = None
    items: dict[str, CartLine] = {}
    updated_at: datetime | None = None

    @property
    def total(self) -> float:
        return round(sum(line.price * line.quantity for line in self.items.values()), 2)

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.items.values())

    @property
    def lines(self) -> list[CartLine]:
        return list(self.items.values())


#: recent sends and decisions kept per profile (frequency caps, ``explain``)
MAX_SENDS = 50
MAX_DECISIONS = 20


#: decision fields not stored on the profile when they hold nothing
_EMPTY = (None, "")


class SendRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    rule_id: str
    category: str
    request_id: str


class Profile(BaseModel):
    """Everything nudge knows about one user, as stored in Redis (one JSON document)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    #: the user's address, normalised (see :mod:`profiles.addresses`)
    email: str | None = None
    #: the address a ``profile_update`` last set when it was not one, as received (JSON
    #: text if it was not a string); ``email`` is then ``None`` and nothing is mailed
    #: until a valid address arrives
    email_invalid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    traits: dict[str, Any] = {}
    email_consent: bool = False
    first_seen: datetime
    last_seen: datetime
    counts: dict[str, int] = {}
    cart: Cart = Cart()
    purchase_count: int = 0
    total_spent: float = 0.0
    last_purchase_at: datetime | None = None
    affinity: dict[str, float] = {}
    score: float = 0.0
    score_at: datetime | None = None
    #: decayed weight of the local hours at which the user opens and clicks mail
    open_hours: HourHistogram | None = None
    signed_up_at: datetime | None = None
    #: the Kafka partition of the user's events (where their timers live)
    partition: int | None = None
    #: names of the configured segments the user was in after the last event
    segments: list[str] = []
    #: segment_entry / threshold rules whose condition held after the last event
    watched: list[str] = []
    #: threshold rules evaluated for this user (a crossing needs a previous value);
    #: ``None`` in profiles stored before nudge kept it, read as "all of them"
    observed: list[str] | None = None
    #: pending timers of this user: timer id -> due (epoch ms); lets unsubscribe/erase
    #: cancel them without scanning every partition's timer set.
    timers: dict[str, int] = {}
    #: rule id -> time of the last send of that rule (re-entry and cooldown)
    fired: dict[str, datetime] = {}
    #: the most recent sends, newest last (frequency cap)
    sends: list[SendRecord] = []
    #: the most recent rule decisions, newest last (``nudge explain``)
    decisions: list[dict[str, Any]] = []

    def record_send(self, record: SendRecord) -> None:
        self.fired[record.rule_id] = max(self.fired.get(record.rule_id, record.at), record.at)
        self.sends = [*self.sends, record][-MAX_SENDS:]

    def record_decision(self, decision: dict[str, Any]) -> None:
        """Keep ``decision`` among the recent ones, without its empty fields."""
        compact = {k: v for k, v in decision.items() if v not in _EMPTY and k != "user_id"}
        self.decisions = [*self.decisions, compact][-MAX_DECISIONS:]

    def sends_since(self, since: datetime, category: str = "marketing") -> int:
        return sum(1 for s in self.sends if s.category == category and s.at > since)

    def score_now(self, now: datetime, scoring: ScoringConfig) -> float:
        """The engagement score decayed to ``now``."""
        if self.score_at is None:
            return self.score
        return decayed_score(self.score, self.score_at, now, scoring.half_life_days)

    def context(self) -> dict[str, Any]:
        """The profile as plain data for conditions and templates."""
        data = self.model_dump(mode="json")
        data["cart"]["total"] = self.cart.total
        data["cart"]["item_count"] = self.cart.item_count
        data["cart"]["lines"] = list(data["cart"]["items"].values())
        return data


def decayed_score(score: float, at: datetime, now: datetime, half_life_days: float) -> float:
    elapsed_days = (now - at).total_seconds() / 86400
    return score * math.pow(0.5, elapsed_days / half_life_days)


def apply_event(
    profile: Profile | None, event: Event, scoring: ScoringConfig, *, in_place: bool = False
) -> Profile | None:
    """Return the profile after ``event`` (``None`` once the user asked to be erased).

    ``profile`` is left as it was unless ``in_place`` (the engine's hot path, which owns
    the profile it loaded and saves a copy per event that way).
    """
    if event.type == "erase":
        return None
    if profile is None:
        profile = Profile(
            user_id=event.user_id, first_seen=event.ts, last_seen=event.ts, observed=[]
        )
    elif not in_place:
        profile = profile.model_copy(deep=True)
    profile.first_seen = min(profile.first_seen, event.ts)
    profile.last_seen = max(profile.last_seen, event.ts)
    profile.counts[event.type] = profile.counts.get(event.type, 0) + 1
    _apply_typed(profile, event)
    _add_score(profile, event, scoring)
    _add_affinity(profile, event, scoring)
    profile.open_hours = note_hour(
        profile.open_hours, event.type, event.ts, profile.timezone, scoring.send_hours
    )
    return profile


def _apply_typed(profile: Profile, event: Event) -> None:
    props = event.typed
    if isinstance(props, Signup):
        profile.email, profile.email_invalid = props.email, None  # validated by the contract
        profile.first_name = props.first_name or profile.first_name
        profile.last_name = props.last_name or profile.last_name
        profile.locale = props.locale or profile.locale
        profile.timezone = props.timezone or profile.timezone
        profile.email_consent = props.consent.email
        profile.signed_up_at = min(profile.signed_up_at or event.ts, event.ts)
    elif isinstance(props, ProfileUpdate):
        _apply_traits(profile, props.traits)
    elif isinstance(props, AddToCart):
        _add_to_cart(profile, event, props)
    elif isinstance(props, RemoveFromCart):
        profile.cart.items.pop(props.product_id, None)
        profile.cart.updated_at = event.ts
    elif isinstance(props, CheckoutStarted):
        profile.cart.cart_id = props.cart_id or profile.cart.cart_id
    elif isinstance(props, Purchase):
        profile.purchase_count += 1
        profile.total_spent = round(profile.total_spent + props.total, 2)
        profile.last_purchase_at = max(profile.last_purchase_at or event.ts, event.ts)
        profile.cart = Cart()
    elif isinstance(props, Consent):
        profile.email_consent = props.granted
    elif event.type == "unsubscribe":
        profile.email_consent = False


#: traits that map onto first-class profile fields
_IDENTITY_TRAITS = ("email", "first_name", "last_name", "locale", "timezone")


def _apply_traits(profile: Profile, traits: dict[str, Any]) -> None:
    for name, value in traits.items():
        if name == "email":
            _set_address(profile, value)
        elif name in _IDENTITY_TRAITS and (value is None or isinstance(value, str)):
            setattr(profile, name, value)
        else:
            profile.traits[name] = value


def _set_address(profile: Profile, value: Any) -> None:
    """``traits.email``: a new address, normalised; ``None`` clears it.

    An invalid one (a non-string included) replaces the address too, recorded in
    ``email_invalid``: the user's address changed to something nudge cannot mail, and the
    previous one is no longer known to be theirs. The rest of the update still applies.
    """
    profile.email = profile.email_invalid = None
    if isinstance(value, str):
        try:
            profile.email = normalise_address(value)
        except InvalidAddress:
            profile.email_invalid = value
    elif value is not None:
        profile.email_invalid = orjson.dumps(value).decode()


def _add_to_cart(profile: Profile, event: Event, props: AddToCart) -> None:
    cart = profile.cart
    if props.cart_id and cart.cart_id and props.cart_id != cart.cart_id:
        cart = profile.cart = Cart()
    cart.cart_id = props.cart_id or cart.cart_id
    line = cart.items.get(props.product_id)
    quantity = props.quantity + (line.quantity if line else 0)
    cart.items[props.product_id] = CartLine(
        product_id=props.product_id,
        name=props.name,
        category=props.category,
        price=props.price,
        quantity=quantity,
    )
    cart.updated_at = event.ts


def _add_score(profile: Profile, event: Event, scoring: ScoringConfig) -> None:
    points = scoring.points.get(event.type)
    if not points:
        return
    if profile.score_at is None or event.ts >= profile.score_at:
        profile.score = profile.score_now(event.ts, scoring) + points
        profile.score_at = event.ts
    else:  # a late event: decay its points to the score's reference time instead
        profile.score += decayed_score(points, event.ts, profile.score_at, scoring.half_life_days)
    profile.score = round(profile.score, 6)


def _categories(event: Event) -> list[str]:
    props = event.typed
    if isinstance(props, ProductView | AddToCart) and props.category:
        return [props.category]
    if isinstance(props, Purchase):
        return [item.category for item in props.items if item.category]
    return []


def _add_affinity(profile: Profile, event: Event, scoring: ScoringConfig) -> None:
    weight = scoring.affinity.get(event.type)
    if not weight:
        return
    for category in _categories(event):
        profile.affinity[category] = profile.affinity.get(category, 0.0) + weight

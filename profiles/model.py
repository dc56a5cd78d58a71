"""The live profile of one user, as stored (one JSON document), and its configuration.

How an event changes it is :func:`profiles.fold.apply_event`.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from profiles.attribution import Exposure
from profiles.features import ActivityBucket, DayBucket, FeedbackConfig, decay_factor, strongest
from profiles.hours import HourHistogram, HoursConfig

__all__ = [
    "MAX_CART_LINES",
    "MAX_CONSENT_LOG",
    "MAX_COUNTS",
    "MAX_DECISIONS",
    "MAX_FEATURED",
    "MAX_FIRED",
    "MAX_SENDS",
    "MAX_TRAITS",
    "MAX_UNSUBSCRIBED",
    "RECENT_DECISIONS",
    "Cart",
    "CartLine",
    "ConsentChange",
    "FeaturedSend",
    "LastCart",
    "Predicted",
    "Profile",
    "ScoringConfig",
    "SendRecord",
    "decayed_score",
    "kept_decisions",
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
    #: category and brand affinities halve every this many days without new interest
    affinity_half_life_days: float = Field(default=30.0, gt=0)
    #: how clicked and ignored marketing mail moves the categories it featured
    feedback: FeedbackConfig = FeedbackConfig()


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


#: recent sends kept per profile (frequency caps)
MAX_SENDS = 50
#: decisions kept per profile (``explain``): the :data:`RECENT_DECISIONS` newest, then the
#: newest of each other rule, at most :data:`MAX_DECISIONS` in all
MAX_DECISIONS = 20
RECENT_DECISIONS = 10
#: event types counted per profile; past it a new type is not counted
MAX_COUNTS = 64
#: traits kept per profile; past it a new trait name is ignored (known ones still change)
MAX_TRAITS = 64
#: rules remembered in ``fired``; past it the one fired longest ago is forgotten
MAX_FIRED = 64
#: lines in a cart; past it the line added first is dropped
MAX_CART_LINES = 50
#: marketing sends whose featured products and categories are remembered (feedback)
MAX_FEATURED = 20
#: consent changes kept per profile; past it the oldest (by time) is dropped
MAX_CONSENT_LOG = 50
#: subscriptions a user may be opted out of; past it a new one is not recorded (the
#: change stays in the consent log)
MAX_UNSUBSCRIBED = 32


class LastCart(BaseModel):
    """The last non-empty cart, when it was bought or abandoned (replaced by another)."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    outcome: Literal["bought", "abandoned"]
    cart_id: str | None = None
    #: its first lines (at most :data:`profiles.behaviour.MAX_LAST_CART_LINES`)
    lines: list[CartLine] = []


class FeaturedSend(BaseModel):
    """What a marketing send featured, and how the user reacted to it so far.

    ``sent`` until an open (``opened``) or click (``clicked``); a send still ``sent``
    when its feedback window ends is settled ``ignored`` (once)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    at: datetime
    products: list[str] = []
    categories: list[str] = []
    state: Literal["sent", "opened", "clicked", "ignored"] = "sent"


#: decision fields not stored on the profile when they hold nothing
_EMPTY = (None, "")


def kept_decisions(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a profile keeps of ``decisions`` (oldest first, the newest just appended):
    the :data:`RECENT_DECISIONS` newest, and before them the newest decision of each rule
    not among them, those of the rules decided on longest ago dropped past
    :data:`MAX_DECISIONS` (for good: a decision dropped does not come back when newer
    ones leave). So ``explain`` has every rule's latest word however many timers another
    rule cancels, in fewer bytes than the 20 newest took; why a deferred
    timer waits, it reads from the timer."""
    if len(decisions) <= RECENT_DECISIONS:
        return decisions
    recent = decisions[-RECENT_DECISIONS:]
    rules = {d["rule_id"] for d in recent}
    older = []
    for decision in reversed(decisions[:-RECENT_DECISIONS]):
        if decision["rule_id"] not in rules:
            rules.add(decision["rule_id"])
            older.append(decision)
    return [*reversed(older[: MAX_DECISIONS - RECENT_DECISIONS]), *recent]


class Predicted(BaseModel):
    """The scores of the model a worker holds, as of ``scored_at`` (``profile.predicted``).

    Written after each batch that touched the user (and refreshed as time passes, see
    README "Predictions"); ``None`` while no model is loaded or the user was not scored.
    """

    model_config = ConfigDict(extra="forbid")

    #: chance of a purchase within the model's horizon (calibrated)
    purchase_probability: float
    #: chance that a past buyer neither buys nor is active within the horizon
    churn_probability: float
    #: revenue expected within the horizon
    expected_value: float
    #: the plain name of the user's behavioural cluster ("lapsed one-time buyers")
    cluster: str
    model_version: str
    scored_at: datetime


class ConsentChange(BaseModel):
    """One change of a user's email consent, as a signup, ``consent`` or ``unsubscribe``
    event made it (``profile.consent_log``)."""

    model_config = ConfigDict(extra="forbid")

    #: the event's time
    at: datetime
    channel: Literal["email"] = "email"
    #: the subscription it concerns; ``None``: the global email consent
    category: str | None = None
    granted: bool
    #: where it was made: the event's ``source``, else ``signup``, ``consent`` or
    #: ``unsubscribe``
    source: str
    event_id: str


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
    #: when ``email`` was erased (it is on the suppression list of erased addresses, see
    #: :mod:`profiles.privacy`): no marketing mail to it until a fresh consent grant
    address_erased_at: datetime | None = None
    #: ``email`` as a hard ``bounce`` refused it, and since when (the first such bounce):
    #: nothing is mailed to it. Set only while ``email`` is that address (compared
    #: case-insensitively); any other address, or none, clears both.
    undeliverable: str | None = None
    undeliverable_at: datetime | None = None
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    traits: dict[str, Any] = {}
    email_consent: bool = False
    #: every consent change, oldest first by time (see :mod:`profiles.consent`)
    consent_log: list[ConsentChange] = []
    #: the subscriptions the user opted out of, sorted
    unsubscribed: list[str] = []
    first_seen: datetime
    last_seen: datetime
    counts: dict[str, int] = {}
    cart: Cart = Cart()
    purchase_count: int = 0
    total_spent: float = 0.0
    last_purchase_at: datetime | None = None
    #: orders and revenue per UTC day of the last year, oldest first (``profile.rfm``)
    purchase_days: list[DayBucket] = []
    #: site days, views, cart additions, mail opens and clicks per UTC day of the last
    #: 90 days, oldest first (the prediction features' windows)
    activity_days: list[ActivityBucket] = []
    #: category -> affinity as of ``affinity_at`` (decayed; see ``profile.affinities``)
    affinity: dict[str, float] = {}
    #: brand -> affinity as of ``affinity_at`` (brands known from the catalog)
    brand_affinity: dict[str, float] = {}
    #: the reference time of both affinity maps
    affinity_at: datetime | None = None
    #: product ids viewed, newest first, without repeats
    recently_viewed: list[str] = []
    #: product ids bought, newest first, without repeats
    purchased_products: list[str] = []
    last_cart: LastCart | None = None
    #: what recent marketing sends featured, oldest first
    featured: list[FeaturedSend] = []
    #: the latest sends and withheld (holdout) sends, oldest first, with the opens,
    #: clicks and purchases counted for them (see :mod:`profiles.attribution`)
    exposures: list[Exposure] = []
    score: float = 0.0
    score_at: datetime | None = None
    #: the prediction model's scores (``None`` until scored)
    predicted: Predicted | None = None
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

    @model_validator(mode="after")
    def _affinity_reference(self) -> Profile:
        """Profiles stored before affinities decayed hold ever-growing sums: read them as
        affinities as of the user's last event."""
        if self.affinity_at is None and (self.affinity or self.brand_affinity):
            self.affinity_at = self.last_seen
        return self

    @property
    def recency_at(self) -> datetime:
        """What the lifecycle stage counts from: the last purchase, or the last event of
        a user who never bought."""
        return self.last_purchase_at or self.last_seen

    def record_send(self, record: SendRecord) -> None:
        self.record_fired(record.rule_id, record.at)
        self.sends = [*self.sends, record][-MAX_SENDS:]

    def record_fired(self, rule_id: str, at: datetime) -> None:
        """Note that ``rule_id`` fired ``at`` (re-entry, cooldown), without a send record
        (a holdout's withheld send: the frequency cap does not count it)."""
        self.fired[rule_id] = max(self.fired.get(rule_id, at), at)
        if len(self.fired) > MAX_FIRED:
            del self.fired[min(self.fired, key=lambda rule: (self.fired[rule], rule))]

    def record_featured(
        self, request_id: str, at: datetime, products: list[str], categories: list[str]
    ) -> None:
        """Remember what the marketing send ``request_id`` featured: its opens and clicks
        then strengthen those categories, and ignoring it weakens them (see
        :func:`profiles.behaviour.settle_feedback`)."""
        featured = FeaturedSend(
            request_id=request_id,
            at=at,
            products=list(dict.fromkeys(products))[:10],
            categories=list(dict.fromkeys(categories))[:5],
        )
        self.featured = [*self.featured, featured][-MAX_FEATURED:]

    def recommended_recently(self, now: datetime, days: float) -> set[str]:
        """The products featured in marketing sends of the last ``days`` days."""
        since = now - timedelta(days=days)
        return {p for send in self.featured if send.at > since for p in send.products}

    def affinities_now(self, now: datetime, scoring: ScoringConfig) -> dict[str, float]:
        """Category affinities decayed to ``now``, strongest first."""
        return strongest(self.affinity, self._affinity_factor(now, scoring))

    def brand_affinities_now(self, now: datetime, scoring: ScoringConfig) -> dict[str, float]:
        """Brand affinities decayed to ``now``, strongest first."""
        return strongest(self.brand_affinity, self._affinity_factor(now, scoring))

    def _affinity_factor(self, now: datetime, scoring: ScoringConfig) -> float:
        if self.affinity_at is None:
            return 1.0
        return decay_factor(self.affinity_at, now, scoring.affinity_half_life_days)

    def record_decision(self, decision: dict[str, Any]) -> None:
        """Keep ``decision`` among the recent ones, without its empty fields."""
        compact = {k: v for k, v in decision.items() if v not in _EMPTY and k != "user_id"}
        self.decisions = kept_decisions([*self.decisions, compact])

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
    """``score`` as of ``at``, decayed to ``now``. A ``now`` before ``at`` (a condition
    judged at an older event's time) sees the score as it is: decaying backwards would
    inflate it, past any float for an event decades older."""
    elapsed_days = max((now - at).total_seconds() / 86400, 0.0)
    return score * math.pow(0.5, elapsed_days / half_life_days)

"""Rule config models: what ``config/rules.yaml`` may say.

Trigger kinds:

- ``on_event``: fire when one of ``events`` arrives (and ``condition`` holds);
- ``absence``: one of ``start`` arrives and none of ``cancel`` follows within ``wait``
  (each further ``start`` moves the deadline), optionally correlated by ``key`` (an event
  property such as ``product_id`` or ``cart_id``);
- ``inactivity``: no event (or none of ``events``) from the user for ``wait``;
- ``date``: on (or ``offset_days`` from) the yearly anniversary of a profile date, at a
  local time in the user's time zone;
- ``segment_entry``: the user enters a segment (once per crossing);
- ``threshold``: a value (e.g. the engagement score) rises above / falls below a bound;
- ``sequence``: ordered steps with delays from the start event, each with its own
  template and condition, ended early by ``exit`` events.

Every rule has a ``category``: ``marketing`` sends need email consent and obey the
frequency cap and quiet hours; ``transactional`` ones do not. A marketing rule may belong
to one of the ``subscriptions`` the file declares (``subscription: offers``): users who
left that subscription get none of its mail. A marketing rule (or one step of a
sequence) with ``send_at: best_hour`` waits up to ``max_delay`` for the hour at which the
user usually reads mail (see :mod:`profiles.hours`).
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError
from babel.numbers import is_currency
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from profiles.aggregates import RecommendationConfig
from profiles.events import EVENT_TYPE_PATTERN, SUBSCRIPTION_PATTERN
from profiles.features import LifecycleConfig
from profiles.model import MAX_SENDS, ScoringConfig
from render import normalise_locale
from triggers.durations import Duration, format_duration

__all__ = [
    "DEFAULT_MAX_DELAY",
    "MAX_MAX_DELAY",
    "AbsenceRule",
    "AllOf",
    "AnyOf",
    "Attribution",
    "Brand",
    "BrandColors",
    "Condition",
    "DateRule",
    "Experimental",
    "FrequencyCap",
    "Guards",
    "InactivityRule",
    "NotOf",
    "OnEventRule",
    "Predictions",
    "QuietHours",
    "Rule",
    "RulesConfig",
    "SegmentEntryRule",
    "Sender",
    "SequenceRule",
    "SequenceStep",
    "ThresholdRule",
    "Tracking",
    "Variant",
]

RULE_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
Category = Literal["marketing", "transactional"]
_FROZEN = ConfigDict(frozen=True, extra="forbid")

#: how long ``send_at: best_hour`` may hold a send back when ``max_delay`` is not given
DEFAULT_MAX_DELAY = timedelta(hours=24)
#: the longest ``max_delay`` (a week holds every hour of the day several times over)
MAX_MAX_DELAY = timedelta(days=7)


def _check_max_delay(value: timedelta | None) -> timedelta | None:
    if value is not None and value > MAX_MAX_DELAY:
        raise ValueError(
            f"max_delay {format_duration(value)} is longer than {format_duration(MAX_MAX_DELAY)}"
        )
    return value


def _check_event_types(values: list[str] | None) -> list[str] | None:
    for value in values or []:
        if not EVENT_TYPE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not an event type (lowercase [a-z0-9_.]+)")
    return values


def _check_subscriptions(values: list[str] | str | None) -> list[str] | str | None:
    for value in [values] if isinstance(values, str) else values or []:
        if not SUBSCRIPTION_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a subscription name (lowercase [a-z0-9_], at most 40)"
            )
    return values


# --- conditions ----------------------------------------------------------------------------


class AllOf(BaseModel):
    model_config = _FROZEN
    all: list[Condition] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = _FROZEN
    any: list[Condition] = Field(min_length=1)


class NotOf(BaseModel):
    model_config = _FROZEN
    not_: Condition = Field(alias="not")


#: a Jinja2 expression over ``event``, ``profile``, ``segments`` and ``now``, or a nested
#: ``all`` / ``any`` / ``not`` of them
Condition = str | AllOf | AnyOf | NotOf


# --- rules ---------------------------------------------------------------------------------


class _RuleBase(BaseModel):
    model_config = _FROZEN

    id: str = Field(pattern=RULE_ID_PATTERN, max_length=64)
    description: str = ""
    enabled: bool = True
    category: Category = "marketing"
    condition: Condition | None = None
    #: when several rules fire for a user at the same moment, the highest priority sends
    priority: int = 0
    #: ``always``: every trigger instance may send; ``once``: at most one send, ever
    reentry: Literal["always", "once"] = "always"
    #: at least this long between two sends of this rule to one user
    cooldown: Duration | None = None
    #: ``false`` lets this marketing rule send during quiet hours
    quiet_hours: bool = True
    #: ``best_hour``: a marketing send waits for the hour the user usually reads mail at
    send_at: Literal["best_hour"] | None = None
    #: the longest ``send_at`` holds a send back (:data:`DEFAULT_MAX_DELAY` if not given)
    max_delay: Duration | None = None
    #: the subscription (one of ``subscriptions:``) this marketing rule's mail belongs to
    subscription: str | None = None

    _max_delay = field_validator("max_delay")(_check_max_delay)
    _subscription = field_validator("subscription")(_check_subscriptions)

    def best_hour_delay(self, step: int | None = None) -> timedelta | None:
        """How long a send (of sequence ``step``) may wait for the user's best hour;
        ``None``: it sends at once."""
        if self.send_at != "best_hour":
            return None
        return self.max_delay or DEFAULT_MAX_DELAY


# --- experiments ---------------------------------------------------------------------------

#: arm names the engine gives itself (see :mod:`triggers.arms`)
_RESERVED_ARMS = ("holdout", "default")


class Variant(BaseModel):
    """One arm of an experiment: the rule's mail with another subject line or template."""

    model_config = _FROZEN

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,31}$")
    #: relative share of the users not held out (``strategy: fixed``)
    weight: float = Field(default=1.0, gt=0)
    #: a Jinja subject line replacing the template's ``subject.txt``
    subject: str | None = Field(default=None, min_length=1)
    #: another template for this arm
    template: str | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in _RESERVED_ARMS:
            raise ValueError(f"{value!r} is the name of an arm nudge keeps for itself")
        return value


class Experimental(BaseModel):
    """What a rule, or a sequence step, may declare to test its mail (see
    :mod:`triggers.experiments`)."""

    model_config = _FROZEN

    #: the experiment's id in counters and reports; default: the rule id (a sequence
    #: step: ``rule#step``). A new id starts a new experiment (users are re-assigned)
    experiment: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_#.-]{0,63}$")
    variants: list[Variant] = []
    #: the share of users kept from the mail, to measure what it changes
    holdout: float = Field(default=0.0, ge=0, lt=1)
    #: ``fixed``: variants by weight; ``thompson``: Thompson sampling on ``goal``
    strategy: Literal["fixed", "thompson"] = "fixed"
    #: what ``thompson`` maximises, per exposure
    goal: Literal["open", "click", "conversion"] = "click"

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"variants named more than once: {repeated}")
        return variants

    @model_validator(mode="after")
    def _sampled(self) -> Experimental:
        if self.strategy == "thompson" and len(self.variants) < 2:
            raise ValueError("strategy thompson needs at least two variants")
        return self

    @property
    def experimental(self) -> bool:
        """Whether there is anything to assign (variants or a holdout)."""
        return bool(self.variants) or self.holdout > 0


class _Templated(_RuleBase, Experimental):
    template: str = Field(min_length=1)


class OnEventRule(_Templated):
    kind: Literal["on_event"]
    events: list[str] = Field(min_length=1)

    _types = field_validator("events")(_check_event_types)


class AbsenceRule(_Templated):
    kind: Literal["absence"]
    start: list[str] = Field(min_length=1)
    cancel: list[str] = Field(min_length=1)
    wait: Duration
    #: correlate start and cancel by this event property (also found in ``items[]``)
    key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+$")
    #: named conditions on the profile: after a start event, the first that holds cancels
    #: every pending instance, with its name as the reason (e.g. ``cart_emptied``)
    cancel_when: dict[Annotated[str, Field(pattern=RULE_ID_PATTERN)], Condition] = {}

    _types = field_validator("start", "cancel")(_check_event_types)

    @model_validator(mode="after")
    def _disjoint(self) -> AbsenceRule:
        both = set(self.start) & set(self.cancel)
        if both:
            raise ValueError(f"event types both start and cancel the rule: {sorted(both)}")
        return self


class InactivityRule(_Templated):
    kind: Literal["inactivity"]
    wait: Duration
    #: the event types that count as activity; all of them when omitted
    events: list[str] | None = None

    _types = field_validator("events")(_check_event_types)


_DATE_FIELD = r"^(signed_up_at|first_seen|last_purchase_at|traits\.[A-Za-z0-9_]+)$"


class DateRule(_Templated):
    kind: Literal["date"]
    #: a profile date: ``traits.birthday``, ``signed_up_at``, ``first_seen``, ...
    field: str = Field(pattern=_DATE_FIELD)
    #: days relative to the anniversary (negative: before it)
    offset_days: int = Field(default=0, ge=-180, le=180)
    #: local time of day in the user's time zone
    at: time = time(9, 0)


class SegmentEntryRule(_Templated):
    kind: Literal["segment_entry"]
    segment: str


class ThresholdRule(_Templated):
    kind: Literal["threshold"]
    #: an expression for the watched value, e.g. ``profile.score`` or ``profile.total_spent``
    value: str = Field(min_length=1)
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")
        return self

    def expression(self) -> str:
        if self.above is not None:
            return f"(({self.value}) or 0) > {self.above!r}"
        return f"(({self.value}) or 0) < {self.below!r}"


class SequenceStep(Experimental):
    model_config = _FROZEN

    #: time from the start event; the first step usually has none
    delay: Duration = timedelta(0)
    template: str = Field(min_length=1)
    condition: Condition | None = None
    #: as on a rule; a step without them follows the rule's
    send_at: Literal["best_hour"] | None = None
    max_delay: Duration | None = None

    _max_delay = field_validator("max_delay")(_check_max_delay)


class SequenceRule(_RuleBase):
    kind: Literal["sequence"]
    start: list[str] = Field(min_length=1)
    #: events that end the sequence early
    exit: list[str] = []
    steps: list[SequenceStep] = Field(min_length=1)
    reentry: Literal["always", "once"] = "once"

    _types = field_validator("start", "exit")(_check_event_types)

    @model_validator(mode="after")
    def _ordered(self) -> SequenceRule:
        for index, (before, after) in enumerate(zip(self.steps, self.steps[1:], strict=False)):
            if after.delay < before.delay:
                raise ValueError(
                    f"step {index + 1} (delay {format_duration(after.delay)}) would come "
                    f"before step {index} (delay {format_duration(before.delay)}): "
                    "steps must be in delay order"
                )
        return self

    def best_hour_delay(self, step: int | None = None) -> timedelta | None:
        """As for other rules, with the step's ``send_at`` / ``max_delay`` first."""
        own = self.steps[step] if step is not None and step < len(self.steps) else None
        if (own.send_at if own else None) is None and self.send_at is None:
            return None
        return (own.max_delay if own else None) or self.max_delay or DEFAULT_MAX_DELAY


Rule = Annotated[
    OnEventRule
    | AbsenceRule
    | InactivityRule
    | DateRule
    | SegmentEntryRule
    | ThresholdRule
    | SequenceRule,
    Field(discriminator="kind"),
]


# --- guards and the whole file ------------------------------------------------------------

_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


class QuietHours(BaseModel):
    """Marketing mail due inside this local-time window waits until it ends."""

    model_config = _FROZEN

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        if isinstance(value, str) and not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a time of day like '21:00'")
        if isinstance(value, int):  # YAML reads 21:00 as sexagesimal minutes
            return time(value // 60 % 24, value % 60)
        return value


class FrequencyCap(BaseModel):
    """At most ``max`` marketing sends per user in any rolling ``window``."""

    model_config = _FROZEN

    #: bounded by the send history each profile keeps
    max: int = Field(ge=1, le=MAX_SENDS)
    window: Duration


class Guards(BaseModel):
    model_config = _FROZEN

    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    #: the time zone of users whose profile has none
    default_timezone: str = "UTC"

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from profiles.events import _check_zone

        return _check_zone(value) or value


_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _check_token_url(value: str, token: str, example: str, https_why: str) -> str:
    """``value`` if it is an ``https://`` URL with ``{token}`` and no other placeholder;
    ``token`` says what the token is, ``example`` shows a URL, ``https_why`` why HTTPS."""
    placeholders = set(_PLACEHOLDER.findall(value))
    if "{token}" not in placeholders:
        raise ValueError(f"must contain {{token}}, where the signed {token} goes (e.g. {example})")
    if unknown := sorted(placeholders - {"{token}"}):
        raise ValueError(f"unknown placeholder {', '.join(unknown)}: only {{token}} is filled in")
    if not (value.startswith("https://") or _loopback(value)):
        raise ValueError(
            f"must be an https:// URL ({https_why}; http:// only to this machine's "
            "loopback address, for development)"
        )
    return value


def _loopback(url: str) -> bool:
    """Whether ``url`` is ``http://`` to a loopback host (``localhost``, ``127.0.0.1``,
    ``[::1]``): the token then never leaves the machine."""
    try:
        parts = urlsplit(url.replace("{token}", "t"))
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class Sender(BaseModel):
    """Who the mail is from, and where recipients unsubscribe: ``unsubscribe_url`` is an
    HTTPS URL with ``{token}`` where the signed unsubscribe token goes (see
    :mod:`profiles.unsubscribe`); templates see it as ``unsubscribe_url``."""

    model_config = _FROZEN

    from_email: str = Field(default="hello@example.com", pattern=r"^[^@\s]+@[^@\s]+$")
    from_name: str = "nudge"
    reply_to: str | None = None
    unsubscribe_url: str = "https://example.com/u/{token}"

    @field_validator("unsubscribe_url")
    @classmethod
    def _signed(cls, value: str) -> str:
        placeholders = set(_PLACEHOLDER.findall(value))
        if "{user_id}" in placeholders:
            raise ValueError(
                "{user_id} is refused: anyone could unsubscribe anyone by changing the id "
                "in a link; put {token} where the signed token goes "
                "(e.g. https://shop.example/u/{token}), and verify it where the link lands"
            )
        return _check_token_url(
            value,
            "unsubscribe token",
            "https://shop.example/u/{token}",
            "one-click unsubscribe, RFC 8058",
        )


class Tracking(BaseModel):
    """Click and open tracking (see :mod:`profiles.links`). ``click_url``: every http(s)
    link of a mail's HTML leads there instead, with ``{token}`` the signed token naming
    the user, the mail and the link's own URL (the endpoint verifies it, counts the click
    and redirects); ``open_url``: the address of a 1x1 image at the end of the HTML, its
    ``{token}`` naming the user and the mail. Either absent: links stay as they are / no
    image. Both are HTTPS URLs with ``{token}`` and no other placeholder."""

    model_config = _FROZEN

    click_url: str | None = None
    open_url: str | None = None

    @field_validator("click_url", "open_url")
    @classmethod
    def _signed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        example = _TRACKING_EXAMPLES[info.field_name or ""]
        why = "the token names the user: it must not cross the network in the clear"
        return _check_token_url(value, "token", example, why)


_TRACKING_EXAMPLES = {
    "click_url": "https://t.shop.example/c/{token}",
    "open_url": "https://t.shop.example/o/{token}.gif",
}


class Attribution(BaseModel):
    """Which purchases count for a mail (see :mod:`profiles.attribution`)."""

    model_config = _FROZEN

    #: a purchase this long after a send (or a holdout's withheld send) counts for it
    window: Duration = timedelta(days=5)


_COLOUR = r"^#([0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$"


class BrandColors(BaseModel):
    """The colours the shared layout paints with (``#rgb`` or ``#rrggbb``)."""

    model_config = _FROZEN

    primary: str = Field(default="#1a73e8", pattern=_COLOUR)
    text: str = Field(default="#202124", pattern=_COLOUR)
    background: str = Field(default="#f4f4f4", pattern=_COLOUR)


class Brand(BaseModel):
    """Who the mail looks like it is from: templates see it as ``brand``.

    ``address`` is the postal address the footer of every mail shows; commercial mail
    must carry one (CAN-SPAM), so ``nudge validate`` refuses marketing rules without it.
    ``locale`` and ``currency`` are what templates format in for a user without a locale
    (or with one nobody knows) and for ``money`` without a currency.
    """

    model_config = _FROZEN

    #: the shop's name (default: ``sender.from_name``)
    name: str | None = Field(default=None, min_length=1)
    #: the shop's website (the logo and buttons link to it)
    url: str | None = Field(default=None, pattern=r"^https://\S+$")
    logo_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    colors: BrandColors = BrandColors()
    #: the postal address, one line or several
    address: str | None = None
    locale: str = "en_US"
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        normal = normalise_locale(value)
        try:
            Locale.parse(normal or "")
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a locale Babel knows (en_US, de_DE, ...)") from exc
        return normal or value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if not is_currency(value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code (USD, EUR, ...)")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class Predictions(BaseModel):
    """Where the trained model lives, and how long a user's scores count as fresh."""

    model_config = _FROZEN

    #: the directory ``nudge model train`` wrote, relative to the config directory;
    #: none: no predictions (``NUDGE_MODEL_DIR`` overrides it)
    model: str | None = Field(default=None, min_length=1)
    #: how long stored scores count as fresh: a rule reading ``profile.predicted`` has the
    #: user re-scored this long after their last scoring, without an event
    refresh: Duration = timedelta(days=1)

    @field_validator("refresh")
    @classmethod
    def _sensible_refresh(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError(
                "refresh must be at least 1m (every scored user is re-scored this often)"
            )
        return value


class RulesConfig(BaseModel):
    """The whole file's shape. What refers across it (unique rule ids, known segments,
    event types, templates, fields) is checked by :mod:`triggers.checks` on the raw
    document, so a schema error elsewhere cannot hide it."""

    model_config = _FROZEN

    version: Literal[1] = 1
    sender: Sender = Sender()
    #: the shop's look and postal address, for templates (``brand``)
    brand: Brand = Brand()
    scoring: ScoringConfig = ScoringConfig()
    #: shop-wide statistics and recommendations (see :mod:`profiles.aggregates`)
    recommendations: RecommendationConfig = RecommendationConfig()
    #: the thresholds of ``profile.lifecycle``
    lifecycle: LifecycleConfig = LifecycleConfig()
    guards: Guards = Guards()
    #: named conditions; rules and templates see ``segments`` (the names the user is in)
    segments: dict[str, Condition] = {}
    #: custom event types rules may name (known types need no declaration)
    custom_events: list[str] = []
    #: the subscriptions users may leave one by one (``consent`` / ``unsubscribe`` events
    #: with a ``category``); a marketing rule names its own with ``subscription``
    subscriptions: list[str] = []
    #: the prediction model conditions and templates read as ``profile.predicted``
    predictions: Predictions = Predictions()
    #: opens, clicks and purchases counted for the mail that preceded them
    attribution: Attribution = Attribution()
    #: click links and the open pixel (none: links stay as they are, no pixel)
    tracking: Tracking = Tracking()
    #: the longest a timer may stay leased by a worker that died before completing it
    timer_lease: Duration = timedelta(seconds=60)
    rules: list[Rule] = []

    _types = field_validator("custom_events")(_check_event_types)

    @field_validator("subscriptions")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        _check_subscriptions(names)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"subscriptions named more than once: {repeated}")
        return names

    @model_validator(mode="after")
    def _brand_name(self) -> RulesConfig:
        """A brand without a name is called what the mail's sender is."""
        if self.brand.name is None:
            brand = self.brand.model_copy(update={"name": self.sender.from_name})
            object.__setattr__(self, "brand", brand)  # frozen, and still being built
        return self

    @model_validator(mode="after")
    def _hours_zone(self) -> RulesConfig:
        """Users without a time zone count their mail hours in ``guards.default_timezone``.

        The profile fold sees only ``scoring``, so the zone is handed to it here (unless
        ``scoring.send_hours`` names its own).
        """
        hours = self.scoring.send_hours
        if hours.default_timezone is None:
            zone = self.guards.default_timezone
            scoring = self.scoring.model_copy(
                update={"send_hours": hours.model_copy(update={"default_timezone": zone})}
            )
            object.__setattr__(self, "scoring", scoring)  # frozen, and still being built
        return self


for _model in (AllOf, AnyOf, NotOf, SequenceStep, RulesConfig):
    _model.model_rebuild()

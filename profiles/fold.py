"""How an event changes a profile.

:func:`apply_event` is pure: ``(profile | None, event, scoring, products) -> profile |
None``. The Redis store and the in-memory store only persist what it returns, so both
behave alike and rule evaluation sees the same profile whichever store is behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import orjson

from profiles.addresses import InvalidAddress, normalise_address
from profiles.behaviour import keep_last_cart, observe
from profiles.catalog import Product
from profiles.consent import apply_consent, consent_change
from profiles.events import (
    AddToCart,
    Bounce,
    CheckoutStarted,
    Consent,
    Event,
    ProfileUpdate,
    Purchase,
    RemoveFromCart,
    Signup,
    Unsubscribe,
)
from profiles.hours import note_hour
from profiles.model import (
    MAX_CART_LINES,
    MAX_COUNTS,
    MAX_TRAITS,
    Cart,
    CartLine,
    Profile,
    ScoringConfig,
    decayed_score,
)

__all__ = ["ADDRESS_EVENTS", "address_set_by", "apply_event", "check_address"]

_NO_PRODUCTS: Mapping[str, Product] = {}


def apply_event(
    profile: Profile | None,
    event: Event,
    scoring: ScoringConfig,
    *,
    products: Mapping[str, Product] = _NO_PRODUCTS,
    in_place: bool = False,
) -> Profile | None:
    """Return the profile after ``event`` (``None`` once the user asked to be erased).

    ``products`` are the catalog entries the event may name (brands for brand affinity,
    categories the event leaves out). ``profile`` is left as it was unless ``in_place``
    (the engine's hot path, which owns the profile it loaded and saves a copy per event
    that way).
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
    _count(profile.counts, event.type)
    _apply_typed(profile, event)
    _add_score(profile, event, scoring)
    observe(profile, event, scoring, products)
    profile.open_hours = note_hour(
        profile.open_hours, event.type, event.ts, profile.timezone, scoring.send_hours
    )
    return profile


def _count(counts: dict[str, int], event_type: str) -> None:
    if event_type in counts or len(counts) < MAX_COUNTS:
        counts[event_type] = counts.get(event_type, 0) + 1


def _apply_typed(profile: Profile, event: Event) -> None:
    props = event.typed
    if isinstance(props, Signup):
        profile.email, profile.email_invalid = props.email, None  # validated by the contract
        _keep_undeliverable(profile)
        profile.first_name = props.first_name or profile.first_name
        profile.last_name = props.last_name or profile.last_name
        profile.locale = props.locale or profile.locale
        profile.timezone = props.timezone or profile.timezone
        apply_consent(profile, consent_change(event, props))
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
        keep_last_cart(profile, event.ts, "bought", profile.cart.lines or _lines(props))
        profile.cart = Cart()
    elif isinstance(props, Consent | Unsubscribe):
        apply_consent(profile, consent_change(event, props))
    elif isinstance(props, Bounce):
        _bounce(profile, event, props)


#: traits that map onto first-class profile fields
_IDENTITY_TRAITS = ("email", "first_name", "last_name", "locale", "timezone")


def _lines(purchase: Purchase) -> list[CartLine]:
    """A purchase's items as cart lines (a purchase made without a cart nudge saw)."""
    return [
        CartLine(
            product_id=item.product_id,
            name=item.name,
            category=item.category,
            price=item.price,
            quantity=item.quantity,
        )
        for item in purchase.items
    ]


def _apply_traits(profile: Profile, traits: dict[str, Any]) -> None:
    for name, value in traits.items():
        if name == "email":
            _set_address(profile, value)
        elif name in _IDENTITY_TRAITS and (value is None or isinstance(value, str)):
            setattr(profile, name, value)
        elif name in profile.traits or len(profile.traits) < MAX_TRAITS:
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
    _keep_undeliverable(profile)


def _bounce(profile: Profile, event: Event, props: Bounce) -> None:
    """A hard bounce of the address the profile holds marks it undeliverable (as of the
    first one); a soft bounce, or a bounce of an address the user has since replaced,
    changes nothing."""
    if props.kind != "hard" or not _same_address(props.email, profile.email):
        return
    first = profile.undeliverable_at
    profile.undeliverable = profile.email
    profile.undeliverable_at = event.ts if first is None else min(first, event.ts)


def _keep_undeliverable(profile: Profile) -> None:
    """The undeliverable mark names the profile's address: another one, or none, clears it
    (the same address set again keeps it)."""
    if profile.undeliverable is not None and not _same_address(
        profile.undeliverable, profile.email
    ):
        profile.undeliverable = profile.undeliverable_at = None


def _same_address(address: str, other: str | None) -> bool:
    """Whether two normalised addresses name one mailbox, as the suppression list matches
    them (case-insensitively: a mailer may report the local part in another case)."""
    return other is not None and address.casefold() == other.casefold()


def _add_to_cart(profile: Profile, event: Event, props: AddToCart) -> None:
    cart = profile.cart
    if props.cart_id and cart.cart_id and props.cart_id != cart.cart_id:
        keep_last_cart(profile, event.ts, "abandoned", cart.lines)
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
    if len(cart.items) > MAX_CART_LINES:
        del cart.items[next(iter(cart.items))]


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


#: the event types that may set an address or grant consent afresh (:func:`check_address`)
ADDRESS_EVENTS = frozenset({"signup", "profile_update", "consent"})


def check_address(profile: Profile, event: Event, erased: Mapping[str, int]) -> str | None:
    """Keep ``profile.address_erased_at`` true after ``event`` (a type in
    :data:`ADDRESS_EVENTS`, already applied); return the address it takes off the
    suppression list, if any.

    ``erased`` maps the addresses the batch's events set to their erase time (epoch ms),
    for those on the list. An address set by a signup or a ``profile_update`` that is on
    it is marked; a fresh consent grant dated after the erasure (a signup with
    ``consent.email``, or a ``consent`` event granting email) clears the mark and the
    list entry. A new address not on the list clears the mark.
    """
    address = profile.email
    if address is None:
        profile.address_erased_at = None
        return None
    if _sets_address(event):
        erased_ms = erased.get(address)
    elif profile.address_erased_at is not None:
        erased_ms = int(profile.address_erased_at.timestamp() * 1000)
    else:
        return None
    if erased_ms is None:
        profile.address_erased_at = None
        return None
    if _grants_consent(event) and event.ts_ms > erased_ms:
        profile.address_erased_at = None
        return address
    if _sets_address(event):
        profile.address_erased_at = datetime.fromtimestamp(erased_ms / 1000, tz=UTC)
    return None


def _sets_address(event: Event) -> bool:
    props = event.typed
    return isinstance(props, Signup) or (
        isinstance(props, ProfileUpdate) and "email" in props.traits
    )


def address_set_by(event: Event) -> str | None:
    """The address ``event`` gives its user, normalised (``None``: none, or not valid)."""
    props = event.typed
    if isinstance(props, Signup):
        return props.email
    value = props.traits.get("email") if isinstance(props, ProfileUpdate) else None
    if isinstance(value, str):
        with suppress(InvalidAddress):
            return normalise_address(value)
    return None


def _grants_consent(event: Event) -> bool:
    props = event.typed
    if isinstance(props, Signup):
        return props.consent.email
    return (
        isinstance(props, Consent)
        and props.granted
        and props.category is None  # a category grant is not a global one
    )

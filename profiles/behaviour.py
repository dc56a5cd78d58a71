"""What an event says about a user's tastes and habits: decayed category and brand
affinity, recently viewed and bought products, purchases per day, and the feedback loop
of marketing mail (what a send featured, and whether it was clicked or ignored).

All of it mutates a profile the fold owns (:func:`profiles.fold.apply_event`), except
:func:`settle_feedback`, the pure entry point for callers outside the fold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

from profiles.catalog import Product
from profiles.events import AddToCart, EmailClick, EmailOpen, Event, ProductView, Purchase
from profiles.features import (
    add_activity,
    add_purchase,
    add_weight,
    day_number,
    push_recent,
    rescale,
)
from profiles.model import CartLine, LastCart, Profile, ScoringConfig

__all__ = [
    "MAX_LAST_CART_LINES",
    "MAX_PURCHASED",
    "MAX_RECENTLY_VIEWED",
    "keep_last_cart",
    "observe",
    "settle_feedback",
]

MAX_RECENTLY_VIEWED = 12
MAX_PURCHASED = 30
MAX_LAST_CART_LINES = 5


def observe(
    profile: Profile, event: Event, scoring: ScoringConfig, products: Mapping[str, Product]
) -> None:
    """Fold what ``event`` says about tastes and habits into ``profile`` (in place),
    after settling the feedback of sends whose window ended by the event's time."""
    if profile.featured:
        _settle(profile, event.ts, scoring)
    add_activity(profile.activity_days, day_number(event.ts), event.type)
    props = event.typed
    if isinstance(props, ProductView):
        push_recent(profile.recently_viewed, props.product_id, MAX_RECENTLY_VIEWED)
    elif isinstance(props, Purchase):
        _purchase(profile, event.ts, props)
    elif isinstance(props, EmailOpen | EmailClick):
        _react(profile, event, props, scoring)
    weight = scoring.affinity.get(event.type)
    if weight:
        _interest(profile, event, weight, scoring, products)


def _purchase(profile: Profile, at: datetime, props: Purchase) -> None:
    profile.purchase_days = add_purchase(profile.purchase_days, day_number(at), props.total)
    for item in props.items:
        push_recent(profile.purchased_products, item.product_id, MAX_PURCHASED)


def _interest(
    profile: Profile,
    event: Event,
    weight: float,
    scoring: ScoringConfig,
    products: Mapping[str, Product],
) -> None:
    """Add ``weight`` to the categories and brands of the products the event names (a
    category the event leaves out is taken from the catalog)."""
    props = event.typed
    if isinstance(props, ProductView | AddToCart):
        named: list[tuple[str, str | None]] = [(props.product_id, props.category)]
    elif isinstance(props, Purchase):
        named = [(item.product_id, item.category) for item in props.items]
    else:
        return
    weight *= _rebase(profile, event.ts, scoring)
    for product_id, category in named:
        product = products.get(product_id) if products else None
        if product is not None:
            category = category or product.category
            if product.brand:
                add_weight(profile.brand_affinity, product.brand, weight)
        if category:
            add_weight(profile.affinity, category, weight)


#: the affinities' reference time moves up to an event at least this much later (all
#: values rescaled); a closer one adds its weight scaled to the reference time instead
_REBASE_AFTER_DAYS = 1.0


def _rebase(profile: Profile, at: datetime, scoring: ScoringConfig) -> float:
    """The factor that weighs something that happened at ``at`` as of the affinities'
    reference time, after moving that time up to ``at`` if it is a day or more later
    (so values stay near their current size and rescaling is at most daily)."""
    reference = profile.affinity_at
    if reference is None:
        profile.affinity_at = at
        return 1.0
    elapsed_days = (at - reference).total_seconds() / 86400
    half_life = scoring.affinity_half_life_days
    if elapsed_days >= _REBASE_AFTER_DAYS:
        factor = math.pow(0.5, elapsed_days / half_life)
        rescale(profile.affinity, factor)
        rescale(profile.brand_affinity, factor)
        profile.affinity_at = at
        return 1.0
    return math.pow(2.0, elapsed_days / half_life)  # above 1 after the reference, below before


def _react(
    profile: Profile, event: Event, props: EmailOpen | EmailClick, scoring: ScoringConfig
) -> None:
    """An open or click of a featured send: opened, or clicked (its categories gain the
    click weight, at the first click only)."""
    send = next((s for s in profile.featured if s.request_id == props.message_id), None)
    if send is None or send.state == "clicked":
        return
    if isinstance(props, EmailOpen):
        send.state = "opened" if send.state == "sent" else send.state
        return
    send.state = "clicked"
    _adjust(profile, send.categories, scoring.feedback.click, event.ts, scoring)


def _adjust(
    profile: Profile, categories: list[str], weight: float, at: datetime, scoring: ScoringConfig
) -> None:
    if weight:
        factor = _rebase(profile, at, scoring)
        for category in categories:
            add_weight(profile.affinity, category, weight * factor)


def _settle(profile: Profile, now: datetime, scoring: ScoringConfig) -> None:
    """Settle every send still ``sent`` whose window ended by ``now`` as ``ignored``, its
    categories weakened as of the window's end (so when it is settled does not matter)."""
    window = timedelta(days=scoring.feedback.window_days)
    for send in profile.featured:
        if send.state == "sent" and send.at + window <= now:
            send.state = "ignored"
            penalty = -scoring.feedback.ignored
            _adjust(profile, send.categories, penalty, send.at + window, scoring)


def settle_feedback(profile: Profile, now: datetime, scoring: ScoringConfig) -> Profile:
    """``profile`` with the sends ignored until ``now`` settled (their categories
    weakened once); the same object if there was nothing to settle, else a copy.

    The fold settles at each event; call this before rendering to see affinities that
    account for mail ignored since the user's last event.
    """
    window = timedelta(days=scoring.feedback.window_days)
    if not any(s.state == "sent" and s.at + window <= now for s in profile.featured):
        return profile
    settled = profile.model_copy(deep=True)
    _settle(settled, now, scoring)
    return settled


def keep_last_cart(
    profile: Profile, at: datetime, outcome: Literal["bought", "abandoned"], lines: list[CartLine]
) -> None:
    """Remember a non-empty cart that was bought or abandoned (its first lines)."""
    if not lines:
        return
    profile.last_cart = LastCart(
        at=at,
        outcome=outcome,
        cart_id=profile.cart.cart_id,
        lines=lines[:MAX_LAST_CART_LINES],
    )

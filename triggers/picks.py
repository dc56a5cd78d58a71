"""The catalog and recommendations as one mail's template sees them.

A render gets ``recommend(n=4, strategy="auto")``, ``catalog(product_id)`` and
``recently_viewed`` (see README, "Recommendations"). All three read the batch's
:class:`~profiles.Lookups`, never Redis, so a render is a pure function of the profile,
the lookups and the time. :class:`Picks` remembers every product the mail showed: the
send request lists them, and the profile records them for the feedback loop (a click
strengthens their categories, an ignored mail weakens them).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from jinja2.exceptions import TemplateRuntimeError

from profiles import Lookups, Product, Profile
from triggers.loader import RuleSet
from triggers.recommend import STRATEGIES, Strategy, Taste, recommend

__all__ = ["Picks", "seed_products", "taste_of"]

#: bought products whose also-bought rows a recommendation starts from (newest first)
BOUGHT_SEEDS = 5


def seed_products(profile: Profile) -> list[str]:
    """The products a user's recommendations start from, newest intent first: the cart,
    the products bought last, then those viewed (repeats possible). A batch fetches
    their catalog entries and rows before it folds (see :class:`~triggers.Engine`)."""
    cart = list(reversed(profile.cart.items))
    return [*cart, *profile.purchased_products[:BOUGHT_SEEDS], *profile.recently_viewed]


def taste_of(ruleset: RuleSet, profile: Profile, now: datetime) -> Taste:
    """What ``profile``'s recommendations start from at ``now``.

    Recent items, newest intent first: the cart, the products bought last, then those
    viewed. Excluded: what is in the cart, what was bought, and what marketing mail
    featured within ``recommendations.exclude_recent_days``.
    """
    config = ruleset.config
    recent = dict.fromkeys(seed_products(profile))
    featured = profile.recommended_recently(now, config.recommendations.exclude_recent_days)
    return Taste(
        recent=tuple(recent),
        categories=profile.affinities_now(now, config.scoring),
        brands=profile.brand_affinities_now(now, config.scoring),
        exclude=frozenset([*profile.cart.items, *profile.purchased_products, *featured]),
    )


class Picks:
    """The template functions of one render, and what they showed.

    ``recommend`` with the same arguments gives the same products in every part of the
    mail (subject, HTML, text); a first call excludes what the mail showed before it.
    """

    def __init__(self, ruleset: RuleSet, profile: Profile, lookups: Lookups, now: datetime) -> None:
        self._ruleset, self._profile, self._now = ruleset, profile, now
        self._lookups = lookups
        self._taste: Taste | None = None
        self._picked: dict[tuple[int, str], list[Product]] = {}
        #: products shown, by id, in order of first appearance
        self.shown: dict[str, Product] = {}

    def functions(self) -> dict[str, Any]:
        """The names a template sees."""
        known = self._lookups.products
        viewed = [known[p] for p in self._profile.recently_viewed if p in known]
        return {"recommend": self.recommend, "catalog": self.catalog, "recently_viewed": viewed}

    def recommend(self, n: int = 4, strategy: Strategy = "auto") -> list[Product]:
        """Up to ``n`` products for this user (fewer when the shop knows too little)."""
        # a template error (the mail is suppressed as render_error), never one that
        # fails the batch: recommend('similar') passes the strategy as n
        if strategy not in STRATEGIES:
            raise TemplateRuntimeError(
                f"recommend(): unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}"
            )
        try:
            key = (max(0, int(n)), strategy)
        except (TypeError, ValueError, OverflowError):
            raise TemplateRuntimeError(f"recommend(): n must be a number, not {n!r}") from None
        picked = self._picked.get(key)
        if picked is None:
            if self._taste is None:
                self._taste = taste_of(self._ruleset, self._profile, self._now)
            taste = replace(self._taste, exclude=self._taste.exclude | self.shown.keys())
            picked = self._picked[key] = recommend(taste, self._lookups, key[0], strategy)
        return self._show(picked)

    def catalog(self, product_id: Any) -> Product | None:
        """The catalog entry of ``product_id``, or ``None`` when the catalog lacks it."""
        product = self._lookups.products.get(str(product_id)) if product_id else None
        return None if product is None else self._show([product])[0]

    def _show(self, products: list[Product]) -> list[Product]:
        for product in products:
            self.shown.setdefault(product.product_id, product)
        return products

    @property
    def categories(self) -> list[str]:
        """The categories of what was shown, in order, without repeats."""
        return list(dict.fromkeys(p.category for p in self.shown.values() if p.category))

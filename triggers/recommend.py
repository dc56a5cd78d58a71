"""Product recommendations for one user: pure functions of a :class:`Taste` and the
batch's :class:`profiles.Lookups` (no I/O, deterministic, ties broken by product id).

Strategies:

- ``also_bought``: the also-bought rows of the user's recent items, each row scaled to
  its strongest entry and by recency (the newest item counts most), summed;
- ``similar``: the most popular products of the user's strongest categories, a
  category's products weighted by its affinity, a liked brand lifting a product;
- ``popular``: the shop's most popular products (cold start);
- ``auto``: ``also_bought``, then ``similar``, then ``popular``, until ``n``.

Every strategy recommends only products in the catalog (``lookups.products``), in stock
and not in ``taste.exclude``, each once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from profiles import Lookups, Product, Ranked

__all__ = ["MAX_RECENT", "STRATEGIES", "Strategy", "Taste", "recommend"]

Strategy = Literal["auto", "also_bought", "similar", "popular"]
STRATEGIES: tuple[Strategy, ...] = ("auto", "also_bought", "similar", "popular")
#: recent items whose also-bought rows count
MAX_RECENT = 10
#: how much the best-liked brand lifts a product in ``similar`` (1.5: half as much again)
BRAND_LIFT = 0.5


@dataclass(frozen=True)
class Taste:
    """What a user's recommendations start from."""

    #: product ids the user bought, carted or viewed, newest first
    recent: tuple[str, ...] = ()
    #: category -> affinity strength (any positive scale)
    categories: Mapping[str, float] = field(default_factory=dict)
    #: brand -> affinity strength (any positive scale)
    brands: Mapping[str, float] = field(default_factory=dict)
    #: never recommended: bought, and recommended recently
    exclude: frozenset[str] = frozenset()


def recommend(
    taste: Taste, lookups: Lookups, n: int = 4, strategy: Strategy = "auto"
) -> list[Product]:
    """Up to ``n`` products for a user of ``taste``, best first."""
    if strategy == "auto":
        candidates: Iterable[str] = (
            pid
            for name in ("also_bought", "similar", "popular")
            for pid in _STRATEGY[name](taste, lookups)
        )
    elif strategy in _STRATEGY:
        candidates = _STRATEGY[strategy](taste, lookups)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    return list(_take(candidates, taste, lookups, n))


def _take(candidates: Iterable[str], taste: Taste, lookups: Lookups, n: int) -> Iterator[Product]:
    seen: set[str] = set()
    for pid in candidates:
        if len(seen) >= n:
            return
        product = lookups.products.get(pid)
        if pid in seen or pid in taste.exclude or product is None or not product.in_stock:
            continue
        seen.add(pid)
        yield product


def _best(scores: Mapping[str, float]) -> list[str]:
    return [pid for pid, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def _scaled(row: Ranked) -> Iterator[tuple[str, float]]:
    """A row's weights as shares of its strongest (1.0 first)."""
    top = max((weight for _, weight in row), default=0.0) or 1.0
    return ((pid, weight / top) for pid, weight in row)


def also_bought(taste: Taste, lookups: Lookups) -> list[str]:
    scores: dict[str, float] = {}
    for age, item in enumerate(dict.fromkeys(taste.recent).keys()):
        if age >= MAX_RECENT:
            break
        for pid, share in _scaled(lookups.also_bought.get(item, ())):
            scores[pid] = scores.get(pid, 0.0) + share / (1 + age)
    return _best(scores)


def similar(taste: Taste, lookups: Lookups) -> list[str]:
    strongest = max(taste.categories.values(), default=0.0)
    top_brand = max(taste.brands.values(), default=0.0)
    scores: dict[str, float] = {}
    for category, strength in taste.categories.items():
        if strength <= 0:
            continue
        for pid, share in _scaled(lookups.popular_by_category.get(category, ())):
            product = lookups.products.get(pid)
            brand = product.brand if product else None
            lift = (
                1 + BRAND_LIFT * taste.brands.get(brand, 0.0) / top_brand
                if brand and top_brand
                else 1
            )
            scores[pid] = max(scores.get(pid, 0.0), strength / strongest * share * lift)
    return _best(scores)


def popular(taste: Taste, lookups: Lookups) -> list[str]:
    return _best(dict(lookups.popular))


_STRATEGY = {"also_bought": also_bought, "similar": similar, "popular": popular}

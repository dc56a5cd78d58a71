"""Recommendation strategies: what each may recommend, in which order, and that the
default beats the popularity baseline on histories with planted structure."""

from __future__ import annotations

import random

import pytest

from profiles import (
    Activity,
    InMemoryCatalog,
    InMemoryStatistics,
    Lookups,
    Product,
    RecommendationConfig,
)
from triggers.recommend import Taste, recommend

T0 = 1_780_000_000_000


def product(pid: str, category: str = "c", brand: str | None = None, **extra: object) -> Product:
    return Product(product_id=pid, name=pid, category=category, brand=brand, price=5, **extra)  # type: ignore[arg-type]


def lookups(*products: Product, **fields: object) -> Lookups:
    return Lookups(products={p.product_id: p for p in products}, **fields)  # type: ignore[arg-type]


def ids(products: list[Product]) -> list[str]:
    return [p.product_id for p in products]


SHOP = lookups(
    *(product(pid) for pid in "abcdefgh"),
    product("gone", in_stock=False),
    popular=(("gone", 9.0), ("h", 5.0), ("g", 5.0), ("f", 4.0), ("e", 3.0), ("d", 1.0)),
    also_bought={"a": (("b", 4.0), ("c", 2.0)), "x": (("c", 3.0), ("d", 3.0), ("zz", 9.0))},
)


def test_cold_start_gets_popular_in_stock_ties_by_product_id() -> None:
    assert ids(recommend(Taste(), SHOP)) == ["g", "h", "f", "e"]


def test_also_bought_sums_recent_rows_newest_counting_most() -> None:
    # a is newest: b (1.0) beats c (0.5 from a + 1/2 * 1.0 from x), d (1/2)
    taste = Taste(recent=("a", "x"))
    assert ids(recommend(taste, SHOP, strategy="also_bought")) == ["b", "c", "d"]


def test_auto_fills_from_similar_then_popular_without_repeats_or_exclusions() -> None:
    taste = Taste(recent=("a",), exclude=frozenset({"b", "g"}))
    assert ids(recommend(taste, SHOP, n=4)) == ["c", "h", "f", "e"]


def test_products_outside_the_catalog_or_out_of_stock_are_never_recommended() -> None:
    recs = recommend(Taste(recent=("x",)), SHOP, n=10)
    assert "zz" not in ids(recs) and "gone" not in ids(recs)


def test_similar_follows_category_strength_and_a_liked_brand() -> None:
    shop = lookups(
        product("mug1", "mugs", "Acme"),
        product("mug2", "mugs", "Other"),
        product("toy1", "toys"),
        popular_by_category={
            "mugs": (("mug2", 10.0), ("mug1", 8.0)),
            "toys": (("toy1", 50.0),),
        },
    )
    taste = Taste(categories={"mugs": 4.0, "toys": 1.0}, brands={"Acme": 2.0})
    # mug1: 1 * 0.8 * 1.5 = 1.2 > mug2: 1.0 > toy1: 0.25
    assert ids(recommend(taste, shop, strategy="similar")) == ["mug1", "mug2", "toy1"]


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        recommend(Taste(), SHOP, strategy="random")  # type: ignore[arg-type]


async def test_auto_beats_popular_on_planted_bundles() -> None:
    """Shoppers buy from bundles of things that go together, plus popular fillers: seeing
    one item of a bundle, ``auto`` should name the rest far more often than ``popular``
    names anything the shopper buys next."""
    rng = random.Random(3)
    bundles = [[f"b{n}-{i}" for i in range(3)] for n in range(20)]
    fillers = [f"pop{n}" for n in range(8)]
    catalog = InMemoryCatalog(
        product(pid) for pid in [*(pid for b in bundles for pid in b), *fillers]
    )
    config = RecommendationConfig()
    stats = InMemoryStatistics(catalog, config=config, clock_ms=lambda: T0)
    history = Activity(config)
    for user in range(400):
        bundle = rng.choice(bundles)
        lines = [*rng.sample(bundle, 2), rng.choice(fillers)]
        history.add_purchase(f"u{user}", [(pid, "c") for pid in lines], T0)
    await stats.record(history)
    hits = {"auto": 0, "popular": 0}
    for _ in range(100):
        bundle = rng.choice(bundles)
        seen, wanted = bundle[0], set(bundle[1:])
        shop = await stats.lookups([seen])
        for strategy in hits:
            recs = recommend(Taste(recent=(seen,)), shop, strategy=strategy)  # type: ignore[arg-type]
            hits[strategy] += bool(wanted & set(ids(recs)))
    assert hits["auto"] >= 90
    assert hits["popular"] <= 30

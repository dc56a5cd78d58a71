"""One suite, three stores: the Redis catalog and statistics, on one redis-server and on a
Redis Cluster, and their twins agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles import (
    Activity,
    Catalog,
    CatalogError,
    InMemoryCatalog,
    InMemoryStatistics,
    Keys,
    LookupCache,
    Product,
    RecommendationConfig,
    RedisCatalog,
    RedisStatistics,
    Statistics,
    load_catalog,
)
from profiles.aggregates import CART_PAIRS, ranked

from ..conftest import STORES, redis_of

DAY = 86_400_000
T0 = 1_780_000_000_000
CONFIG = RecommendationConfig(half_life_days=1, top_k=3, watchers_cap=2, watch_days=2)


class Clock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def product(pid: str, price: float = 10.0, **fields: object) -> Product:
    return Product(product_id=pid, name=f"Item {pid}", price=price, **fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest, keys: Keys, clock: Clock) -> tuple[Catalog, Statistics]:
    if request.param == "memory":
        catalog = InMemoryCatalog()
        return catalog, InMemoryStatistics(catalog, config=CONFIG, clock_ms=clock, keys=keys)
    client = redis_of(request)
    stats = RedisStatistics(client, keys=keys, config=CONFIG, clock_ms=clock)
    return RedisCatalog(client, keys=keys), stats


@pytest.fixture
def catalog(stores: tuple[Catalog, Statistics]) -> Catalog:
    return stores[0]


@pytest.fixture
def stats(stores: tuple[Catalog, Statistics]) -> Statistics:
    return stores[1]


def activity() -> Activity:
    return Activity(CONFIG)


def ids(ranked: tuple[tuple[str, float], ...]) -> list[str]:
    return [pid for pid, _ in ranked]


# --- catalog -----------------------------------------------------------------------------


async def test_catalog_put_returns_what_it_replaced(catalog: Catalog) -> None:
    assert await catalog.put([product("a", 10), product("b", 5)]) == {}
    replaced = await catalog.put([product("a", 8)])
    assert replaced == {"a": product("a", 10)}
    assert await catalog.get(["a", "b", "zz"]) == {"a": product("a", 8), "b": product("b", 5)}
    assert await catalog.count() == 2


async def test_catalog_delete(catalog: Catalog) -> None:
    await catalog.put([product("a", brand="Acme", attributes={"colour": "red"})])
    await catalog.delete(["a", "never"])
    assert await catalog.get(["a"]) == {}
    assert await catalog.count() == 0


def test_catalog_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text(
        '{"product_id": "a", "name": "A", "price": 1}\n\n'
        '{"product_id": "b", "name": "B"}\n'
        "not json\n"
        '{"product_id": "a", "name": "A again", "price": 2}\n'
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    lines = [issue.split(": ")[0] for issue in caught.value.issues]
    assert lines == [f"{path}:3", f"{path}:4", f"{path}:5"]
    assert "price: Field required" in caught.value.issues[0]
    assert "repeated" in caught.value.issues[2]


def test_shipped_catalog_loads() -> None:
    products = load_catalog(Path(__file__).resolve().parents[2] / "config" / "catalog.jsonl")
    by_id = {p.product_id: p for p in products}
    assert {"sku-mug", "sku-kettle", "sku-socks", "sku-lamp", "sku-00000", "sku-03699"} <= set(
        by_id
    )
    assert by_id["sku-mug"].category == "kitchen"
    assert all(p.url and p.image_url for p in products)


# --- statistics --------------------------------------------------------------------------


async def test_popularity_ranks_purchases_over_views_globally_and_per_category(
    stats: Statistics,
) -> None:
    batch = activity()
    batch.add_purchase("u1", [("mug", "kitchen")], T0)
    for user in ("u2", "u3", "u4"):
        batch.add_view(user, "lamp", "home", T0)
    batch.add_cart("u5", "kettle", "kitchen", T0)
    await stats.record(batch)
    shop = await stats.lookups([])
    assert ids(shop.popular) == ["mug", "kettle", "lamp"]
    assert shop.popular[0][1] == pytest.approx(1.0)
    assert ids(shop.popular_by_category["kitchen"]) == ["mug", "kettle"]
    assert ids(shop.popular_by_category["home"]) == ["lamp"]


async def test_weights_halve_every_half_life(stats: Statistics, clock: Clock) -> None:
    old, new = activity(), activity()
    old.add_purchase("u1", [("old", None)], T0)
    await stats.record(old)
    new.add_purchase("u2", [("new", None)], T0 + DAY)
    await stats.record(new)
    clock.ms = T0 + DAY
    assert dict((await stats.lookups([])).popular) == pytest.approx({"new": 1.0, "old": 0.5})
    clock.ms = T0 + 3 * DAY
    assert dict((await stats.lookups([])).popular) == pytest.approx({"new": 0.25, "old": 0.125})


async def test_renormalising_keeps_weights_and_ranking(stats: Statistics, clock: Clock) -> None:
    early = activity()
    early.add_purchase("u1", [("a", "x"), ("b", "x")], T0)
    early.add_engagement(9, T0)
    await stats.record(early)
    late = activity()
    at = T0 + 501 * DAY  # past RENORMALISE_AT half-lives: the epoch moves
    late.add_purchase("u2", [("c", "x")], at)
    await stats.record(late)
    clock.ms = at
    shop = await stats.lookups(["a"])
    assert dict(shop.popular) == pytest.approx({"c": 1.0, "a": 2.0**-501, "b": 2.0**-501})
    assert dict(shop.also_bought["a"]) == pytest.approx({"b": 2.0**-501})
    assert shop.send_hours[9] == pytest.approx(2.0**-501)


async def test_also_bought_counts_orders_and_cart_pairs_lower(stats: Statistics) -> None:
    batch = activity()
    batch.add_purchase("u1", [("mug", None), ("tea", None), ("spoon", None)], T0)
    batch.add_purchase("u2", [("mug", None), ("tea", None)], T0)
    batch.add_cart("u3", "mug", None, T0, in_cart=["lamp"])
    await stats.record(batch)
    shop = await stats.lookups(["mug", "lamp", "nothing"])
    assert dict(shop.also_bought["mug"]) == pytest.approx({"tea": 1.5, "spoon": 0.5, "lamp": 0.3})
    assert ids(shop.also_bought["lamp"]) == ["mug"]
    assert "nothing" not in shop.also_bought


async def test_rankings_keep_top_k(stats: Statistics) -> None:
    batch = activity()
    for n, pid in enumerate("abcde"):
        for user in range(n + 1):
            batch.add_purchase(f"u{user}", [("hub", None), (pid, "c")], T0)
    await stats.record(batch)
    shop = await stats.lookups(["hub"])
    assert ids(shop.also_bought["hub"]) == ["e", "d", "c"]
    assert ids(shop.popular_by_category["c"]) == ["e", "d", "c"]
    assert len(shop.popular) == 3


async def test_lookups_carry_the_catalog_entries_of_ranked_products(
    stats: Statistics, catalog: Catalog
) -> None:
    await catalog.put([product(p) for p in ("mug", "tea", "lamp", "named")])
    batch = activity()
    batch.add_purchase("u1", [("mug", None), ("tea", None)], T0)
    batch.add_view("u2", "lamp", "home", T0)
    await stats.record(batch)
    shop = await stats.lookups(["mug", "named", "unknown"])
    assert set(shop.products) == {"mug", "tea", "lamp", "named"}


async def test_watchers_newest_first_capped_expiring_and_dropped_on_purchase(
    stats: Statistics,
) -> None:
    batch = activity()
    batch.add_view("old", "mug", None, T0)
    batch.add_view("mid", "mug", None, T0 + 1000)
    batch.add_cart("new", "mug", None, T0 + 2000)
    batch.add_view("buyer", "lamp", None, T0)
    batch.add_purchase("buyer", [("lamp", None)], T0 + 10)
    await stats.record(batch)
    assert await stats.watchers("mug", T0 + 3000) == ["new", "mid"]  # capped at 2
    assert await stats.watchers("lamp", T0 + 3000) == []
    assert await stats.watchers("mug", T0 + 2 * DAY + 1500) == ["new"]


async def test_send_hours_count_opens_and_clicks_by_local_hour(stats: Statistics) -> None:
    assert (await stats.lookups([])).send_hours == ()
    batch = activity()
    for hour in (7, 7, 20):
        batch.add_engagement(hour, T0)
    await stats.record(batch)
    hours = (await stats.lookups([])).send_hours
    assert len(hours) == 24
    assert (hours[7], hours[20], hours[0]) == pytest.approx((2.0, 1.0, 0.0))


async def test_cache_waits_only_for_new_products_and_refreshes_in_the_background(
    stats: Statistics,
) -> None:
    now = [0.0]
    cache = LookupCache(stats, ttl=30, clock=lambda: now[0])
    batch = activity()
    batch.add_purchase("u1", [("mug", None), ("tea", None)], T0)
    await stats.record(batch)
    first = await cache.lookups(["mug"])
    assert ids(first.also_bought["mug"]) == ["tea"]
    assert await cache.lookups(["mug"]) == first
    await cache.lookups([])
    assert cache.reads == 1
    await cache.lookups(["tea"])  # a product not cached yet
    assert cache.reads == 2
    later = activity()
    later.add_purchase("u2", [("mug", None), ("spoon", None)], T0)
    await stats.record(later)
    now[0] = 30.0
    stale = await cache.lookups(["mug"])  # served from the cache; a refresh starts
    assert ids(stale.also_bought["mug"]) == ["tea"]
    await cache.settle()
    assert cache.reads == 2 and cache.refresh_reads == 1
    fresh = await cache.lookups(["mug"])
    assert ids(fresh.also_bought["mug"]) == ["spoon", "tea"]
    assert ids(fresh.popular)[0] == "mug"


async def test_cache_keeps_at_most_max_products(stats: Statistics) -> None:
    cache = LookupCache(stats, ttl=30, max_products=2, clock=lambda: 0.0)
    await cache.lookups(["a", "b"])
    await cache.lookups(["c"])
    await cache.lookups(["b"])
    assert cache.reads == 2
    await cache.lookups(["a"])  # dropped for c: read again
    assert cache.reads == 3


def test_a_carted_product_pairs_with_the_last_products_carted_before_it() -> None:
    batch = activity()
    earlier = [f"p{n}" for n in range(CART_PAIRS + 2)]
    batch.add_cart("u1", "new", None, T0, in_cart=earlier)
    partners = {b for a, b in batch.pairs if a == "new"}
    assert partners == set(earlier[-CART_PAIRS:])
    assert sum(w for (a, _), w in batch.pairs.items() if a == "new") == pytest.approx(0.3)


def test_activity_from_events_matches_the_add_methods() -> None:
    from profiles import parse_event

    def event(kind: str, **props: object) -> bytes:
        import orjson

        body = {"event_id": kind, "type": kind, "user_id": "u1", "ts": T0, "properties": props}
        return orjson.dumps(body)

    batch = activity()
    batch.add_event(parse_event(event("product_view", product_id="a", category="c")))
    batch.add_event(parse_event(event("add_to_cart", product_id="b", price=1.0)), in_cart=["a"])
    items = [{"product_id": "a", "price": 1.0}, {"product_id": "b", "price": 1.0}]
    batch.add_event(parse_event(event("purchase", order_id="o", total=2.0, items=items)))
    batch.add_event(parse_event(event("email_open", message_id="m")), local_hour=8)
    assert batch.pairs == pytest.approx({("a", "b"): 1.3, ("b", "a"): 1.3})
    assert batch.watch == {("a", "u1"): (T0, False), ("b", "u1"): (T0, False)}
    assert batch.hours[8] == 1.0


async def test_cache_never_drops_a_batch_s_own_products_for_its_missing_ones(
    stats: Statistics,
) -> None:
    batch = activity()
    batch.add_purchase("u1", [("a", None), ("x", None)], T0)
    await stats.record(batch)
    cache = LookupCache(stats, ttl=30, max_products=2, clock=lambda: 0.0)
    await cache.lookups(["a"])
    await cache.lookups(["b"])
    both = await cache.lookups(["a", "c"])  # c is fetched; b goes, not a
    assert ids(both.also_bought["a"]) == ["x"]


@given(
    st.dictionaries(
        st.sampled_from([f"sku-{n}" for n in range(30)]),
        st.sampled_from([0.5, 1.0, 2.0, 3.25]),
    ),
    st.none() | st.integers(min_value=0, max_value=40),
)
def test_ranked_is_strongest_first_ties_by_product_id(
    scores: dict[str, float], limit: int | None
) -> None:
    """The one order of every ranking, in memory (``simulate``) and from Redis (the
    worker): what ``simulate`` recommends is what the worker would."""
    expected = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    assert ranked(scores, 2.0, limit) == tuple((pid, score * 2.0) for pid, score in expected)

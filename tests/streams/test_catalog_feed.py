"""Catalog records into the store, and the price alerts a lowered price raises."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from profiles import Activity, InMemoryCatalog, InMemoryStatistics, Product, parse_event
from streams.catalog import CatalogFeed, alert_event_id

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def mug(price: float, **extra: object) -> Product:
    return Product(product_id="mug", name="Mug", price=price, **extra)  # type: ignore[arg-type]


def rec(product: Product | None, key: bytes = b"mug") -> tuple[bytes | None, bytes | None]:
    return key, product.model_dump_json().encode() if product else None


async def feed_watching(*users: str) -> CatalogFeed:
    catalog = InMemoryCatalog([mug(20)])
    stats = InMemoryStatistics(catalog, clock_ms=lambda: NOW_MS)
    watched = Activity()
    for user in users:
        watched.add_view(user, "mug", None, NOW_MS - 1000)
    await stats.record(watched)
    return CatalogFeed(catalog, stats, clock=lambda: NOW)


async def test_a_lower_price_alerts_each_watcher_with_a_valid_event() -> None:
    feed = await feed_watching("ada", "bob")
    result = await feed.apply([rec(mug(15, currency="EUR", url="https://x/mug"))])
    assert sorted(key for key, _ in result.alerts) == [b"ada", b"bob"]
    event = parse_event(dict(result.alerts)[b"ada"], key=b"ada")
    assert (event.type, event.event_id) == ("price.alert", alert_event_id("mug", 15.0, "ada"))
    assert event.properties == {
        "product_id": "mug",
        "name": "Mug",
        "price": 15.0,
        "previous_price": 20.0,
        "currency": "EUR",
        "url": "https://x/mug",
    }


async def test_the_same_drop_twice_gives_the_same_ids_and_a_replay_none() -> None:
    first, second = await feed_watching("ada"), await feed_watching("ada")
    [(_, a)] = (await first.apply([rec(mug(15))])).alerts
    [(_, b)] = (await second.apply([rec(mug(15))])).alerts
    assert orjson.loads(a)["event_id"] == orjson.loads(b)["event_id"]
    assert (await first.apply([rec(mug(15))])).alerts == []


async def test_no_alert_for_a_rise_a_new_product_or_out_of_stock() -> None:
    feed = await feed_watching("ada")
    assert (await feed.apply([rec(mug(25))])).alerts == []
    assert (await feed.apply([rec(mug(5, in_stock=False))])).alerts == []
    new = Product(product_id="tea", name="Tea", price=1)
    assert (await feed.apply([rec(new, key=b"tea")])).alerts == []


async def test_nulls_delete_and_bad_records_are_counted_not_stored() -> None:
    feed = await feed_watching()
    result = await feed.apply(
        [rec(None), (b"tea", b"{}"), (None, b"{}"), rec(mug(1), key=b"other")]
    )
    assert (result.deleted, result.invalid, result.stored) == (1, 3, 0)
    assert await feed.catalog.count() == 0


async def test_the_last_record_of_a_product_in_a_batch_wins() -> None:
    feed = await feed_watching("ada")
    result = await feed.apply([rec(mug(10)), rec(mug(18))])
    [(_, alert)] = result.alerts
    assert orjson.loads(alert)["properties"]["price"] == 18.0
    assert (await feed.catalog.get(["mug"]))["mug"].price == 18.0


def test_price_alerts_never_start_a_profile() -> None:
    # a watcher erased (or expired) since the view must not come back through an alert
    from streams.catalog import ALERT_EVENT
    from triggers.fold import FOR_KNOWN_USERS

    assert ALERT_EVENT in FOR_KNOWN_USERS

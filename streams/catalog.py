"""The catalog feed: the compacted catalog topic into the catalog store, and price alerts.

A record's key is the product id; its value the product's JSON (see
:class:`profiles.Product`), or null to delete it. When a record lowers a stored product's
price, every user watching the product (who viewed or carted it within ``watch_days``
and has not bought it since, see :mod:`profiles.aggregates`) gets a ``price.alert``
event on the events topic, which the ``price_alert`` rule turns into mail. Its
``event_id`` is a digest of (product, new price, user): a record read twice (a restart
before the commit, a replay of the topic) gives the same events, and the engine drops
the second as a duplicate. A replay of the whole topic raises none at all: the price
stored is already the price replayed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from profiles import Catalog, InvalidProduct, Product, Statistics, load_catalog, parse_product

__all__ = [
    "ALERT_EVENT",
    "CatalogFeed",
    "FeedResult",
    "alert_event_id",
    "load_if_empty",
    "price_alerts",
]

log = logging.getLogger(__name__)

ALERT_EVENT = "price.alert"


def alert_event_id(product_id: str, price: float, user_id: str) -> str:
    """The same id for the same (product, price, user): replays alert once."""
    digest = hashlib.blake2b(f"{product_id}\0{price!r}\0{user_id}".encode(), digest_size=12)
    return f"{ALERT_EVENT}:{digest.hexdigest()}"


def price_alerts(
    old: Product, new: Product, watchers: Sequence[str], now: datetime
) -> list[dict[str, Any]]:
    """The ``price.alert`` events (as JSON-ready dicts) for ``watchers`` when ``new``
    costs less than ``old`` (none otherwise, nor for a product out of stock)."""
    if new.price >= old.price or not new.in_stock:
        return []
    described = {
        "product_id": new.product_id,
        "name": new.name,
        "category": new.category,
        "brand": new.brand,
        "price": new.price,
        "previous_price": old.price,
        "currency": new.currency,
        "url": new.url,
        "image_url": new.image_url,
    }
    properties = {name: value for name, value in described.items() if value is not None}
    return [
        {
            "event_id": alert_event_id(new.product_id, new.price, user_id),
            "type": ALERT_EVENT,
            "user_id": user_id,
            "ts": now.isoformat(),
            "properties": properties,
            "context": {"source": "nudge.catalog"},
        }
        for user_id in watchers
    ]


@dataclass
class FeedResult:
    stored: int = 0
    deleted: int = 0
    invalid: int = 0
    #: ``(key, value)`` of each price alert, for the events topic
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)


class CatalogFeed:
    """Applies catalog records to the store and works out the price alerts they raise."""

    def __init__(
        self,
        catalog: Catalog,
        statistics: Statistics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.catalog = catalog
        self.statistics = statistics
        self.clock = clock

    async def apply(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> FeedResult:
        """Apply ``(key, value)`` records in order (the last record of a key wins)."""
        result = FeedResult()
        latest: dict[str, Product | None] = {}
        for key, value in records:
            try:
                product_id, product = _parse(key, value)
            except InvalidProduct as exc:
                result.invalid += 1
                log.warning("catalog record %r skipped: %s", key, exc)
                continue
            latest[product_id] = product
        puts = [p for p in latest.values() if p is not None]
        deletes = [pid for pid, p in latest.items() if p is None]
        replaced = await self.catalog.put(puts)
        await self.catalog.delete(deletes)
        result.stored, result.deleted = len(puts), len(deletes)
        now = self.clock()
        for product in puts:
            old = replaced.get(product.product_id)
            if old is not None and product.price < old.price:
                watchers = await self.statistics.watchers(product.product_id, _ms(now))
                for event in price_alerts(old, product, watchers, now):
                    result.alerts.append((event["user_id"].encode(), orjson.dumps(event)))
        return result


def _parse(key: bytes | None, value: bytes | None) -> tuple[str, Product | None]:
    if key is None:
        raise InvalidProduct("a catalog record needs its product id as key")
    if value is None:
        return key.decode("utf-8", "replace"), None
    product = parse_product(value, key=key)
    return product.product_id, product


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def load_if_empty(catalog: Catalog, path: Path) -> int:
    """Load the catalog file into an empty store; how many products were loaded (0 when
    the store had products or there is no file). Raises :class:`profiles.CatalogError`."""
    if await catalog.count() or not path.is_file():
        return 0
    started = time.perf_counter()
    products = load_catalog(path)
    await catalog.put(products)
    log.info(
        "catalog: loaded %d products from %s in %.2f s",
        len(products),
        path,
        time.perf_counter() - started,
    )
    return len(products)

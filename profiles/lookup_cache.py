"""A worker's bounded, short-lived copy of the statistics: most batches read no Redis.

:class:`LookupCache` is the :class:`profiles.lookups.LookupSource` the worker hands the
engine. It keeps the shop-wide part (popularity, send hours, the products they rank) and,
per product, its catalog entry and also-bought row (with the products that row ranks),
each for ``ttl`` seconds, at most ``max_products`` products (least recently used go
first). A batch reads Redis only when the shop-wide part is older than ``ttl`` or it names
a product not cached or cached longer ago: then one call fetches exactly those. So a
render may see the catalog and the statistics as they were up to ``ttl`` ago.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from profiles.aggregates import Fetched, Statistics
from profiles.catalog import Product
from profiles.lookups import Lookups, Ranked

__all__ = ["LookupCache"]


@dataclass(frozen=True)
class _Entry:
    at: float
    product: Product | None
    row: Ranked
    #: the catalog entries of the products ``row`` ranks
    ranked: dict[str, Product]


class LookupCache:
    def __init__(
        self,
        statistics: Statistics,
        *,
        ttl: float = 30.0,
        max_products: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.statistics = statistics
        self.ttl = ttl
        self.max_products = max_products
        self.clock = clock
        self.reads = 0
        self._shared: tuple[float, Lookups] | None = None
        self._products: OrderedDict[str, _Entry] = OrderedDict()

    def _fresh(self, at: float, now: float) -> bool:
        return now - at < self.ttl

    def invalidate(self) -> None:
        """Forget everything (the next batch reads Redis)."""
        self._shared = None
        self._products.clear()

    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        now = self.clock()
        stale = [
            pid
            for pid in product_ids
            if pid not in self._products or not self._fresh(self._products[pid].at, now)
        ]
        stale_shared = self._shared is None or not self._fresh(self._shared[0], now)
        if stale or stale_shared:
            self.reads += 1
            fetched = await self.statistics.fetch(stale, shared=stale_shared)
            self._keep(fetched, stale, now, stale_shared)
        return self._assemble(product_ids)

    def _keep(self, fetched: Fetched, asked: list[str], now: float, shared: bool) -> None:
        if shared:
            shop = Fetched({}, {}, fetched.popular, fetched.popular_by_category)
            products = {
                pid: fetched.products[pid] for pid in shop.ranked_ids() & fetched.products.keys()
            }
            self._shared = (now, Fetched(products, {}, *_shop_wide(fetched)).to_lookups())
        for pid in asked:
            row = fetched.also_bought.get(pid, ())
            ranked = {r: fetched.products[r] for r, _ in row if r in fetched.products}
            self._products[pid] = _Entry(now, fetched.products.get(pid), row, ranked)
            self._products.move_to_end(pid)
        while len(self._products) > self.max_products:
            self._products.popitem(last=False)

    def _assemble(self, product_ids: Collection[str]) -> Lookups:
        shared = self._shared[1] if self._shared else Lookups()
        products = dict(shared.products)
        also: dict[str, Ranked] = {}
        for pid in product_ids:
            entry = self._products.get(pid)
            if entry is None:  # evicted by this very batch: more products than the bound
                continue
            self._products.move_to_end(pid)
            products.update(entry.ranked)
            if entry.product is not None:
                products[pid] = entry.product
            if entry.row:
                also[pid] = entry.row
        return replace(shared, products=products, also_bought=also)


def _shop_wide(
    fetched: Fetched,
) -> tuple[Ranked | None, dict[str, Ranked] | None, tuple[float, ...] | None]:
    return fetched.popular, fetched.popular_by_category, fetched.send_hours

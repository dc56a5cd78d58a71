"""A worker's bounded, short-lived copy of the statistics: batches rarely wait on Redis.

:class:`LookupCache` is the :class:`profiles.lookups.LookupSource` the worker hands the
engine. It keeps the shop-wide part (popularity, send hours, the products they rank) and,
per product, its catalog entry and also-bought row (with the products that row ranks),
for at most ``max_products`` products (least recently used dropped first).

- The first batch, and a batch naming a product not cached, wait for one Redis call
  fetching just what is missing.
- Once ``ttl`` seconds have passed since the last refresh, the next batch starts a
  refresh in the background and goes on with what is cached: the refresh re-reads the
  shop-wide part and every cached product, ``REFRESH_CHUNK`` products per call (so no
  single script holds Redis long), and swaps them in as they arrive.
- Every other batch reads nothing.

So in the steady state (every product cached) no batch waits on Redis, and a render may
see the catalog and the statistics as they were up to ``ttl`` seconds, plus one refresh,
ago.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from types import MappingProxyType

from profiles.aggregates import Fetched, Statistics
from profiles.catalog import Product
from profiles.lookups import Lookups, Ranked

__all__ = ["REFRESH_CHUNK", "LookupCache"]

log = logging.getLogger(__name__)

#: products re-read per call of a background refresh
REFRESH_CHUNK = 1000


@dataclass(frozen=True)
class _Entry:
    product: Product | None
    row: Ranked
    #: the catalog entries of the products ``row`` ranks
    ranked: dict[str, Product]

    def add_products(self, product_id: str, products: dict[str, Product]) -> None:
        """Put the product (as ``product_id``) and those its row ranks into ``products``."""
        products.update(self.ranked)
        if self.product is not None:
            products[product_id] = self.product


def _entry(fetched: Fetched, product_id: str) -> _Entry:
    row = fetched.also_bought.get(product_id, ())
    ranked = {pid: fetched.products[pid] for pid, _ in row if pid in fetched.products}
    return _Entry(fetched.products.get(product_id), row, ranked)


def _shop_wide(fetched: Fetched) -> Lookups:
    rankings = Fetched({}, {}, fetched.popular, fetched.popular_by_category)
    ranked = rankings.ranked_ids()
    return Lookups(
        products={pid: p for pid, p in fetched.products.items() if pid in ranked},
        popular=fetched.popular or (),
        popular_by_category=fetched.popular_by_category or {},
        send_hours=fetched.send_hours or (),
    )


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
        #: Redis reads a batch waited for, and reads made by background refreshes
        self.reads = 0
        self.refresh_reads = 0
        self._refreshed_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._shared = Lookups()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: every catalog entry and row the cache holds, flat, handed to batches as they
        #: are (read-only views): a batch costs one step per product it names, not one
        #: per product its rows rank
        self._products: dict[str, Product] = {}
        self._rows: dict[str, Ranked] = {}

    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        now = self.clock()
        # most recently used first, so that fetching what is missing cannot evict (and
        # drop the rows of) products this very batch names
        self._touch(product_ids)
        missing = [pid for pid in product_ids if pid not in self._entries]
        if self._refreshed_at is None:
            await self._fetch(missing, shared=True)
            self._refreshed_at = now
        else:
            if missing:
                await self._fetch(missing, shared=False)
            if now - self._refreshed_at >= self.ttl and self._refreshing is None:
                self._refreshing = asyncio.create_task(self._refresh(now))
        return self._assemble(product_ids)

    async def settle(self) -> None:
        """Wait for a background refresh under way (tests, benchmarks, shutdown)."""
        if self._refreshing is not None:
            await self._refreshing

    async def _fetch(self, product_ids: list[str], *, shared: bool) -> None:
        self.reads += 1
        self._keep(await self.statistics.fetch(product_ids, shared=shared), product_ids)

    def _keep(self, fetched: Fetched, product_ids: list[str]) -> None:
        if fetched.popular is not None:
            self._shared = _shop_wide(fetched)
            self._products.update(self._shared.products)
        for pid in product_ids:
            entry = self._entries[pid] = _entry(fetched, pid)
            self._entries.move_to_end(pid)
            entry.add_products(pid, self._products)
            if entry.row:
                self._rows[pid] = entry.row
            else:
                self._rows.pop(pid, None)
        while len(self._entries) > self.max_products:
            dropped, _ = self._entries.popitem(last=False)
            self._rows.pop(dropped, None)
        if len(self._products) > 2 * self.max_products:
            self._rebuild()

    def _rebuild(self) -> None:
        """The flat products again from what is held (drops deleted and evicted ones)."""
        products = dict(self._shared.products)
        for pid, entry in self._entries.items():
            entry.add_products(pid, products)
        self._products = products

    async def _refresh(self, started: float) -> None:
        """Re-read the shop-wide part and every cached product, a chunk per call."""
        try:
            cached = list(self._entries)
            for at in range(0, max(len(cached), 1), REFRESH_CHUNK):
                chunk = [pid for pid in cached[at : at + REFRESH_CHUNK] if pid in self._entries]
                self.refresh_reads += 1
                fetched = await self.statistics.fetch(chunk, shared=at == 0)
                self._keep(fetched, chunk)
            self._rebuild()
            self._refreshed_at = started
        except Exception:
            # batches go on with what is cached; the next one after the TTL tries again
            log.exception("refreshing the cached catalog and statistics failed")
        finally:
            self._refreshing = None

    def _touch(self, product_ids: Collection[str]) -> None:
        entries = self._entries
        for pid in product_ids:
            if pid in entries:
                entries.move_to_end(pid)

    def _assemble(self, product_ids: Collection[str]) -> Lookups:
        """The batch's view: every product and row held (valid until the next await
        of this cache; a batch folds and renders without awaiting in between)."""
        self._touch(product_ids)
        return replace(
            self._shared,
            products=MappingProxyType(self._products),
            also_bought=MappingProxyType(self._rows),
        )

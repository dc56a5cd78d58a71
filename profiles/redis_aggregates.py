"""The Redis implementation of :class:`profiles.aggregates.Statistics`.

Every statistics key shares the catalog's hash tag ``{shop}`` (see :mod:`profiles.keys`),
so :meth:`RedisStatistics.record` is one ``record_stats.lua`` call per batch and
:meth:`RedisStatistics.fetch` one ``read_stats.lua`` call, on Redis Cluster as well (the
scripts name keys by that common prefix; all of them sit in one slot). Were the tag
split (to spread the statistics over nodes), each slot's keys would need their own call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from profiles.aggregates import (
    HOURS,
    RENORMALISE_AT,
    Activity,
    Fetched,
    RecommendationConfig,
    ranked,
)
from profiles.catalog import Product
from profiles.keys import Keys
from profiles.lookups import Lookups, Ranked
from profiles.redis_store import as_text, load_script, translate_errors

__all__ = ["RedisStatistics"]

#: parsed products kept by their stored JSON (all forgotten when full)
PARSED_PRODUCTS = 50_000


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _ranked(entries: Sequence[Any], factor: float) -> Ranked:
    """A ``member, score, ...`` reply as :data:`Ranked` (ties by product id)."""
    return ranked(
        {as_text(entries[i]): float(entries[i + 1]) for i in range(0, len(entries), 2)}, factor
    )


class RedisStatistics:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: Keys | None = None,
        config: RecommendationConfig | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self.config = config or RecommendationConfig()
        self._clock_ms = clock_ms
        self._record = client.register_script(load_script("record_stats.lua"))
        self._read = client.register_script(load_script("read_stats.lua"))
        self._parsed: dict[bytes, Product] = {}

    def _args(self, activity: Activity, ref_ms: int) -> list[Any]:
        c = self.config
        sections = (
            [[pid, weight] for pid, weight in activity.popular.items()],
            [[category, pid, weight] for (category, pid), weight in activity.by_category.items()],
            activity.baskets,
            activity.stars,
            [[pid, user, at, int(on)] for (pid, user), (at, on) in activity.watch.items()],
            activity.hours,
        )
        return [
            self._keys.shop(),
            ref_ms,
            c.half_life_ms,
            c.top_k,
            c.watchers_cap,
            c.watch_ms,
            RENORMALISE_AT,
            orjson.dumps(sections),
        ]

    async def record(self, activity: Activity) -> None:
        if activity.ref_ms is None:
            return
        args = self._args(activity, activity.ref_ms)
        async with translate_errors():
            await self._record(keys=[self._keys.stats_meta()], args=args)

    async def fetch(self, product_ids: Collection[str], *, shared: bool = True) -> Fetched:
        ids = list(product_ids)
        args: list[Any] = [self._keys.shop(), self.config.top_k, int(shared), *ids]
        async with translate_errors():
            reply = await self._read(keys=[self._keys.stats_meta()], args=args)
        epoch, rows, popular, categories, hours, products = reply
        factor = 1.0
        if epoch is not None:
            factor = 2.0 ** ((float(epoch) - self._clock_ms()) / self.config.half_life_ms)
        found = {
            as_text(products[i]): self._product(products[i + 1]) for i in range(0, len(products), 2)
        }
        also = {pid: _ranked(row, factor) for pid, row in zip(ids, rows, strict=True) if row}
        if not shared:
            return Fetched(found, also)
        by_category = {
            as_text(categories[i]): _ranked(categories[i + 1], factor)
            for i in range(0, len(categories), 2)
        }
        return Fetched(found, also, _ranked(popular, factor), by_category, _hours(hours, factor))

    def _product(self, document: bytes) -> Product:
        """A stored product, parsed once while its JSON stays the same."""
        product = self._parsed.get(document)
        if product is None:
            if len(self._parsed) >= PARSED_PRODUCTS:
                self._parsed.clear()
            product = self._parsed[document] = Product.model_validate_json(document)
        return product

    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        return (await self.fetch(product_ids)).to_lookups()

    async def watchers(self, product_id: str, now_ms: int) -> list[str]:
        key = self._keys.watchers(product_id)
        since = now_ms - self.config.watch_ms
        async with translate_errors():
            users = await self._redis.zrange(key, "+inf", since, desc=True, byscore=True)
        return [as_text(u) for u in users if isinstance(u, bytes | str)]

    async def forget(self, users: Mapping[str, Collection[str]]) -> None:
        if not any(users.values()):
            return
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            for user_id, products in users.items():
                for pid in products:
                    pipe.zrem(self._keys.watchers(pid), user_id)
            await pipe.execute()


def _hours(stored: Sequence[Any], factor: float) -> tuple[float, ...]:
    if not stored:
        return ()
    hours = [0.0] * HOURS
    for i in range(0, len(stored), 2):
        hours[int(stored[i])] = float(stored[i + 1]) * factor
    return tuple(hours)

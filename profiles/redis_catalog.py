"""The Redis implementation of :class:`profiles.catalog.Catalog`: one hash, product id ->
product JSON (key :meth:`profiles.keys.Keys.catalog`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import redis.asyncio as aioredis

from profiles.catalog import Product, dump_product
from profiles.keys import Keys
from profiles.redis_store import load_script, translate_errors

__all__ = ["RedisCatalog"]


class RedisCatalog:
    def __init__(self, client: aioredis.Redis, *, keys: Keys | None = None) -> None:
        self._redis = client
        self._key = (keys or Keys()).catalog()
        self._put = client.register_script(load_script("put_catalog.lua"))

    async def get(self, product_ids: Collection[str]) -> dict[str, Product]:
        ids = list(product_ids)
        if not ids:
            return {}
        async with translate_errors():
            docs = await self._redis.hmget(self._key, ids)
        return {
            pid: Product.model_validate_json(doc) for pid, doc in zip(ids, docs, strict=True) if doc
        }

    async def put(self, products: Sequence[Product]) -> dict[str, Product]:
        if not products:
            return {}
        args = [part for p in products for part in (p.product_id, dump_product(p))]
        async with translate_errors():
            old = await self._put(keys=[self._key], args=args)
        return {
            p.product_id: Product.model_validate_json(doc)
            for p, doc in zip(products, old, strict=True)
            if doc
        }

    async def delete(self, product_ids: Collection[str]) -> None:
        if product_ids:
            async with translate_errors():
                await self._redis.hdel(self._key, *product_ids)

    async def count(self) -> int:
        async with translate_errors():
            return int(await self._redis.hlen(self._key))

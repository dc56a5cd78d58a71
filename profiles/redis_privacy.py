"""The Redis implementation of :class:`profiles.privacy.SuppressionList`: one hash of
keyed address hashes (``Keys.suppressed``), read with one ``HMGET`` a batch."""

from __future__ import annotations

from collections.abc import Collection

import redis.asyncio as aioredis

from profiles.keys import Keys
from profiles.privacy import Pseudonyms, SuppressionOps
from profiles.redis_store import translate_errors

__all__ = ["RedisSuppressionList"]


class RedisSuppressionList:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: Keys | None = None,
        pseudonyms: Pseudonyms | None = None,
    ) -> None:
        self._redis = client
        self._key = (keys or Keys()).suppressed()
        self._pseudonyms = pseudonyms or Pseudonyms()

    async def erased(self, addresses: Collection[str]) -> dict[str, int]:
        if not addresses:
            return {}
        ordered = list(addresses)
        async with translate_errors():
            found = await self._redis.hmget(
                self._key, [self._pseudonyms.address(a) for a in ordered]
            )
        return {a: int(at) for a, at in zip(ordered, found, strict=True) if at is not None}

    async def apply(self, ops: SuppressionOps) -> None:
        if not ops:
            return
        address = self._pseudonyms.address
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            if ops.add:
                pipe.hset(self._key, mapping={address(a): at for a, at in ops.add.items()})
            if ops.remove:
                pipe.hdel(self._key, *map(address, ops.remove))
            await pipe.execute()

    async def holds(self) -> dict[str, int]:
        """Everything on the list: address hash -> erase time (export and tests)."""
        async with translate_errors():
            raw = await self._redis.hgetall(self._key)
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}

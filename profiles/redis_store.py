"""The Redis implementation of :class:`profiles.store.ProfileStore`.

One pipelined round trip reads a whole batch's users (``HMGET`` + ``ZMSCORE`` each); one
pipelined round trip writes them back (one ``EVALSHA`` of ``save_profile.lua`` per user,
so every script touches a single hash slot and stays legal on Redis Cluster).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from profiles.errors import ProfileError, StoreUnavailable
from profiles.keys import Keys
from profiles.model import Profile
from profiles.store import ProfileWrite, Snapshot

__all__ = ["RedisProfileStore", "load_script", "translate_errors"]


def load_script(name: str) -> str:
    return resources.files("profiles").joinpath(name).read_text(encoding="utf-8")


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn redis-py errors into this package's errors at the boundary."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable(f"Redis unavailable: {exc}") from exc
    except RedisError as exc:
        raise ProfileError(f"Redis error: {exc}") from exc


class RedisProfileStore:
    def __init__(
        self, client: aioredis.Redis, *, keys: Keys | None = None, dedup_window: int = 1000
    ) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._dedup_window = dedup_window
        self._save = client.register_script(load_script("save_profile.lua"))

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        users = list(wanted)
        if not users:
            return {}
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            for user_id in users:
                pipe.hmget(self._keys.profile(user_id), ["v", "p"])
                if wanted[user_id]:
                    pipe.zmscore(self._keys.seen(user_id), list(wanted[user_id]))
            replies = iter(await pipe.execute())
        return {
            user_id: self._snapshot(next(replies), replies, wanted[user_id]) for user_id in users
        }

    @staticmethod
    def _snapshot(hash_reply: Any, replies: Any, event_ids: Sequence[str]) -> Snapshot:
        version, doc = hash_reply
        scores = next(replies) if event_ids else []
        seen = frozenset(e for e, score in zip(event_ids, scores, strict=True) if score is not None)
        profile = Profile.model_validate_json(doc) if doc else None
        return Snapshot(profile, int(version) if version else 0, seen)

    async def save(self, writes: Sequence[ProfileWrite]) -> list[str]:
        if not writes:
            return []
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            for write in writes:
                args: list[str | int] = [
                    write.expected_version,
                    write.profile.model_dump_json() if write.profile else "",
                    self._dedup_window,
                ]
                for event_id, ts_ms in write.applied:
                    args += [ts_ms, event_id]
                keys = [self._keys.profile(write.user_id), self._keys.seen(write.user_id)]
                await self._save(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return [w.user_id for w, ok in zip(writes, results, strict=True) if not ok]

    async def snapshot(self, user_id: str) -> Snapshot:
        """One user's current profile (for ``explain`` and tests)."""
        return (await self.load({user_id: []}))[user_id]

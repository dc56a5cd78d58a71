"""The Redis implementation of :class:`profiles.timers.TimerStore`.

Per partition, a sorted set (timer id -> due ms) and a hash (timer id -> stored timer)
that share one hash tag; applying changes, claiming and completing are Lua scripts, so
each is atomic and costs one command per partition: on one node all in one pipeline, on
Redis Cluster under way at once (:func:`profiles.redis_store.run_scripts`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import redis.asyncio as aioredis

from profiles.keys import Keys
from profiles.redis_store import ScriptCall, load_script, run_scripts, translate_errors
from profiles.timers import Timer, TimerOps

__all__ = ["RedisTimerStore"]


class RedisTimerStore:
    def __init__(self, client: aioredis.Redis, *, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._apply = client.register_script(load_script("apply_timers.lua"))
        self._claim = client.register_script(load_script("claim_timers.lua"))
        self._complete = client.register_script(load_script("complete_timers.lua"))

    def _pair(self, partition: int) -> list[str]:
        """A partition's two keys, as its scripts take them (one hash slot)."""
        return [self._keys.timers_due(partition), self._keys.timers_data(partition)]

    async def apply(self, ops: TimerOps) -> None:
        """One script call per partition touched (see :func:`run_scripts`)."""
        if not ops:
            return
        schedule: dict[int, list[Any]] = defaultdict(list)
        cancel: dict[int, list[str]] = defaultdict(list)
        for (partition, tid), timer in ops.schedule.items():
            schedule[partition] += [tid, timer.due_ms, timer.to_stored()]
        for partition, tid in ops.cancel:
            cancel[partition].append(tid)
        calls: list[ScriptCall] = [
            (self._pair(p), [len(schedule[p]) // 3, *schedule[p], *cancel[p]])
            for p in sorted(schedule.keys() | cancel.keys())
        ]
        async with translate_errors():
            await run_scripts(self._redis, self._apply, calls)

    async def claim_due(
        self, partition: int, now_ms: int, *, limit: int, lease_ms: int
    ) -> list[Timer]:
        async with translate_errors():
            flat = await self._claim(keys=self._pair(partition), args=[now_ms, limit, lease_ms])
        return [Timer.from_stored(flat[i + 1], partition) for i in range(0, len(flat), 2)]

    async def complete(self, timers: Sequence[Timer]) -> None:
        by_partition: dict[int, list[bytes | str]] = defaultdict(list)
        for timer in timers:
            by_partition[timer.partition] += [timer.id, timer.stored_form]
        calls = [(self._pair(p), args) for p, args in by_partition.items()]
        async with translate_errors():
            await run_scripts(self._redis, self._complete, calls)

    async def pending(self, partition: int) -> list[Timer]:
        async with translate_errors():
            ids = list(await self._redis.zrange(self._keys.timers_due(partition), 0, -1))
            if not ids:
                return []
            raws = await self._redis.hmget(self._keys.timers_data(partition), ids)  # type: ignore[arg-type]
        return [Timer.from_stored(raw, partition) for raw in raws if raw is not None]

    async def find(self, partition: int, ids: Collection[str]) -> list[Timer]:
        if not ids:
            return []
        async with translate_errors():
            raws = await self._redis.hmget(self._keys.timers_data(partition), list(ids))
        found = [Timer.from_stored(raw, partition) for raw in raws if raw is not None]
        return sorted(found, key=lambda t: (t.due_ms, t.id))

    async def count(self, partition: int) -> int:
        async with translate_errors():
            return int(await self._redis.zcard(self._keys.timers_due(partition)))

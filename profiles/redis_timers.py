"""The Redis implementation of :class:`profiles.timers.TimerStore`.

Per partition, a sorted set and a hash that share one hash tag, with one entry per user:
scored by the user's soonest timer, holding all of the user's timers of the partition
(``timer_buckets.lua``). Applying changes, claiming, completing, listing and counting
are Lua scripts, so each is atomic and costs one command per partition: on one node all
in one pipeline, on Redis Cluster under way at once
(:func:`profiles.redis_store.run_scripts`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from profiles.keys import Keys
from profiles.redis_store import (
    ScriptCall,
    as_text,
    load_script,
    run_scripts,
    translate_errors,
)
from profiles.timers import Timer, TimerOps

__all__ = ["RedisTimerStore"]


class RedisTimerStore:
    def __init__(self, client: aioredis.Redis, *, keys: Keys | None = None) -> None:
        self._redis = client
        self._keys = keys or Keys()
        # every script reads and writes the partition's keys as timer_buckets.lua says
        buckets = load_script("timer_buckets.lua")

        def script(name: str) -> AsyncScript:
            return client.register_script(buckets + load_script(name))

        self._apply = script("apply_timers.lua")
        self._claim = script("claim_timers.lua")
        self._complete = script("complete_timers.lua")
        self._list = script("list_timers.lua")
        self._count = script("count_timers.lua")

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
        return [
            Timer.from_stored(flat[i + 1], partition, as_text(flat[i]))
            for i in range(0, len(flat), 2)
        ]

    async def complete(self, timers: Sequence[Timer]) -> None:
        by_partition: dict[int, list[bytes | str]] = defaultdict(list)
        for timer in timers:
            by_partition[timer.partition] += [timer.id, timer.stored_form]
        calls = [(self._pair(p), args) for p, args in by_partition.items()]
        async with translate_errors():
            await run_scripts(self._redis, self._complete, calls)

    async def pending(self, partition: int) -> list[Timer]:
        return await self._listed(partition, [])

    async def find(self, partition: int, ids: Collection[str]) -> list[Timer]:
        if not ids:
            return []
        return await self._listed(partition, list(dict.fromkeys(ids)))

    async def _listed(self, partition: int, ids: list[str]) -> list[Timer]:
        """The pending timers with ``ids`` (every one: none given), soonest first."""
        async with translate_errors():
            flat = await self._list(keys=self._pair(partition), args=ids)
        rows = sorted((int(flat[i + 1]), flat[i], flat[i + 2]) for i in range(0, len(flat), 3))
        return [Timer.from_stored(stored, partition, as_text(tid)) for _, tid, stored in rows]

    async def count(self, partition: int) -> int:
        async with translate_errors():
            return int(await self._count(keys=self._pair(partition), args=[]))

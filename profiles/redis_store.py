"""The Redis implementation of :class:`profiles.store.ProfileStore`.

A whole batch's users are read by one Lua call (``load_profiles.lua``) and written back
by another (``save_profiles.lua``): one round trip each, and the client encodes one
command instead of a few per user. On Redis Cluster (``cluster=True``) a script may only
touch one hash slot, so users are grouped by slot, one call per group, the calls under
way at once (:func:`run_scripts`). The shop-wide counters a write brings are added by the
same call, to the counters hash of the user's slot (:meth:`profiles.keys.Keys.counters`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from profiles.errors import ProfileError, StoreUnavailable
from profiles.keys import Keys
from profiles.privacy import TOMBSTONE_MS, Pseudonyms
from profiles.store import (
    DEDUP_MAX_AGE_MS,
    ProfileWrite,
    Snapshot,
    dedup_cutoff,
    dedup_records,
    event_digest,
)
from profiles.stored import dump_profile, load_profile

__all__ = [
    "FAILING_OVER",
    "RedisProfileStore",
    "ScriptCall",
    "as_text",
    "load_script",
    "run_scripts",
    "translate_errors",
]

#: one call of a Lua script: its keys (all in one hash slot) and its arguments
ScriptCall = tuple[Sequence[Any], Sequence[Any]]


def as_text(value: bytes | str) -> str:
    """A reply's string, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value


def load_script(name: str) -> str:
    return resources.files("profiles").joinpath(name).read_text(encoding="utf-8")


async def run_scripts(
    client: aioredis.Redis | aioredis.RedisCluster, script: AsyncScript, calls: Sequence[ScriptCall]
) -> list[Any]:
    """The replies of ``script`` to each of ``calls``, in order.

    On one node the calls go in one pipeline: one round trip however many there are (the
    hot path). redis-py's cluster pipeline refuses ``EVALSHA``, and a script may only
    touch one hash slot anyway, so on Redis Cluster every call is a command of its own,
    sent to its slot's node, all of them under way at once: a batch waits for its slowest
    node, not for one round trip per slot.
    """
    if isinstance(client, aioredis.RedisCluster):
        # the cluster client fails commands that race to make its first connections
        await client.initialize()
        return list(
            await asyncio.gather(*(script(keys=k, args=a, client=client) for k, a in calls))
        )
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        await script(keys=keys, args=args, client=pipe)
    return list(await pipe.execute())


#: what Redis answers while a replica takes over (Cluster) or a node loads its data: an
#: outage to wait out, not a bad message (the worker retries, never dead-letters, on it)
FAILING_OVER = (ClusterDownError, TryAgainError, ReadOnlyError, BusyLoadingError)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn redis-py errors into this package's errors at the boundary."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError, *FAILING_OVER) as exc:
        raise StoreUnavailable(f"Redis unavailable: {exc}") from exc
    except RedisError as exc:
        raise ProfileError(f"Redis error: {exc}") from exc


class RedisProfileStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keys: Keys | None = None,
        dedup_window: int = 1000,
        dedup_max_age_ms: int = DEDUP_MAX_AGE_MS,
        cluster: bool = False,
        pseudonyms: Pseudonyms | None = None,
        tombstone_ms: int = TOMBSTONE_MS,
    ) -> None:
        self._redis = client
        self._keys = keys or Keys()
        self._dedup_window = dedup_window
        self._dedup_max_age_ms = dedup_max_age_ms
        self._pseudonyms = pseudonyms or Pseudonyms()
        self._tombstone_ms = tombstone_ms
        self._cluster = cluster
        # both scripts read and write a user's key the way stored_user.lua says
        stored_user = load_script("stored_user.lua")
        self._load = client.register_script(stored_user + load_script("load_profiles.lua"))
        self._save = client.register_script(stored_user + load_script("save_profiles.lua"))

    def _groups(self, user_ids: Sequence[str]) -> list[list[str]]:
        """Users that one script call may touch together (one group unless clustered)."""
        if not self._cluster:
            return [list(user_ids)] if user_ids else []
        by_slot: dict[int, list[str]] = {}
        for user_id in user_ids:
            by_slot.setdefault(key_slot(self._keys.profile(user_id).encode()), []).append(user_id)
        return list(by_slot.values())

    def _keys_of(self, users: Sequence[str], *, counters: bool = False) -> list[str]:
        """Per user, the keys the load script reads (profile, the dedup records' key of
        before they moved into the profile's, raw ids stored before digests, tombstone)
        and, with ``counters``, the counters hash the save script adds to: the one of the
        user's slot on Cluster, the single one otherwise."""
        keys, user = self._keys, self._pseudonyms.user
        out: list[str] = []
        for u in users:
            out += (keys.profile(u), keys.seen(u), keys.legacy_seen(u), keys.tombstone(u, user(u)))
            if counters:
                out.append(keys.counters(u) if self._cluster else keys.all_counters())
        return out

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        groups = self._groups(list(wanted))
        if not groups:
            return {}
        calls = [
            (self._keys_of(users), [b"".join(map(event_digest, wanted[u])) for u in users])
            for users in groups
        ]
        async with translate_errors():
            replies = await run_scripts(self._redis, self._load, calls)
        out = {}
        legacy = []
        for users, rows in zip(groups, replies, strict=True):
            for user_id, row in zip(users, rows, strict=True):
                version, doc, scores, has_legacy, erased = row
                asked = wanted[user_id]
                seen = frozenset(e for e, sc in zip(asked, scores, strict=True) if sc is not None)
                profile = load_profile(user_id, doc) if doc else None
                out[user_id] = Snapshot(
                    profile,
                    int(version) if version else 0,
                    seen,
                    int(erased) if erased else None,
                )
                if has_legacy and asked:
                    legacy.append(user_id)
        if legacy:
            await self._load_legacy(wanted, legacy, out)
        return out

    async def _load_legacy(
        self, wanted: Mapping[str, Sequence[str]], users: list[str], out: dict[str, Snapshot]
    ) -> None:
        """Add what the raw id sets stored before digests say (until they age out)."""
        async with translate_errors():
            pipe = self._redis.pipeline(transaction=False)
            for user_id in users:
                pipe.zmscore(self._keys.legacy_seen(user_id), list(wanted[user_id]))
            replies = await pipe.execute()
        for user_id, scores in zip(users, replies, strict=True):
            asked = wanted[user_id]
            old = {e for e, sc in zip(asked, scores, strict=True) if sc is not None}
            if old:
                snap = out[user_id]
                out[user_id] = replace(snap, seen=snap.seen | old)

    async def save(self, writes: Sequence[ProfileWrite]) -> list[str]:
        by_user = {write.user_id: write for write in writes}
        groups = self._groups(list(by_user))
        if not groups:
            return []
        calls = [
            (self._keys_of(users, counters=True), self._save_args([by_user[u] for u in users]))
            for users in groups
        ]
        async with translate_errors():
            replies = await run_scripts(self._redis, self._save, calls)
        return [
            user_id
            for users, flags in zip(groups, replies, strict=True)
            for user_id, ok in zip(users, flags, strict=True)
            if not ok
        ]

    def _save_args(self, writes: Sequence[ProfileWrite]) -> list[Any]:
        """The save script's arguments: the store's bounds, then seven per write."""
        args: list[Any] = [self._dedup_window, self._tombstone_ms]
        for write in writes:
            doc = dump_profile(write.profile) if write.profile else b""
            applied = write.applied
            cutoff = dedup_cutoff(applied, self._dedup_max_age_ms) if applied else 0
            forget = 1 if write.forgets else ""
            erased = "" if write.erased_ms is None else write.erased_ms
            records = dedup_records(applied)
            # most writes bring no counters: one empty argument
            counters = orjson.dumps(write.counters) if write.counters else ""
            args += [write.expected_version, doc, records, cutoff, forget, erased, counters]
        return args

    async def scan(self, *, chunk: int = 500) -> AsyncIterator[list[str]]:
        """Every user with a stored profile (``SCAN``: a user may appear twice)."""
        ids: list[str] = []
        async with translate_errors():
            async for key in self._redis.scan_iter(
                match=self._keys.profiles_pattern(), count=chunk
            ):
                ids.append(self._keys.user_of(as_text(key)))
                if len(ids) >= chunk:
                    yield ids
                    ids = []
        if ids:
            yield ids

    async def counters(self, prefix: str = "", *, chunk: int = 500) -> dict[str, float]:
        """The counters whose field starts with ``prefix``, summed. On a single node one
        ``HGETALL`` of the one hash; on Cluster the sum over every slot's hash (``SCAN``
        by name and type, then ``HGETALL`` of ``chunk`` hashes a round trip). Not a
        snapshot: increments made while it reads may be in the sums or not."""
        async with translate_errors():
            if self._cluster:
                hashes = await self._counter_hashes(chunk)
            else:
                hashes = [self._keys.all_counters()]
            parts: dict[str, list[float]] = {}
            for start in range(0, len(hashes), chunk):
                pipe = self._redis.pipeline(transaction=False)
                for key in hashes[start : start + chunk]:
                    pipe.hgetall(key)
                for fields in await pipe.execute():
                    for raw, total in fields.items():
                        name = as_text(raw)
                        if name.startswith(prefix):
                            parts.setdefault(name, []).append(float(total))
        # fsum: the same totals whatever order the slots come in
        return {name: math.fsum(amounts) for name, amounts in parts.items()}

    async def _counter_hashes(self, chunk: int) -> list[Any]:
        """Every slot's counters hash (a set: SCAN may return a key more than once)."""
        found = {
            key
            async for key in self._redis.scan_iter(
                match=self._keys.counters_pattern(), count=chunk, _type="hash"
            )
        }
        return list(found)

    async def snapshot(self, user_id: str) -> Snapshot:
        """One user's current profile (for ``explain`` and tests)."""
        return (await self.load({user_id: []}))[user_id]

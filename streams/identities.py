"""Which user an anonymous visitor turned out to be: the collector's identity links.

A Segment client sends ``anonymousId`` until the visitor logs in or signs up; then an
``alias`` (``previousId`` -> ``userId``) or an ``identify`` carrying both links the two.
From then on the collector sends that visitor's anonymous-only events to the user id.
:class:`RedisIdentities` keeps each link as one string key (``Keys.anonymous``) with a TTL
(:data:`LINK_TTL`, renewed by every new link); :class:`InMemoryIdentities` is its twin,
and both run through one suite (``tests/streams/test_identities.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import Any, Protocol

from redis.exceptions import RedisError

from profiles import Keys
from streams.errors import StreamsError

__all__ = [
    "LINK_TTL",
    "Identities",
    "IdentityStoreUnavailable",
    "InMemoryIdentities",
    "RedisIdentities",
]

#: how long a link is kept after it was last made (a visitor's cookie rarely lives longer)
LINK_TTL = timedelta(days=400)


class IdentityStoreUnavailable(StreamsError):
    """The identity store could not be read or written."""


class Identities(Protocol):
    async def link(self, links: Mapping[str, str]) -> None:
        """Remember each ``anonymous_id -> user_id`` of ``links`` (a newer link replaces
        an older one); no links touch no store."""

    async def resolve(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        """The user id of each of ``anonymous_ids`` that is linked to one; no ids touch
        no store."""


class RedisIdentities:
    """One string key per anonymous id; one round trip per call, on Redis Cluster too
    (a non-transactional pipeline, which the cluster client splits by node)."""

    def __init__(self, redis: Any, *, keys: Keys, ttl: timedelta = LINK_TTL) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = int(ttl.total_seconds())

    async def link(self, links: Mapping[str, str]) -> None:
        if not links:
            return
        pipe = self._redis.pipeline(transaction=False)
        for anonymous_id, user_id in links.items():
            pipe.set(self._keys.anonymous(anonymous_id), user_id, ex=self._ttl)
        try:
            await pipe.execute()
        except RedisError as exc:
            raise IdentityStoreUnavailable(f"cannot write identity links: {exc}") from exc

    async def resolve(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        if not anonymous_ids:
            return {}
        ids = list(anonymous_ids)
        pipe = self._redis.pipeline(transaction=False)
        for anonymous_id in ids:
            pipe.get(self._keys.anonymous(anonymous_id))
        try:
            found = await pipe.execute()
        except RedisError as exc:
            raise IdentityStoreUnavailable(f"cannot read identity links: {exc}") from exc
        return {a: u.decode() for a, u in zip(ids, found, strict=True) if u is not None}


class InMemoryIdentities:
    """The twin: a dict with expiry times on ``clock`` (seconds)."""

    def __init__(
        self, *, ttl: timedelta = LINK_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._links: dict[str, tuple[str, float]] = {}
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self.failing = False

    async def link(self, links: Mapping[str, str]) -> None:
        if not links:
            return
        self._check()
        expires = self._clock() + self._ttl
        self._links.update((a, (u, expires)) for a, u in links.items())

    async def resolve(self, anonymous_ids: Collection[str]) -> dict[str, str]:
        if not anonymous_ids:
            return {}
        self._check()
        now = self._clock()
        found = {a: self._links.get(a) for a in anonymous_ids}
        return {a: link[0] for a, link in found.items() if link is not None and link[1] > now}

    def _check(self) -> None:
        if self.failing:
            raise IdentityStoreUnavailable("the in-memory identity store is failing")

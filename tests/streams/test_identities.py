"""One suite, three identity stores: Redis (one node and a Cluster) and its in-memory twin
must agree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from profiles import Keys
from streams.embedded import free_port
from streams.identities import (
    LINK_TTL,
    Identities,
    IdentityStoreUnavailable,
    InMemoryIdentities,
    RedisIdentities,
)

from ..conftest import STORES, redis_of


@pytest.fixture(params=STORES)
def identities(request: pytest.FixtureRequest, keys: Keys) -> Identities:
    if request.param == "memory":
        return InMemoryIdentities()
    return RedisIdentities(redis_of(request), keys=keys)


async def test_an_unlinked_id_resolves_to_nothing(identities: Identities) -> None:
    assert await identities.resolve(["anon-1"]) == {}
    assert await identities.resolve([]) == {}


async def test_links_resolve_and_a_newer_link_wins(identities: Identities) -> None:
    await identities.link({"anon-1": "u1", "anon-2": "u2"})
    assert await identities.resolve(["anon-1", "anon-2", "anon-3"]) == {
        "anon-1": "u1",
        "anon-2": "u2",
    }
    await identities.link({"anon-1": "u9"})
    assert await identities.resolve(["anon-1"]) == {"anon-1": "u9"}
    await identities.link({})


async def test_any_string_is_an_id(identities: Identities) -> None:
    odd = "{anon}:*?[x] \u00e9\U0001f600"
    await identities.link({odd: "user {1}"})
    assert await identities.resolve([odd]) == {odd: "user {1}"}


async def test_a_redis_link_expires_after_its_ttl(redis_client: aioredis.Redis, keys: Keys) -> None:
    await RedisIdentities(redis_client, keys=keys).link({"anon-1": "u1"})
    ttl = await redis_client.ttl(keys.anonymous("anon-1"))
    assert LINK_TTL.total_seconds() - 60 < ttl <= LINK_TTL.total_seconds()


async def test_an_in_memory_link_expires_after_its_ttl() -> None:
    now = [0.0]
    identities = InMemoryIdentities(ttl=timedelta(seconds=10), clock=lambda: now[0])
    await identities.link({"anon-1": "u1"})
    now[0] = 9.0
    assert await identities.resolve(["anon-1"]) == {"anon-1": "u1"}
    now[0] = 10.0
    assert await identities.resolve(["anon-1"]) == {}


@pytest.fixture
async def unreachable() -> AsyncIterator[RedisIdentities]:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    yield RedisIdentities(client, keys=Keys("test"))
    await client.aclose()


async def test_an_unreachable_redis_is_identity_store_unavailable(
    unreachable: RedisIdentities,
) -> None:
    with pytest.raises(IdentityStoreUnavailable):
        await unreachable.resolve(["anon-1"])
    with pytest.raises(IdentityStoreUnavailable):
        await unreachable.link({"anon-1": "u1"})

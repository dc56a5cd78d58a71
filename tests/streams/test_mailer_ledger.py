"""One suite, three delivery ledgers: Redis (one node and a Cluster) and its in-memory twin
must agree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import redis.asyncio as aioredis

from profiles import Keys
from streams.deliveries import (
    INTERRUPTED,
    Delivery,
    DeliveryLedger,
    InMemoryDeliveryLedger,
    RedisDeliveryLedger,
)

from ..conftest import STORES, redis_of

TTL = 3600.0
LEASE = 60.0


@dataclass
class Ledger:
    store: DeliveryLedger
    #: as if the lease of a request's claim ran out
    expire_lease: Callable[[str], Awaitable[None]]


@pytest.fixture(params=STORES)
def ledger(request: pytest.FixtureRequest, keys: Keys) -> Ledger:
    if request.param == "memory":
        memory = InMemoryDeliveryLedger(lease=LEASE)

        async def expire_memory(request_id: str) -> None:
            memory.expire_lease(request_id)

        return Ledger(memory, expire_memory)

    client = redis_of(request)

    async def expire_redis(request_id: str) -> None:
        await client.delete(keys.delivery_lease(request_id))

    return Ledger(RedisDeliveryLedger(client, keys=keys, ttl=TTL, lease=LEASE), expire_redis)


async def test_the_first_claim_is_taken(ledger: Ledger) -> None:
    held = Delivery.sending()
    assert await ledger.store.claim("r1", held) is None
    assert await ledger.store.get("r1") == replace(held, leased=True)


async def test_a_second_claim_finds_the_first_under_way(ledger: Ledger) -> None:
    first = Delivery.sending()
    await ledger.store.claim("r1", first)
    found = await ledger.store.claim("r1", Delivery.sending())
    assert found == replace(first, leased=True)
    assert found is not None and found.state == "sending" and not found.settled


async def test_a_finished_request_is_settled(ledger: Ledger) -> None:
    await ledger.store.claim("r1", Delivery.sending())
    await ledger.store.finish("r1", Delivery("delivered", 250))
    found = await ledger.store.claim("r1", Delivery.sending())
    assert found == Delivery("delivered", 250)
    assert found.settled


async def test_a_failure_keeps_its_detail_until_reported(ledger: Ledger) -> None:
    await ledger.store.claim("r1", Delivery.sending())
    failed = Delivery("failed", 550, "hard_bounce", detail="5.1.1 user unknown")
    await ledger.store.finish("r1", failed)
    assert await ledger.store.get("r1") == failed
    assert not failed.settled
    await ledger.store.finish("r1", replace(failed, reported=True, detail=None))
    done = await ledger.store.get("r1")
    assert done == Delivery("failed", 550, "hard_bounce", reported=True)
    assert done.settled


async def test_a_released_claim_may_be_taken_again(ledger: Ledger) -> None:
    held = Delivery.sending()
    await ledger.store.claim("r1", held)
    await ledger.store.release("r1", held)
    assert await ledger.store.get("r1") is None
    assert await ledger.store.claim("r1", Delivery.sending()) is None


async def test_only_the_claim_itself_is_released(ledger: Ledger) -> None:
    held = Delivery.sending()
    await ledger.store.claim("r1", held)
    await ledger.store.release("r1", Delivery.sending())  # another claim's
    assert await ledger.store.get("r1") == replace(held, leased=True)
    await ledger.store.finish("r1", Delivery("delivered", 250))
    await ledger.store.release("r1", held)  # too late: it is settled
    assert await ledger.store.get("r1") == Delivery("delivered", 250)


async def test_a_claim_under_lease_is_not_interrupted(ledger: Ledger) -> None:
    await ledger.store.claim("r1", Delivery.sending())
    found = await ledger.store.get("r1")
    assert found is not None
    assert not await ledger.store.interrupt("r1", found)
    assert await ledger.store.get("r1") == found


async def test_a_claim_whose_lease_lapsed_is_interrupted_once(ledger: Ledger) -> None:
    held = Delivery.sending()
    await ledger.store.claim("r1", held)
    await ledger.expire_lease("r1")
    found = await ledger.store.claim("r1", Delivery.sending())
    assert found == held  # not leased
    assert await ledger.store.interrupt("r1", found)
    assert not await ledger.store.interrupt("r1", found)  # the second caller
    assert await ledger.store.get("r1") == Delivery(
        "failed", reason="interrupted", detail=INTERRUPTED
    )


async def test_interrupting_a_changed_record_does_nothing(ledger: Ledger) -> None:
    held = Delivery.sending()
    await ledger.store.claim("r1", held)
    await ledger.expire_lease("r1")
    await ledger.store.finish("r1", Delivery("delivered", 250))  # its holder came through
    assert not await ledger.store.interrupt("r1", held)
    assert await ledger.store.get("r1") == Delivery("delivered", 250)


async def test_requests_are_independent(ledger: Ledger) -> None:
    await ledger.store.claim("r1", Delivery.sending())
    await ledger.store.finish("r1", Delivery("delivered", 250))
    assert await ledger.store.claim("r2", Delivery.sending()) is None
    assert await ledger.store.get("r3") is None
    await ledger.store.ping()


async def test_redis_records_expire_and_hold_no_address(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisDeliveryLedger(redis_client, keys=keys, ttl=TTL, lease=LEASE)
    await store.claim("r1", Delivery.sending())
    assert 0 < await redis_client.ttl(keys.delivery("r1")) <= TTL
    assert 0 < await redis_client.pttl(keys.delivery_lease("r1")) <= LEASE * 1000
    await store.finish("r1", Delivery("failed", 550, "hard_bounce", reported=True))
    assert 0 < await redis_client.ttl(keys.delivery("r1")) <= TTL
    assert not await redis_client.exists(keys.delivery_lease("r1"))
    assert b"@" not in await redis_client.get(keys.delivery("r1"))


async def test_a_claim_another_mailer_version_encoded_is_still_interrupted(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """Claims are told apart by their token, not by how a mailer wrote them."""
    store = RedisDeliveryLedger(redis_client, keys=keys, ttl=TTL, lease=LEASE)
    # written by another version: its fields in another order, and one this one lacks
    await redis_client.set(
        keys.delivery("r1"), b'{"t":"abc","p":false,"s":"sending","c":null,"r":null,"v":2}'
    )
    found = await store.get("r1")
    assert found is not None and found.claim == "abc" and not found.leased
    assert await store.interrupt("r1", found)
    assert await store.get("r1") == Delivery("failed", reason="interrupted", detail=INTERRUPTED)

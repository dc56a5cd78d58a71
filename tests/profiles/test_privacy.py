"""The suppression list (both stores under one suite), keyed hashes, and how the fold
keeps a profile's erased-address mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from profiles import (
    Event,
    InMemorySuppressionList,
    Keys,
    Profile,
    Pseudonyms,
    RedisSuppressionList,
    ScoringConfig,
    SuppressionList,
    SuppressionOps,
    apply_event,
)
from profiles.fold import check_address

from ..conftest import STORES, redis_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCORING = ScoringConfig()


@pytest.fixture(params=STORES)
def suppression(request: pytest.FixtureRequest, keys: Keys) -> SuppressionList:
    key = Pseudonyms(b"k" * 32)
    if request.param == "memory":
        return InMemorySuppressionList(key)
    return RedisSuppressionList(redis_of(request), keys=keys, pseudonyms=key)


async def test_the_list_answers_for_erased_addresses_only(suppression: SuppressionList) -> None:
    assert await suppression.erased(["a@example.com"]) == {}
    await suppression.apply(SuppressionOps(add={"a@example.com": 5_000}))
    found = await suppression.erased(["a@example.com", "b@example.com"])
    assert found == {"a@example.com": 5_000}


async def test_the_list_ignores_the_case_of_an_address(suppression: SuppressionList) -> None:
    await suppression.apply(SuppressionOps(add={"Ann.Lee@example.com": 5_000}))
    assert await suppression.erased(["ann.lee@example.com"]) == {"ann.lee@example.com": 5_000}


async def test_a_fresh_consent_takes_an_address_off(suppression: SuppressionList) -> None:
    await suppression.apply(SuppressionOps(add={"a@example.com": 5_000, "b@example.com": 6_000}))
    await suppression.apply(SuppressionOps(remove={"a@example.com"}))
    assert await suppression.erased(["a@example.com", "b@example.com"]) == {"b@example.com": 6_000}


async def test_redis_holds_keyed_hashes_not_addresses(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisSuppressionList(redis_client, keys=keys, pseudonyms=Pseudonyms(b"k" * 32))
    await store.apply(SuppressionOps(add={"alice@example.com": 5_000}))
    stored = await redis_client.hgetall(keys.suppressed())
    assert len(stored) == 1
    assert not any(b"alice" in k or b"example" in k for k in stored)


def test_keyed_hashes_depend_on_the_key_and_tell_users_from_addresses() -> None:
    one, other = Pseudonyms(b"1" * 32), Pseudonyms(b"2" * 32)
    assert one.user("42") == one.user("42") != other.user("42")
    assert one.address("42") != one.user("42")
    assert len(one.user("42")) == 32
    assert "one" not in repr(one) and "111" not in repr(one)  # the key stays out of reprs


def test_ops_keep_the_last_word_per_address() -> None:
    ops = SuppressionOps()
    ops.suppress("a@example.com", 5)
    ops.merge(SuppressionOps(remove={"a@example.com"}))
    assert (ops.add, ops.remove) == ({}, {"a@example.com"})
    ops.suppress("a@example.com", 7)
    assert (ops.add, ops.remove) == ({"a@example.com": 7}, set())


def event(kind: str, at: datetime, **properties: object) -> Event:
    return Event(
        event_id=f"{kind}-{at.timestamp()}", type=kind, user_id="u1", ts=at, properties=properties
    )


ERASED = {"a@example.com": int(T0.timestamp() * 1000)}


def fold(profile: Profile | None, e: Event) -> tuple[Profile, str | None]:
    after = apply_event(profile, e, SCORING)
    assert after is not None
    return after, check_address(after, e, ERASED)


def test_an_imported_erased_address_is_marked_until_a_fresh_grant() -> None:
    later = T0 + timedelta(days=1)
    imported, released = fold(
        None, event("profile_update", later, traits={"email": "a@example.com"})
    )
    assert imported.address_erased_at == T0
    assert released is None
    revoked, released = fold(imported, event("consent", later, channel="email", granted=False))
    assert revoked.address_erased_at == T0 and released is None
    granted, released = fold(revoked, event("consent", later, channel="email", granted=True))
    assert granted.address_erased_at is None
    assert released == "a@example.com"


def test_a_signup_with_consent_after_the_erasure_is_fresh_consent() -> None:
    later = T0 + timedelta(hours=1)
    signup = {"email": "a@example.com", "consent": {"email": True}}
    fresh, released = fold(None, event("signup", later, **signup))
    assert fresh.address_erased_at is None
    assert released == "a@example.com"
    # a signup without consent, or one dated before the erasure (a replay), is not
    unconsented, _ = fold(None, event("signup", later, email="a@example.com"))
    assert unconsented.address_erased_at == T0
    replayed, released = fold(None, event("signup", T0 - timedelta(days=1), **signup))
    assert replayed.address_erased_at == T0 and released is None


def test_a_new_address_clears_the_mark() -> None:
    later = T0 + timedelta(hours=1)
    marked, _ = fold(None, event("profile_update", later, traits={"email": "a@example.com"}))
    moved, released = fold(
        marked, event("profile_update", later, traits={"email": "new@example.com"})
    )
    assert moved.address_erased_at is None
    assert released is None  # the old address stays on the list

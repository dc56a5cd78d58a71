"""One suite, three stores: the Redis implementations, on one redis-server and on a real
Redis Cluster, and their in-memory twins must agree."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import cast

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from profiles import (
    CorruptProfile,
    InMemoryProfileStore,
    InMemoryTimerStore,
    Keys,
    Profile,
    ProfileError,
    ProfileStore,
    ProfileWrite,
    RedisProfileStore,
    RedisTimerStore,
    Snapshot,
    StoreUnavailable,
    Timer,
    TimerOps,
    TimerStore,
)
from profiles.redis_store import translate_errors
from profiles.store import dedup_records
from profiles.stored import dump_profile
from profiles.timers import DEFLATED_V1, DICTIONARY_V1

from ..conftest import STORES, redis_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: the stores' dedup age bound in these tests (ms)
MAX_AGE = 10_000


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest) -> aioredis.Redis | None:
    """The Redis client of the stores under test; None for the in-memory twins."""
    return None if request.param == "memory" else redis_of(request)


@pytest.fixture
def profile_store(backend: aioredis.Redis | None, keys: Keys) -> ProfileStore:
    if backend is None:
        return InMemoryProfileStore(dedup_window=3, dedup_max_age_ms=MAX_AGE)
    cluster = isinstance(backend, aioredis.RedisCluster)
    return RedisProfileStore(
        backend, keys=keys, dedup_window=3, dedup_max_age_ms=MAX_AGE, cluster=cluster
    )


@pytest.fixture
def timer_store(backend: aioredis.Redis | None, keys: Keys) -> TimerStore:
    if backend is None:
        return InMemoryTimerStore()
    return RedisTimerStore(backend, keys=keys)


def profile(user_id: str = "u1", **fields: object) -> Profile:
    return Profile(user_id=user_id, first_seen=T0, last_seen=T0, **fields)


async def test_unknown_user_loads_as_empty_snapshot(profile_store: ProfileStore) -> None:
    snap = (await profile_store.load({"nobody": ["e1"]}))["nobody"]
    assert snap.profile is None
    assert snap.version == 0
    assert snap.seen == frozenset()


async def test_saved_profile_round_trips_with_seen_events(profile_store: ProfileStore) -> None:
    stored = profile(email="a@example.com", traits={"plan": "pro"})
    assert await profile_store.save([ProfileWrite("u1", 0, stored, (("e1", 1), ("e2", 2)))]) == []
    snap = (await profile_store.load({"u1": ["e1", "e2", "e3"]}))["u1"]
    assert snap.profile == stored
    assert snap.version == 1
    assert snap.seen == {"e1", "e2"}


async def test_stale_version_is_refused_and_reported(profile_store: ProfileStore) -> None:
    await profile_store.save([ProfileWrite("u1", 0, profile(email="first@example.com"))])
    conflicts = await profile_store.save(
        [
            ProfileWrite("u1", 0, profile(email="zombie@example.com")),
            ProfileWrite("u2", 0, profile("u2")),
        ]
    )
    assert conflicts == ["u1"]
    snaps = await profile_store.load({"u1": [], "u2": []})
    assert snaps["u1"].profile is not None
    assert snaps["u1"].profile.email == "first@example.com"
    assert snaps["u2"].version == 1


async def test_erasure_deletes_profile_and_dedup_records_and_keeps_a_tombstone(
    profile_store: ProfileStore,
) -> None:
    await profile_store.save([ProfileWrite("u1", 0, profile(), (("e1", 1_000),))])
    assert await profile_store.save([ProfileWrite("u1", 1, None, erased_ms=5_000)]) == []
    snap = (await profile_store.load({"u1": ["e1"]}))["u1"]
    assert (snap.profile, snap.version, snap.seen) == (None, 0, frozenset())
    assert snap.erased_ms == 5_000
    assert (await profile_store.load({"u2": []}))["u2"].erased_ms is None


async def test_a_tombstone_keeps_the_latest_erasure_and_outlives_a_new_profile(
    profile_store: ProfileStore,
) -> None:
    await profile_store.save([ProfileWrite("u1", 0, None, erased_ms=9_000)])
    await profile_store.save([ProfileWrite("u1", 0, None, erased_ms=4_000)])  # a replay
    # the user came back after the erasure: a new profile beside the tombstone
    await profile_store.save([ProfileWrite("u1", 0, profile(), (("e9", 10_000),))])
    snap = (await profile_store.load({"u1": ["e9"]}))["u1"]
    assert snap.profile is not None
    assert snap.seen == {"e9"}
    assert snap.erased_ms == 9_000


async def test_an_erasure_with_later_events_keeps_only_those(
    profile_store: ProfileStore,
) -> None:
    await profile_store.save([ProfileWrite("u1", 0, profile(), (("old", 1_000),))])
    after = profile(email="back@example.com")
    await profile_store.save([ProfileWrite("u1", 1, after, (("new", 9_000),), erased_ms=5_000)])
    snap = (await profile_store.load({"u1": ["old", "new"]}))["u1"]
    assert snap.profile == after
    assert snap.seen == {"new"}
    assert snap.erased_ms == 5_000


async def test_nothing_of_an_erased_user_stays_under_their_hash_tag(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys, tombstone_ms=60_000)
    user = "user:{42} x"  # characters that matter in Redis keys
    await store.save([ProfileWrite(user, 0, profile(user), (("e1", 1_000),))])
    assert await redis_client.keys(f"{keys.prefix}:{{{user}}}*")
    await store.save([ProfileWrite(user, 1, None, erased_ms=2_000)])
    left = await redis_client.keys(f"{keys.prefix}:*")
    assert not [k for k in left if user.encode() in k]
    (tombstone,) = left  # named by a keyed hash, not the id
    assert b":erased:" in tombstone
    assert 0 < await redis_client.pttl(tombstone) <= 60_000
    assert key_slot(tombstone) == key_slot(keys.profile(user).encode())


async def test_a_forgetting_delete_leaves_nothing_of_the_user_and_no_tombstone(
    profile_store: ProfileStore, backend: aioredis.Redis | None, keys: Keys
) -> None:
    await profile_store.save(
        [
            ProfileWrite("u1", 0, profile(email="a@example.com"), (("e1", 1000),)),
            ProfileWrite("u2", 0, profile("u2"), (("e2", 1000),)),
        ]
    )
    if backend is not None:
        await backend.zadd(keys.legacy_seen("u1"), {"e0": 1000})  # raw ids go too
    assert await profile_store.save([ProfileWrite("u1", 1, None, forget=True)]) == []
    snaps = await profile_store.load({"u1": ["e0", "e1"], "u2": ["e2"]})
    assert snaps["u1"] == Snapshot(None)  # no profile, no dedup record, no tombstone
    assert snaps["u2"].seen == {"e2"}  # other users keep theirs
    if backend is not None:
        assert [k async for k in backend.scan_iter(match=f"{keys.prefix}:*{{u1}}*")] == []
        assert [k async for k in backend.scan_iter(match=f"{keys.prefix}:*:erased:*")] == []
    else:
        assert isinstance(profile_store, InMemoryProfileStore)
        assert not profile_store.holds("u1")
    # not an erasure: a later event builds a fresh profile, and a redelivery of an event
    # the old profile held is applied again
    await profile_store.save([ProfileWrite("u1", 0, profile(), (("e1", 1000),))])
    snap = (await profile_store.load({"u1": ["e1"]}))["u1"]
    assert (snap.profile, snap.version, snap.seen) == (profile(), 1, {"e1"})


async def test_an_erasing_write_drops_the_dedup_records_and_leaves_a_tombstone(
    profile_store: ProfileStore,
) -> None:
    await profile_store.save([ProfileWrite("u1", 0, profile(), (("e1", 1000),))])
    erase = ProfileWrite("u1", 1, None, (("e2", 3000),), erased_ms=2000)
    assert await profile_store.save([erase]) == []
    snap = (await profile_store.load({"u1": ["e1", "e2"]}))["u1"]
    assert (snap.profile, snap.seen, snap.erased_ms) == (None, {"e2"}, 2000)


async def test_dedup_window_keeps_the_newest_event_ids(profile_store: ProfileStore) -> None:
    applied = tuple((f"e{i}", i) for i in range(1, 6))
    await profile_store.save([ProfileWrite("u1", 0, profile(), applied)])
    snap = (await profile_store.load({"u1": [e for e, _ in applied]}))["u1"]
    assert snap.seen == {"e3", "e4", "e5"}


async def test_dedup_forgets_events_older_than_max_age(profile_store: ProfileStore) -> None:
    t = 1_700_000_000_000  # epoch ms: the age bound must hold at real magnitudes
    applied = (("old", t), ("edge", t + 1000))
    await profile_store.save([ProfileWrite("u1", 0, profile(), applied)])
    newest = t + 1000 + MAX_AGE  # to the second
    await profile_store.save([ProfileWrite("u1", 1, profile(), (("new", newest),))])
    snap = (await profile_store.load({"u1": ["old", "edge", "new"]}))["u1"]
    assert snap.seen == {"edge", "new"}


async def test_a_late_event_is_remembered_until_the_window_passes_it(
    profile_store: ProfileStore,
) -> None:
    applied = (("new", 50_000), ("late", 1))
    await profile_store.save([ProfileWrite("u1", 0, profile(), applied)])
    snap = (await profile_store.load({"u1": ["new", "late"]}))["u1"]
    assert snap.seen == {"new", "late"}
    later = (("a", 50_001), ("b", 50_002), ("c", 50_003))
    await profile_store.save([ProfileWrite("u1", 1, profile(), later)])
    snap = (await profile_store.load({"u1": ["new", "late", "a"]}))["u1"]
    assert snap.seen == {"a"}


async def test_event_ids_stored_before_digests_still_dedup(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys, dedup_window=3, dedup_max_age_ms=MAX_AGE)
    await redis_client.zadd(keys.legacy_seen("u1"), {"e1": 1000})
    snap = (await store.load({"u1": ["e1", "e2"]}))["u1"]
    assert snap.seen == {"e1"}
    # the raw ids age out like the digests: by the user's newest applied event
    await store.save([ProfileWrite("u1", 0, profile(), (("e3", 2000 + MAX_AGE),))])
    assert await redis_client.exists(keys.legacy_seen("u1")) == 0
    assert (await store.load({"u1": ["e1", "e3"]}))["u1"].seen == {"e3"}


def timer(rule: str = "cart", user: str = "u1", due: int = 1000, event: str = "e1") -> Timer:
    return Timer(rule, user, due, 0, {"event_id": event, "type": "add_to_cart"})


def ops(*timers: Timer, cancel: tuple[str, ...] = ()) -> TimerOps:
    result = TimerOps()
    for t in timers:
        result.add(t)
    for tid in cancel:
        result.remove(0, tid)
    return result


async def test_only_due_timers_are_claimed(timer_store: TimerStore) -> None:
    await timer_store.apply(ops(timer("a", due=1000), timer("b", due=5000)))
    claimed = await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert [t.rule_id for t in claimed] == ["a"]
    assert claimed[0].trigger_event_id == "e1"


async def test_timers_are_per_partition(timer_store: TimerStore) -> None:
    other = Timer("a", "u9", 1000, 3, {"event_id": "x"})
    await timer_store.apply(ops(timer("a"), other))
    assert [t.user_id for t in await timer_store.claim_due(3, 2000, limit=10, lease_ms=1)] == ["u9"]


async def test_claimed_timer_is_leased_not_refired(timer_store: TimerStore) -> None:
    await timer_store.apply(ops(timer()))
    assert len(await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)) == 1
    assert await timer_store.claim_due(0, 3000, limit=10, lease_ms=60_000) == []
    # the worker died without completing: after the lease the timer fires again
    again = await timer_store.claim_due(0, 62_001, limit=10, lease_ms=60_000)
    assert [t.id for t in again] == [timer().id]


async def test_count_is_every_pending_timer_of_the_partition(timer_store: TimerStore) -> None:
    other = Timer("a", "u9", 1000, 3, {"event_id": "x"})
    await timer_store.apply(ops(timer("a", due=1000), timer("b", due=5000), other))
    await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert (await timer_store.count(0), await timer_store.count(3)) == (2, 1)
    await timer_store.complete(await timer_store.claim_due(0, 6000, limit=10, lease_ms=1))
    assert await timer_store.count(0) == 1  # the claimed-and-leased one is still pending
    assert await timer_store.count(5) == 0


async def test_completed_timer_is_gone(timer_store: TimerStore) -> None:
    await timer_store.apply(ops(timer()))
    claimed = await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    await timer_store.complete(claimed)
    assert await timer_store.pending(0) == []
    assert await timer_store.claim_due(0, 10**12, limit=10, lease_ms=1) == []


async def test_rescheduled_while_claimed_survives_completion(timer_store: TimerStore) -> None:
    await timer_store.apply(ops(timer(due=1000, event="e1")))
    claimed = await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    await timer_store.apply(ops(timer(due=9000, event="e2")))  # a new cart change
    await timer_store.complete(claimed)
    pending = await timer_store.pending(0)
    assert [(t.due_ms, t.trigger_event_id) for t in pending] == [(9000, "e2")]


async def test_reschedule_replaces_and_cancel_removes(timer_store: TimerStore) -> None:
    await timer_store.apply(ops(timer(due=1000, event="e1")))
    await timer_store.apply(ops(timer(due=7000, event="e2")))
    assert [t.due_ms for t in await timer_store.pending(0)] == [7000]
    await timer_store.apply(ops(cancel=(timer().id,)))
    assert await timer_store.pending(0) == []


async def test_claim_respects_limit_soonest_first(timer_store: TimerStore) -> None:
    await timer_store.apply(ops(*(timer(f"r{i}", due=100 * (5 - i)) for i in range(5))))
    claimed = await timer_store.claim_due(0, 10_000, limit=2, lease_ms=60_000)
    assert [t.rule_id for t in claimed] == ["r4", "r3"]


async def test_a_batch_of_many_users_round_trips(profile_store: ProfileStore) -> None:
    users = [f"user-{n}" for n in range(40)]
    await profile_store.save(
        [
            ProfileWrite(u, 0, profile(u, traits={"n": n}), ((f"{u}-e", n),))
            for n, u in enumerate(users)
        ]
    )
    snaps = await profile_store.load({u: [f"{u}-e", "other"] for u in users})
    for n, user in enumerate(users):
        snap = snaps[user]
        assert snap.profile is not None and snap.profile.traits == {"n": n}
        assert (snap.version, snap.seen) == (1, {f"{user}-e"})


async def test_scan_lists_every_stored_user(profile_store: ProfileStore) -> None:
    users = {f"user|{n}" for n in range(7)} | {"with:colon"}
    await profile_store.save([ProfileWrite(u, 0, profile(u)) for u in users])
    await profile_store.save([ProfileWrite("user|0", 1, None)])  # erased: no profile
    found = [u async for chunk in profile_store.scan(chunk=3) for u in chunk]
    assert set(found) == users - {"user|0"}


#: ids whose braces meet Redis Cluster's hash tags (see :mod:`profiles.keys`)
BRACED = ("}abc", "{}", "a}b{c", "}", "x{y}z")


async def test_users_with_braces_in_their_ids_round_trip_in_one_batch(
    profile_store: ProfileStore,
) -> None:
    stored = {u: profile(u, traits={"id": u}) for u in BRACED}
    writes = [
        ProfileWrite(u, 0, stored[u], ((f"{u}-e", 1),), counters=(("sent", 1),)) for u in BRACED
    ]
    assert await profile_store.save(writes) == []
    snaps = await profile_store.load({u: [f"{u}-e", "other"] for u in BRACED})
    for user in BRACED:
        assert (snaps[user].profile, snaps[user].version) == (stored[user], 1)
        assert snaps[user].seen == {f"{user}-e"}
    assert {u async for chunk in profile_store.scan() for u in chunk} == set(BRACED)
    assert await profile_store.counters() == {"sent": len(BRACED)}
    assert (
        await profile_store.save([ProfileWrite(u, 1, None, erased_ms=5_000) for u in BRACED]) == []
    )
    snaps = await profile_store.load({u: [] for u in BRACED})
    assert {u: (s.profile, s.erased_ms) for u, s in snaps.items()} == dict.fromkeys(
        BRACED, (None, 5_000)
    )


async def test_timers_of_users_with_braces_in_their_ids_fire_and_complete(
    timer_store: TimerStore,
) -> None:
    await timer_store.apply(ops(*(timer(user=u) for u in BRACED)))
    claimed = await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert sorted(t.user_id for t in claimed) == sorted(BRACED)
    await timer_store.complete(claimed)
    assert await timer_store.count(0) == 0


async def test_timers_of_ids_and_keys_with_bars_fire_and_cancel(timer_store: TimerStore) -> None:
    """A timer id is ``rule|user|key``, and a user id (``auth0|...``) or key may hold a
    ``|`` too: each such timer is still found, claimed, completed and cancelled alone."""
    barred = [
        Timer("cart", user, 1000, 0, {"event_id": "e1"}, key=key)
        for user, key in [("auth0|ab", ""), ("auth0|ab", "c|1"), ("auth0|cd", "x"), ("u", "|")]
    ]
    await timer_store.apply(ops(*barred))
    assert len({t.id for t in barred}) == await timer_store.count(0) == 4
    assert await timer_store.find(0, [barred[1].id]) == [barred[1]]
    claimed = await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert sorted(t.id for t in claimed) == sorted(t.id for t in barred)
    await timer_store.complete(claimed[:2])
    await timer_store.apply(ops(cancel=(claimed[2].id,)))
    assert [t.id for t in await timer_store.pending(0)] == [claimed[3].id]


async def test_a_stored_timer_names_its_user_only_where_its_id_does_not(
    timer_store: TimerStore,
) -> None:
    """A timer's id names its user unless the key holds a ``|`` too; the stored JSON keeps
    the user only then, and each timer comes back with its own user."""
    plain = Timer("cart", "auth0|ab", 1000, 0, {"event_id": "e1"}, key="c1")
    barred = Timer("cart", "auth0", 1000, 0, {"event_id": "e2"}, key="ab|1")
    assert b"user_id" not in plain.to_json()
    assert b'"user_id":"auth0"' in barred.to_json()
    await timer_store.apply(ops(plain, barred))
    assert sorted(await timer_store.pending(0), key=lambda t: t.id) == [barred, plain]
    claimed = await timer_store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert {(t.id, t.user_id) for t in claimed} == {(plain.id, "auth0|ab"), (barred.id, "auth0")}


async def test_a_user_with_many_timers_has_each_claimed_once(timer_store: TimerStore) -> None:
    many = [
        Timer("browse", "u1", 1000 + n, 0, {"event_id": "e1"}, key=f"p{n}") for n in range(1200)
    ]
    await timer_store.apply(ops(*many))
    claimed: list[Timer] = []
    while batch := await timer_store.claim_due(0, 5000, limit=500, lease_ms=60_000):
        assert len(batch) <= 500
        claimed += batch
        await timer_store.complete(batch)
    assert sorted(t.key for t in claimed) == sorted(t.key for t in many)
    assert await timer_store.count(0) == 0


async def test_a_users_timers_are_one_entry_of_the_partitions_keys(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisTimerStore(redis_client, keys=keys)
    await store.apply(ops(timer("a", due=3000), timer("b", due=2000), timer("c", user="u2")))
    due = await redis_client.zrange(keys.timers_due(0), 0, -1, withscores=True)
    assert due == [(b"@u2", 1000.0), (b"@u1", 2000.0)]
    fields = await redis_client.hkeys(keys.timers_data(0))
    assert sorted(fields) == [b"#timers", b"#users", b"@u1", b"@u2"]
    assert await store.count(0) == 3
    await store.complete(await store.claim_due(0, 2500, limit=10, lease_ms=60_000))
    assert await redis_client.zscore(keys.timers_due(0), "@u1") == 3000
    await store.apply(ops(cancel=(timer("a").id, timer("c", user="u2").id)))
    assert await redis_client.zcard(keys.timers_due(0)) == await store.count(0) == 0


async def test_timers_stored_one_entry_each_are_read_and_moved_when_scheduled_again(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    """Timers stored before their user's entry, each under its own id, still count,
    are found, listed, claimed and completed; scheduled or cancelled again, they leave
    that form."""
    store = RedisTimerStore(redis_client, keys=keys)
    old = [timer("a", due=1000), timer("b", due=4000), timer("c", due=5000)]
    for t in old:
        await redis_client.hset(keys.timers_data(0), t.id, t.to_stored())
        await redis_client.zadd(keys.timers_due(0), {t.id: t.due_ms})
    await store.apply(ops(timer("d", due=3000)))
    assert await store.count(0) == 4
    assert [t.rule_id for t in await store.pending(0)] == ["a", "d", "b", "c"]
    assert await store.find(0, [old[1].id]) == [old[1]]
    claimed = await store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert claimed == [old[0]]
    await store.complete(claimed)
    await store.apply(ops(timer("b", due=6000), cancel=(old[2].id,)))
    assert await store.count(0) == 2
    assert sorted(await redis_client.hkeys(keys.timers_data(0))) == [b"#timers", b"#users", b"@u1"]
    assert [(t.rule_id, t.due_ms) for t in await store.pending(0)] == [("d", 3000), ("b", 6000)]


async def test_a_timer_keeps_what_firing_reads_of_its_event(timer_store: TimerStore) -> None:
    event = {
        "event_id": "e1",
        "type": "add_to_cart",
        "user_id": "u1",
        "ts": "2026-03-01T12:00:00Z",
        "properties": {"name": "Mug"},
        "context": {"user_agent": "x" * 500},
    }
    await timer_store.apply(ops(Timer("cart", "u1", 1000, 0, event, key="c1")))
    [stored] = await timer_store.pending(0)
    assert stored.trigger_event == {**event, "context": None}
    assert (stored.key, stored.step, stored.instance, stored.deferred) == ("c1", None, "", False)
    assert len(stored.to_json()) < 200


async def test_a_timer_is_stored_deflated_in_a_fraction_of_its_json(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    event = {
        "event_id": "u1-17",
        "type": "product_view",
        "user_id": "u1",
        "ts": "2026-03-01T12:00:00Z",
        "properties": {"product_id": "sku-00630", "name": "Little card", "price": 17.9},
        "context": None,
    }
    timer = Timer("browse_abandonment", "u1", 1000, 0, event, key="sku-00630")
    store = RedisTimerStore(redis_client, keys=keys)
    await store.apply(ops(timer))
    [found] = await store.find(0, [timer.id])
    stored = found.stored_form
    assert stored[:1] == DEFLATED_V1
    assert len(stored) * 2 < len(timer.to_json())
    assert Timer.from_stored(stored, 0, timer.id) == timer


def test_the_timer_dictionary_is_the_one_timers_were_stored_with() -> None:
    """Stored timers can only be read with the dictionary they were written with: a
    regenerated one needs a new file and form byte (see ``profiles.timers``)."""
    digest = "1d4f673139a6cc93938f16691d1671cde88f82535534205d4f8da73b260e081a"
    assert hashlib.sha256(DICTIONARY_V1).hexdigest() == digest


@pytest.mark.parametrize(
    "stored",
    [
        DEFLATED_V1 + b"not deflate",
        b"\x01",
        b"{not json",
        b'{"rule_id": "cart"}',  # no trigger event
        b"[1, 2]",
        Timer("cart", "u1", 1000, 0, {"event_id": "e1", "type": "x"}).to_stored() + b"junk",
    ],
)
def test_a_corrupt_stored_timer_is_an_error(stored: bytes) -> None:
    with pytest.raises(ValueError):
        Timer.from_stored(stored, 0, "cart|u1|")


def test_a_stored_timer_without_its_user_needs_an_id_that_names_one() -> None:
    stored = Timer("cart", "u1", 1000, 0, {"event_id": "e1", "type": "x"}).to_stored()
    with pytest.raises(ValueError):
        Timer.from_stored(stored, 0, "no bars")


def test_a_stored_timer_cut_short_is_an_error() -> None:
    stored = Timer("cart", "u1", 1000, 0, {"event_id": "e1", "type": "x"}).to_stored()
    with pytest.raises(ValueError, match="ends early"):
        Timer.from_stored(stored[:-4], 0, "cart|u1|")


async def test_a_timer_stored_whole_still_fires_and_completes(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisTimerStore(redis_client, keys=keys)
    old = (
        b'{"deferred":false,"due_ms":1000,"instance":"","key":"c1","rule_id":"cart",'
        b'"started_ms":0,"step":null,"trigger_event":{"context":{"ua":"x"},"event_id":"e1",'
        b'"properties":{"name":"Mug"},"ts":"2026-03-01T12:00:00Z","type":"add_to_cart",'
        b'"user_id":"u1"},"user_id":"u1"}'
    )
    tid = timer("cart").id + "c1"
    await redis_client.hset(keys.timers_data(0), tid, old)
    await redis_client.zadd(keys.timers_due(0), {tid: 1000})
    [claimed] = await store.claim_due(0, 2000, limit=10, lease_ms=60_000)
    assert claimed.trigger_event["context"] == {"ua": "x"}
    assert (claimed.trigger_event_id, claimed.key) == ("e1", "c1")
    await store.complete([claimed])
    assert await store.pending(0) == []


async def test_a_profile_stored_as_plain_json_still_loads(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    before = profile(email="a@example.com")
    await redis_client.hset(keys.profile("u1"), mapping={"v": 4, "p": before.model_dump_json()})
    snap = await store.snapshot("u1")
    assert (snap.profile, snap.version) == (before, 4)


async def test_a_user_is_one_string_of_version_dedup_records_and_stored_profile(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    saved = profile(email="a@example.com")
    assert await store.save([ProfileWrite("u1", 0, saved, (("e1", 1000),))]) == []
    assert await store.save([ProfileWrite("u1", 1, saved, (("e2", 2000),))]) == []
    records = dedup_records((("e1", 1000), ("e2", 2000)))
    assert await redis_client.keys(f"{keys.prefix}:*") == [keys.profile("u1").encode()]
    stored = await redis_client.get(keys.profile("u1"))
    assert stored == b"2:24:" + records + dump_profile(saved)


async def test_dedup_records_outlive_a_deleted_profile_in_the_same_key(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    await store.save([ProfileWrite("u1", 0, profile(), (("e1", 1000),))])
    await store.save([ProfileWrite("u1", 1, None, (("e2", 2000),))])
    snap = (await store.load({"u1": ["e1", "e2", "e3"]}))["u1"]
    assert (snap.profile, snap.version, snap.seen) == (None, 0, {"e1", "e2"})
    await store.save([ProfileWrite("u1", 0, None, forget=True)])
    assert await redis_client.exists(keys.profile("u1")) == 0


@pytest.mark.parametrize("stored", [b"{not json", b"3:0:{", b"3:99:short", b"3:x:{}"])
async def test_a_corrupt_user_key_is_a_corrupt_profile_of_that_user(
    redis_client: aioredis.Redis, keys: Keys, stored: bytes
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    await redis_client.set(keys.profile("u1"), stored)
    with pytest.raises(CorruptProfile) as caught:
        await store.load({"u1": ["e1"], "u2": ["e1"]})
    assert caught.value.user_id == "u1"


async def test_a_user_stored_as_a_hash_and_a_dedup_key_is_read_and_merged_when_written(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    before, after = profile(email="a@example.com"), profile(email="b@example.com")
    await redis_client.hset(keys.profile("u1"), mapping={"v": 7, "p": dump_profile(before)})
    await redis_client.set(keys.seen("u1"), dedup_records((("e1", 1000),)))
    snap = (await store.load({"u1": ["e1", "e2"]}))["u1"]
    assert (snap.profile, snap.version, snap.seen) == (before, 7, {"e1"})
    assert await store.save([ProfileWrite("u1", 6, after)]) == ["u1"]
    assert await store.save([ProfileWrite("u1", 7, after, (("e2", 2000),))]) == []
    assert await redis_client.exists(keys.seen("u1")) == 0
    assert await redis_client.type(keys.profile("u1")) == b"string"
    snap = (await store.load({"u1": ["e1", "e2"]}))["u1"]
    assert (snap.profile, snap.version, snap.seen) == (after, 8, {"e1", "e2"})


async def test_dedup_records_stored_apart_with_no_profile_still_dedup(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    await redis_client.set(keys.seen("u1"), dedup_records((("e1", 1000),)))
    snap = (await store.load({"u1": ["e1", "e2"]}))["u1"]
    assert (snap.profile, snap.version, snap.seen) == (None, 0, {"e1"})
    await store.save([ProfileWrite("u1", 0, profile(), (("e2", 2000),))])
    assert await redis_client.exists(keys.seen("u1")) == 0
    assert (await store.load({"u1": ["e1", "e2"]}))["u1"].seen == {"e1", "e2"}


def counting(user_id: str, version: int, *counters: tuple[str, float]) -> ProfileWrite:
    return ProfileWrite(user_id, version, profile(user_id), counters=counters)


async def test_counters_add_up_across_users_and_writes(profile_store: ProfileStore) -> None:
    users = [f"user-{n}" for n in range(20)]  # over many hash slots
    await profile_store.save([counting(u, 0, ("sent", 1), ("opened", 1)) for u in users])
    await profile_store.save([counting("user-0", 1, ("sent", 2), ("sent", 1))])
    await profile_store.save([counting("user-1", 1)])  # brings none
    assert await profile_store.counters() == {"sent": 23.0, "opened": 20.0}


async def test_a_refused_write_adds_no_counters(profile_store: ProfileStore) -> None:
    await profile_store.save([counting("u1", 0, ("sent", 1))])
    conflicts = await profile_store.save(
        [counting("u1", 0, ("sent", 5), ("refused", 1)), counting("u2", 0, ("sent", 1))]
    )
    assert conflicts == ["u1"]
    assert await profile_store.counters() == {"sent": 2.0}


async def test_counters_are_read_by_field_prefix(profile_store: ProfileStore) -> None:
    exposed = "x\x1fcart_subject_test\x1fb\x1fexposed"
    revenue = "x\x1fpromo-été\x1fholdout\x1frevenue"  # field names are opaque text
    await profile_store.save([counting("u1", 0, (exposed, 1), (revenue, 30), ("y\x1fz", 4))])
    assert await profile_store.counters("x\x1f") == {exposed: 1.0, revenue: 30.0}
    assert await profile_store.counters("x\x1fpromo") == {revenue: 30.0}
    assert await profile_store.counters("nothing") == {}
    assert set(await profile_store.counters()) == {exposed, revenue, "y\x1fz"}


async def test_counters_outlive_the_profiles_that_added_them(profile_store: ProfileStore) -> None:
    await profile_store.save([counting("u1", 0, ("sent", 1)), counting("u2", 0, ("sent", 1))])
    # aggregates, not personal data: neither an erasure nor a forgetting delete takes them
    deletes = [
        ProfileWrite("u1", 1, None, erased_ms=5_000, counters=(("erased", 1),)),
        ProfileWrite("u2", 1, None, forget=True),
    ]
    assert await profile_store.save(deletes) == []
    assert (await profile_store.load({"u1": []}))["u1"].profile is None
    assert await profile_store.counters() == {"sent": 2.0, "erased": 1.0}


async def test_counters_add_fractional_amounts(profile_store: ProfileStore) -> None:
    totals = [19.99, 5.01, 0.1, 1234.56, 1e-3]
    await profile_store.save(
        [counting(f"u{n}", 0, ("revenue", t), ("revenue_sq", t * t)) for n, t in enumerate(totals)]
    )
    await profile_store.save([counting("u0", 1, ("revenue", 0.2), ("refund", -5.01))])
    counters = await profile_store.counters()
    # Redis adds in long double and keeps 17 digits: equal to a double sum, nearly
    assert counters == pytest.approx(
        {
            "revenue": sum(totals) + 0.2,
            "revenue_sq": sum(t * t for t in totals),
            "refund": -5.01,
        },
        rel=1e-15,
    )


def test_counter_amounts_must_be_finite_numbers() -> None:
    for amount in (float("nan"), float("inf"), -float("inf"), True):
        with pytest.raises(ValueError, match="finite numbers"):
            ProfileWrite("u1", 0, None, counters=(("sent", 1), ("revenue", amount)))


async def test_on_cluster_counters_live_in_the_hash_slot_of_the_users_keys(
    cluster_client: aioredis.RedisCluster, keys: Keys
) -> None:
    store = RedisProfileStore(cast(aioredis.Redis, cluster_client), keys=keys, cluster=True)
    users = ["u1", "user:{42} x", "ünïcode", "u2"]
    await store.save([counting(u, 0, (f"by {u}", 1)) for u in users])
    for user in users:
        counters = keys.counters(user)
        assert key_slot(counters.encode()) == key_slot(keys.profile(user).encode())
        assert await cluster_client.hget(counters, f"by {user}") == b"1"
    found = {k async for k in cluster_client.scan_iter(match=keys.counters_pattern())}
    assert found == {keys.counters(u).encode() for u in users}
    # the users' keys are spread over the nodes, and every node's hashes are summed
    nodes = {cluster_client.get_node_from_key(keys.profile(u)).name for u in users}
    assert len(nodes) > 1
    assert await store.counters("by ") == {f"by {u}": 1.0 for u in users}


async def test_on_cluster_counters_are_read_from_their_own_namespace_only(
    cluster_client: aioredis.RedisCluster, keys: Keys
) -> None:
    # "?" in a prefix matches any one character in a pattern that does not escape it
    client = cast(aioredis.Redis, cluster_client)
    mine = RedisProfileStore(client, keys=Keys(f"{keys.prefix}?"), cluster=True)
    other = RedisProfileStore(client, keys=Keys(f"{keys.prefix}x"), cluster=True)
    await other.save([counting("u1", 0, ("sent", 1))])
    await cluster_client.zadd(f"{keys.prefix}?:{{shop}}:watch:p:counters", {"u1": 1})
    assert await mine.counters() == {}  # nor the sorted set named like a counters hash
    await mine.save([counting("u1", 0, ("sent", 2))])
    assert await mine.counters() == {"sent": 2.0}
    assert await other.counters() == {"sent": 1.0}


async def test_on_a_single_node_every_users_counters_go_to_one_hash(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    store = RedisProfileStore(redis_client, keys=keys)
    users = [f"u{n}" for n in range(50)]
    await store.save([counting(u, 0, ("sent", 1)) for u in users])
    found = {k async for k in redis_client.scan_iter(match=keys.counters_pattern())}
    assert found == {keys.all_counters().encode()}
    assert await store.counters() == {"sent": 50.0}


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        ReadOnlyError("READONLY You can't write against a read only replica."),
        BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        RedisConnectionError("Connection refused"),
    ],
)
async def test_a_failover_or_an_outage_is_an_outage_to_wait_out(error: Exception) -> None:
    # the worker retries a batch on StoreUnavailable; any other error dead-letters it
    with pytest.raises(StoreUnavailable):
        async with translate_errors():
            raise error


async def test_other_redis_errors_are_profile_errors() -> None:
    with pytest.raises(ProfileError) as raised:
        async with translate_errors():
            raise ResponseError("ERR Error running script")
    assert not isinstance(raised.value, StoreUnavailable)

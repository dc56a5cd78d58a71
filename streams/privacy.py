"""``nudge export USER`` and ``nudge erase USER``: a data subject's access and erasure.

The export gathers everything nudge holds about one user from Redis: the profile (with
its consent history, recent sends and decisions), the pending timers with the events
that started them, the watcher lists that name the user, and whether their address is on
the suppression list or an erasure tombstone exists. The erasure publishes an ``erase``
event on the events topic, so that it is ordered after the user's other events; the
worker that owns the user's partition does the deleting (see README "Privacy").
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from profiles import (
    Keys,
    Profile,
    RedisProfileStore,
    RedisSuppressionList,
    RedisTimerStore,
    Snapshot,
    personal_products,
)
from streams.redis_client import redis_client
from streams.settings import Settings

__all__ = ["EXPORT_FORMAT", "erase_event", "export_user", "wait_until_erased"]

#: names the shape of the export document
EXPORT_FORMAT = "nudge-export/1"

#: what an export cannot contain, and where it is instead
NOT_IN_EXPORT = (
    "the raw events on the events topic, the send requests and the decisions topic are "
    "kept by Kafka for the topics' retention; the mailer's own delivery logs are the "
    "mailer's"
)


async def export_user(settings: Settings, user_id: str) -> dict[str, Any]:
    """Everything nudge's Redis holds about ``user_id`` as one JSON-ready document."""
    client = redis_client(settings)
    keys = Keys(settings.redis_prefix)
    try:
        store = RedisProfileStore(
            client, keys=keys, cluster=settings.redis_cluster, pseudonyms=settings.pseudonyms
        )
        snapshot = await store.snapshot(user_id)
        profile = snapshot.profile
        timers = await _timers(RedisTimerStore(client, keys=keys), profile)
        watching = await _watching(client, keys, profile)
        suppression = RedisSuppressionList(client, keys=keys, pseudonyms=settings.pseudonyms)
        erased = await suppression.erased([profile.email]) if profile and profile.email else {}
    finally:
        await client.aclose()
    return {
        "format": EXPORT_FORMAT,
        "user_id": user_id,
        "exported_at": _iso(datetime.now(UTC)),
        "profile": None if profile is None else profile.model_dump(mode="json"),
        "consent": _consent(profile),
        "pending_timers": timers,
        "recent_decisions": [] if profile is None else profile.decisions,
        "watching_products": watching,
        "suppression": _suppression(snapshot, erased),
        "not_included": NOT_IN_EXPORT,
    }


def _consent(profile: Profile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    return {
        "email": profile.email_consent,
        "unsubscribed_categories": profile.unsubscribed,
        "history": [change.model_dump(mode="json") for change in profile.consent_log],
    }


async def _timers(store: RedisTimerStore, profile: Profile | None) -> list[dict[str, Any]]:
    if profile is None or profile.partition is None or not profile.timers:
        return []
    found = await store.find(profile.partition, list(profile.timers))
    return [
        {
            "rule_id": t.rule_id,
            "key": t.key,
            "step": t.step,
            "due": _iso(datetime.fromtimestamp(t.due_ms / 1000, tz=UTC)),
            "trigger_event": t.trigger_event,
        }
        for t in found
    ]


async def _watching(client: aioredis.Redis, keys: Keys, profile: Profile | None) -> list[str]:
    """The products whose watcher lists (price alerts) name the user."""
    if profile is None:
        return []
    products = sorted(personal_products(profile))
    pipe = client.pipeline(transaction=False)
    for product_id in products:
        pipe.zscore(keys.watchers(product_id), profile.user_id)
    scores = await pipe.execute()
    return [p for p, score in zip(products, scores, strict=True) if score is not None]


def _suppression(snapshot: Snapshot, erased: dict[str, int]) -> dict[str, Any]:
    erased_at = next(iter(erased.values()), None)
    return {
        "address_on_erased_list": erased_at is not None,
        "address_erased_at": _iso_ms(erased_at),
        "erasure_tombstone_at": _iso_ms(snapshot.erased_ms),
    }


def erase_event(user_id: str, now: datetime | None = None) -> bytes:
    """An ``erase`` event for ``user_id``, dated now, with an id of its own."""
    at = now or datetime.now(UTC)
    event = {
        "event_id": f"erase-{uuid.uuid4().hex}",
        "type": "erase",
        "user_id": user_id,
        "ts": _iso(at),
        "properties": {},
    }
    return orjson.dumps(event)


async def wait_until_erased(settings: Settings, user_id: str, timeout: float) -> bool:
    """Whether the user's tombstone appears within ``timeout`` seconds (the worker has
    processed the erasure)."""
    client = redis_client(settings)
    store = RedisProfileStore(
        client,
        keys=Keys(settings.redis_prefix),
        cluster=settings.redis_cluster,
        pseudonyms=settings.pseudonyms,
    )
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            snapshot = await store.snapshot(user_id)
            if snapshot.erased_ms is not None and snapshot.profile is None:
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return _iso(datetime.fromtimestamp(epoch_ms / 1000, tz=UTC))

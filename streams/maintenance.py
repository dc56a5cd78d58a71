"""Operator tasks that run against the live stores, outside the worker."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from profiles import Keys, RedisProfileStore, RedisTimerStore
from streams.redis_client import redis_client
from streams.settings import Settings
from triggers import RuleSet
from triggers.backfill import BackfillReport, backfill

__all__ = ["run_backfill"]


async def run_backfill(
    settings: Settings, rules: RuleSet, only: Collection[str] = ()
) -> BackfillReport:
    client = redis_client(settings)
    try:
        keys = Keys(settings.redis_prefix)
        profiles = RedisProfileStore(
            client, keys=keys, cluster=settings.redis_cluster, pseudonyms=settings.pseudonyms
        )
        timers = RedisTimerStore(client, keys=keys)
        return await backfill(rules, profiles, timers, datetime.now(UTC), only=only)
    finally:
        await client.aclose()

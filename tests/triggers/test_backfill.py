"""Backfill: a date or inactivity rule added later reaches users who never come back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from profiles import (
    InMemoryProfileStore,
    InMemoryTimerStore,
    Keys,
    Profile,
    ProfileStore,
    ProfileWrite,
    RedisProfileStore,
    RedisTimerStore,
    TimerStore,
)
from streams.cli import cli
from triggers import Engine, Incoming, load_rules
from triggers.backfill import backfill
from triggers.simulate import Simulation

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

BEFORE = """\
version: 1
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
"""
AFTER = (
    BEFORE
    + """\
  - id: birthday
    kind: date
    field: traits.birthday
    at: "09:00"
    template: birthday
  - id: winback
    kind: inactivity
    wait: 30d
    template: winback
"""
)


@pytest.fixture(params=["memory", "redis"])
def stores(request: pytest.FixtureRequest, redis_client: aioredis.Redis, keys: Keys) -> tuple:
    if request.param == "memory":
        return InMemoryProfileStore(), InMemoryTimerStore()
    return RedisProfileStore(redis_client, keys=keys), RedisTimerStore(redis_client, keys=keys)


def engine_before(
    make_config: Callable[[str], Path], profiles: ProfileStore, timers: TimerStore
) -> Engine:
    """The engine as it ran before the new rules were added."""
    return Engine(
        rules=load_rules(make_config(BEFORE)),
        profiles=profiles,
        timers=timers,
        outbox=Simulation(),
        clock=lambda: T0,
    )


def event(n: int, kind: str, user: str, **props: object) -> Incoming:
    body = {
        "event_id": f"{user}-{n}",
        "type": kind,
        "user_id": user,
        "ts": T0.isoformat(),
        "properties": props,
    }
    return Incoming(orjson.dumps(body), user.encode(), "events", 2, n)


async def test_backfill_schedules_what_new_rules_imply(
    stores: tuple, make_config: Callable[[str], Path]
) -> None:
    profiles, timers = stores
    engine = engine_before(make_config, profiles, timers)
    await engine.process(
        [
            event(1, "signup", "ada", email="ada@example.com", consent={"email": True}),
            event(2, "profile_update", "ada", traits={"birthday": "1990-03-20"}),
            event(1, "signup", "bob", email="bob@example.com"),
        ]
    )
    await profiles.save(
        [ProfileWrite("old", 0, Profile(user_id="old", first_seen=T0, last_seen=T0))]
    )
    after = load_rules(make_config(AFTER))
    report = await backfill(after, profiles, timers, T0)
    assert (report.users, report.scheduled, report.no_partition) == (3, 3, 1)
    pending = {(t.user_id, t.rule_id): t for t in await timers.pending(2)}
    assert set(pending) == {("ada", "birthday"), ("ada", "winback"), ("bob", "winback")}
    assert pending["ada", "birthday"].due_ms == int(
        datetime(2026, 3, 20, 9, tzinfo=UTC).timestamp() * 1000
    )
    assert pending["bob", "winback"].due_ms == int((T0 + timedelta(days=30)).timestamp() * 1000)
    again = await backfill(after, profiles, timers, T0)
    assert (again.users, again.scheduled) == (3, 0)
    # the backfilled timers are the user's own: unsubscribing cancels them
    engine.rules = after
    await engine.process([event(3, "unsubscribe", "ada")])
    assert [t.user_id for t in await timers.pending(2)] == ["bob"]


async def test_backfill_only_the_named_rules(
    stores: tuple, make_config: Callable[[str], Path]
) -> None:
    profiles, timers = stores
    engine = engine_before(make_config, profiles, timers)
    await engine.process([event(1, "signup", "cy", email="cy@example.com")])
    report = await backfill(load_rules(make_config(AFTER)), profiles, timers, T0, only={"birthday"})
    assert report.scheduled == 0  # cy has no birthday; winback was not asked for


def test_backfill_cli_rejects_unknown_rules() -> None:
    config = Path(__file__).resolve().parents[2] / "config"
    result = CliRunner().invoke(cli, ["backfill", "--config", str(config), "--rule", "nope"])
    assert result.exit_code == 1
    assert "no enabled rule named 'nope'" in result.output

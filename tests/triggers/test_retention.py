"""Profile retention: a profile without events for the retention expires with its timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from profiles import (
    Event,
    InMemoryProfileStore,
    InMemoryStatistics,
    InMemoryTimerStore,
    Profile,
    Snapshot,
    Timer,
    timer_id,
)
from streams.cli import cli
from triggers import Engine, Incoming, InMemoryOutbox, RuleSet, load_rules, simulate
from triggers.backfill import backfill
from triggers.firing import RETENTION, from_ms, ms
from triggers.fold import UserStep, apply_user_events, fire_user_timers
from triggers.replan import replan_timer

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RETAINED = 30 * DAY

RULES = """\
version: 1
rules:
  - id: cart
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    key: cart_id
    wait: 40d
    template: cart_abandonment
  - id: winback
    kind: inactivity
    wait: 60d
    template: winback
"""


@pytest.fixture
def rules(make_config: Callable[[str], Path]) -> Callable[[timedelta | None], RuleSet]:
    config = make_config(RULES)
    return lambda retention: load_rules(config, retention=retention)


class User:
    """One user's profile and pending timers, driven by events and fired timers."""

    def __init__(self, rules: RuleSet, user_id: str = "u1") -> None:
        self.rules = rules
        self.user_id = user_id
        self.profile: Profile | None = None
        self.timers: dict[str, Timer] = {}
        self.n = 0

    def _absorb(self, step: UserStep) -> UserStep:
        self.profile = step.profile
        for _, tid in step.ops.cancel:
            self.timers.pop(tid, None)
        for (_, tid), timer in step.ops.schedule.items():
            self.timers[tid] = timer
        return step

    def event(self, kind: str, at: datetime = T0, **props: Any) -> UserStep:
        self.n += 1
        event = Event(
            event_id=f"e{self.n}", type=kind, user_id=self.user_id, ts=at, properties=props
        )
        step = apply_user_events(self.rules, Snapshot(self.profile), [(event, 0)], at)
        return self._absorb(step)

    def signup(self, at: datetime = T0) -> UserStep:
        return self.event(
            "signup", at, email=f"{self.user_id}@example.com", consent={"email": True}
        )

    def fire(self, timer: Timer, at: datetime | None = None) -> UserStep:
        """Fire ``timer`` (due or not: a copy left behind fires too) at ``at``."""
        if self.timers.get(timer.id) == timer:
            del self.timers[timer.id]
        now = at or from_ms(timer.due_ms)
        return self._absorb(fire_user_timers(self.rules, self.profile, [timer], now))

    @property
    def retention(self) -> Timer:
        return self.timers[timer_id(RETENTION, self.user_id)]


def retention_ops(step: UserStep) -> list[Timer]:
    return [t for t in step.ops.schedule.values() if t.rule_id == RETENTION]


def test_every_event_keeps_the_retention_timer_at_its_last_event_plus_the_retention(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(RETAINED))
    step = user.signup()
    [timer] = retention_ops(step)
    assert (timer.due_ms, timer.partition) == (ms(T0 + RETAINED), 0)
    assert user.profile is not None and user.profile.timers[timer.id] == timer.due_ms
    moved = user.event("page_view", T0 + 2 * DAY, url="/")
    assert [t.due_ms for t in retention_ops(moved)] == [ms(T0 + 2 * DAY + RETAINED)]
    # the engine's own timer: neither its scheduling nor its moves are decisions
    assert [d.rule_id for d in step.decisions + moved.decisions] == ["winback"]


def test_an_event_that_leaves_it_in_place_makes_no_timer_op(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(RETAINED))
    user.signup(T0 + timedelta(milliseconds=100))
    due = user.retention.due_ms
    assert due == ms(T0 + RETAINED + timedelta(seconds=1))  # the whole second after
    same_second = user.event("page_view", T0 + timedelta(milliseconds=900), url="/")
    late = user.event("page_view", T0 - timedelta(hours=1), url="/")  # an older event
    for step in (same_second, late):
        assert retention_ops(step) == []
        assert not [tid for _, tid in step.ops.cancel if tid.startswith(RETENTION)]
    assert user.retention.due_ms == due


def test_without_retention_no_timer_is_kept(rules: Callable[[timedelta | None], RuleSet]) -> None:
    user = User(rules(None))
    user.signup()
    assert [t.rule_id for t in user.timers.values()] == ["winback"]


def test_an_unsubscribe_keeps_it_and_an_erasure_takes_it(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(RETAINED))
    user.signup()
    step = user.event("unsubscribe", T0 + DAY)
    assert {t.rule_id for t in user.timers.values()} == {RETENTION}
    assert user.retention.due_ms == ms(T0 + DAY + RETAINED)
    erased = user.event("erase", T0 + 2 * DAY)
    assert user.timers == {}
    assert RETENTION not in {d.rule_id for d in step.decisions + erased.decisions}


def test_a_reload_leaves_it_be(rules: Callable[[timedelta | None], RuleSet]) -> None:
    user = User(rules(RETAINED))
    user.signup()
    assert replan_timer(user.rules, rules(RETAINED), user.retention) is None


def test_an_untouched_profile_expires_with_every_timer_and_leaves_no_tombstone(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(RETAINED))
    user.signup()
    user.event("add_to_cart", T0 + DAY, product_id="mug", price=5.0, cart_id="c1")
    pending = {t.id for t in user.timers.values() if t.rule_id != RETENTION}
    step = user.fire(user.retention)
    assert (step.profile, step.expired) == (None, True)
    assert {(d.rule_id, d.outcome, d.reason) for d in step.decisions} == {
        ("cart", "cancelled", "retention"),
        ("winback", "cancelled", "retention"),
    }
    assert {d.detail for d in step.decisions} == {f"no event since {(T0 + DAY).isoformat()}"}
    assert {tid for _, tid in step.ops.cancel} == pending
    assert user.timers == {}
    # not an erasure: no tombstone, nothing suppressed; the watcher lists forget the user
    assert (step.erased_ms, step.tombstone_ms, bool(step.suppression)) == (None, None, False)
    assert step.forget == {"u1": {"mug"}}


def test_an_expiry_takes_the_timers_its_own_moment_scheduled(
    rules: Callable[[timedelta | None], RuleSet], make_config: Callable[[str], Path]
) -> None:
    series = RULES + (
        "  - id: series\n    kind: sequence\n    start: [signup]\n    steps:\n"
        "      - delay: 30d\n        template: welcome\n"
        "      - delay: 30d\n        template: welcome\n"
    )
    user = User(load_rules(make_config(series), retention=RETAINED))
    user.signup()
    # the first step and the expiry fall due in the same moment: the step sends, and its
    # follow-up is cancelled with the rest
    [first] = [t for t in user.timers.values() if t.rule_id == "series"]
    both = fire_user_timers(
        user.rules, user.profile, [first, user.retention], from_ms(first.due_ms)
    )
    assert [s.rule_id for s in both.sends] == ["series"]
    assert both.expired
    cancelled = {(d.rule_id, d.step) for d in both.decisions if d.outcome == "cancelled"}
    assert ("series", None) in cancelled  # the step-2 timer (its id has no step)
    assert not [t for t in both.ops.schedule.values() if t.rule_id == "series"]


def test_a_later_moment_after_the_expiry_does_not_fire(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(timedelta(days=10)))
    user.signup()
    winback = user.timers[timer_id("winback", "u1")]
    # a worker that was away: both are due when it comes back
    step = fire_user_timers(user.rules, user.profile, [user.retention, winback], T0 + 90 * DAY)
    assert step.sends == []
    assert [(d.rule_id, d.outcome, d.reason) for d in step.decisions] == [
        ("winback", "cancelled", "retention")
    ]


def test_a_user_active_since_is_kept_and_the_timer_moves(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(RETAINED))
    user.signup()
    early = user.retention
    # the retention grew since the timer was scheduled: it moves to the new expiry
    user.rules = rules(45 * DAY)
    step = user.fire(early)
    assert step.profile is not None and not step.expired
    assert [t.due_ms for t in retention_ops(step)] == [ms(T0 + 45 * DAY)]
    assert step.decisions == [] and not step.ops.cancel
    # an event since the timer was scheduled: a copy of it left behind changes nothing
    user.event("page_view", T0 + 50 * DAY, url="/")
    step = user.fire(early, T0 + 51 * DAY)
    assert step.profile is not None and step.decisions == [] and not step.ops
    assert user.retention.due_ms == ms(T0 + 95 * DAY)


def test_with_retention_turned_off_a_pending_timer_does_nothing(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    user = User(rules(RETAINED))
    user.signup()
    left = user.retention
    user.rules = rules(None)
    step = user.event("page_view", T0 + DAY, url="/")
    assert retention_ops(step) == []  # the event pays no more than the check of the setting
    fired = user.fire(left)
    assert fired.profile is not None and not fired.expired
    assert fired.decisions == [] and not fired.ops


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def message(n: int, kind: str, at: datetime, **props: Any) -> Incoming:
    event = {"event_id": f"e{n}", "type": kind, "user_id": "u1", "ts": at.isoformat()}
    value = orjson.dumps({**event, "properties": props})
    return Incoming(value, b"u1", "events", 0, n)


async def test_the_engine_deletes_an_expired_profile_and_a_later_event_starts_afresh(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    clock = Clock()
    profiles, timers, outbox = InMemoryProfileStore(), InMemoryTimerStore(), InMemoryOutbox()
    statistics = InMemoryStatistics(clock_ms=lambda: ms(clock.now))
    engine = Engine(
        rules=rules(10 * DAY),
        profiles=profiles,
        timers=timers,
        outbox=outbox,
        clock=clock,
        lookups=statistics,
        statistics=statistics,
    )
    view = message(1, "product_view", T0, product_id="mug", name="Mug")
    await engine.process([view])
    await engine.settle()
    assert await statistics.watchers("mug", ms(T0)) == ["u1"]
    clock.now = T0 + 10 * DAY
    await engine.fire_due(0, clock.now)
    assert not profiles.holds("u1")  # profile and dedup records
    assert await timers.pending(0) == []
    assert await statistics.watchers("mug", ms(clock.now)) == []
    assert (await profiles.load({"u1": []}))["u1"] == Snapshot(None)  # no tombstone
    assert ("winback", "cancelled", "retention") in [
        (d.rule_id, d.outcome, d.reason) for d in outbox.decisions
    ]
    # a redelivery of the old event is applied again: a fresh profile, its timers anew
    await engine.process([view])
    snap = (await profiles.load({"u1": []}))["u1"]
    assert snap.profile is not None and snap.version == 1
    assert {t.rule_id for t in await timers.pending(0)} == {"winback", RETENTION}


REPO = Path(__file__).resolve().parents[2]


def _json(user: str, n: int, kind: str, at: timedelta, **props: Any) -> dict[str, Any]:
    ts = (T0 + at).isoformat()
    return {"event_id": f"{user}-{n}", "type": kind, "user_id": user, "ts": ts, "properties": props}


def _event(user: str, n: int, kind: str, at: timedelta, **props: Any) -> bytes:
    return orjson.dumps(_json(user, n, kind, at, **props)) + b"\n"


def test_nudge_simulate_expires_a_profile_over_a_long_gap(tmp_path: Path) -> None:
    signup = {"email": "x@example.com", "consent": {"email": True}}
    lines = [
        # ada signs up, then nothing for 100 days; grace comes back every 20 days
        _event("ada", 0, "signup", timedelta(0), **signup),
        _event("ada", 1, "profile_update", timedelta(0), traits={"birthday": "1990-08-15"}),
        _event("grace", 0, "signup", timedelta(0), **signup),
        *(_event("grace", n, "page_view", n * 20 * DAY, url="/") for n in range(1, 6)),
        _event("ada", 2, "page_view", 100 * DAY, url="/"),
    ]
    events, decisions = tmp_path / "events.jsonl", tmp_path / "decisions.jsonl"
    events.write_bytes(b"".join(lines))
    args = ["simulate", "--config", str(REPO / "config"), "--events", str(events)]
    args += ["--until", (T0 + 110 * DAY).isoformat(), "--decisions", str(decisions)]

    def run(retention: str | None) -> list[dict[str, Any]]:
        result = CliRunner().invoke(cli, args, env={"NUDGE_PROFILE_RETENTION": retention})
        assert result.exit_code == 0, result.output
        return [orjson.loads(line) for line in decisions.read_bytes().splitlines()]

    kept = run(None)
    assert "retention" not in {d["reason"] for d in kept}
    found = run(str(45 * 86400))
    expired = [d for d in found if d["reason"] == "retention"]
    assert {(d["user_id"], d["rule_id"], d["outcome"]) for d in expired} == {
        ("ada", "birthday", "cancelled"),
        ("ada", "signup_anniversary", "cancelled"),
    }
    assert {d["at"] for d in expired} == {"2026-04-16T12:00:00Z"}  # 45 days after signup
    # not an erasure: her event 100 days in is applied, to a fresh profile
    ada = [
        (d["rule_id"], d["outcome"], d["reason"], d["at"]) for d in found if d["user_id"] == "ada"
    ]
    assert ada[-1] == ("winback", "scheduled", "page_view", "2026-06-10T12:00:00Z")
    assert "erased" not in {d["reason"] for d in found}
    # the profile she has now was built by that event alone
    rules = load_rules(REPO / "config", retention=45 * DAY)
    sim = asyncio.run(simulate(rules, lines, until=T0 + 110 * DAY))
    profile = asyncio.run(sim.profiles.load({"ada": []}))["ada"].profile
    assert profile is not None
    assert (profile.first_seen, profile.email) == (T0 + 100 * DAY, None)


async def test_backfill_brings_the_retention_timers_in_line_with_the_setting(
    rules: Callable[[timedelta | None], RuleSet],
) -> None:
    profiles, timers, outbox = InMemoryProfileStore(), InMemoryTimerStore(), InMemoryOutbox()
    engine = Engine(rules=rules(None), profiles=profiles, timers=timers, outbox=outbox)
    ada = _json("ada", 0, "page_view", timedelta(0), url="/")
    bob = _json("bob", 0, "page_view", 20 * DAY, url="/")
    result = await engine.process(
        [Incoming(orjson.dumps(e), None, "events", 0, n) for n, e in enumerate((ada, bob))]
    )
    assert result.events == 2

    async def due() -> dict[str, int]:
        pending = await timers.pending(0)
        return {t.user_id: t.due_ms for t in pending if t.rule_id == RETENTION}

    now = T0 + 25 * DAY
    report = await backfill(rules(RETAINED), profiles, timers, now)  # turned on
    assert (report.scheduled, report.cancelled) == (2, 0)
    assert await due() == {"ada": ms(T0 + RETAINED), "bob": ms(T0 + 20 * DAY + RETAINED)}
    assert (await backfill(rules(RETAINED), profiles, timers, now)).scheduled == 0
    shorter = rules(10 * DAY)
    assert (await backfill(shorter, profiles, timers, now)).scheduled == 2  # they move
    assert await due() == {"ada": ms(T0 + 10 * DAY), "bob": ms(T0 + 30 * DAY)}
    engine.rules = shorter
    await engine.fire_due(0, now)  # ada's is due already: she expires, bob is kept
    assert not profiles.holds("ada") and profiles.holds("bob")
    report = await backfill(rules(None), profiles, timers, now)  # turned off
    assert (report.users, report.scheduled, report.cancelled) == (1, 0, 1)
    assert await due() == {}
    snap = (await profiles.load({"bob": []}))["bob"]
    assert snap.profile is not None and timer_id(RETENTION, "bob") not in snap.profile.timers

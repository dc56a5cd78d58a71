"""``send_at: best_hour`` end to end: simulated events, profiles, timers and sends."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from profiles import Lookups
from triggers import RuleSet, load_rules
from triggers.simulate import Simulation, simulate

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
#: a Monday; both zones are on winter time all week
DAY0 = datetime(2026, 2, 2, tzinfo=UTC)

RULES = """\
version: 1
guards:
  quiet_hours: {start: "21:00", end: "08:00"}
  default_timezone: Europe/Berlin
custom_events: [news.ready]
rules:
  - id: news
    kind: on_event
    events: [news.ready]
    send_at: best_hour
    max_delay: 1d
    template: welcome
  - id: receipt
    kind: on_event
    events: [news.ready]
    category: transactional
    template: welcome
  - id: series
    kind: sequence
    start: [signup]
    steps:
      - template: welcome
      - delay: 1d
        template: welcome_tips
        send_at: best_hour
"""


class Population:
    """The statistics a worker would fetch: here, only the send hours."""

    def __init__(self, hours: dict[int, float]) -> None:
        self.hours = tuple(hours.get(h, 0.0) for h in range(24))

    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        return Lookups(send_hours=self.hours)


@pytest.fixture
def ruleset(make_config: Callable[[str], Path]) -> RuleSet:
    return load_rules(make_config(RULES))


def at(day: int, hour: int, zone: ZoneInfo, minute: int = 0) -> datetime:
    local = datetime(DAY0.year, DAY0.month, DAY0.day + day, hour, minute, tzinfo=zone)
    return local.astimezone(UTC)


class Events:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, kind: str, user: str, ts: datetime, **props: Any) -> None:
        event = {
            "event_id": f"{user}-{len(self.lines)}",
            "type": kind,
            "user_id": user,
            "ts": ts.isoformat(),
            "properties": props,
        }
        self.lines.append(orjson.dumps(event))

    def signup(self, user: str, ts: datetime, **extra: Any) -> None:
        email = f"{user}@example.com"
        self.add("signup", user, ts, email=email, consent={"email": True}, **extra)

    def opens(self, user: str, moments: list[datetime], kind: str = "email_open") -> None:
        for moment in moments:
            self.add(kind, user, moment, message_id="m", url="/")


async def run(ruleset: RuleSet, events: Events, population: Population | None) -> Simulation:
    until = DAY0 + timedelta(days=10)
    return await simulate(ruleset, events.lines, until=until, lookups=population)


def sent(sim: Simulation, user: str, rule: str) -> list[datetime]:
    return [s.created_at for s in sim.sends if s.user_id == user and s.rule_id == rule]


def local(moments: list[datetime], zone: ZoneInfo) -> list[str]:
    return [m.astimezone(zone).strftime("%a %H:%M") for m in moments]


async def test_mail_waits_for_the_hour_the_user_reads_it_at(ruleset: RuleSet) -> None:
    events = Events()
    events.signup("ada", at(0, 9, NEW_YORK), timezone="America/New_York")
    events.opens("ada", [at(day, 19, NEW_YORK, 12) for day in (0, 1, 2)])
    events.opens("ada", [at(3, 12, NEW_YORK)])  # once at noon: 19:00 still weighs most
    events.add("news.ready", "ada", at(4, 10, NEW_YORK))
    sim = await run(ruleset, events, Population({15: 100.0}))
    assert local(sent(sim, "ada", "news"), NEW_YORK) == ["Fri 19:00"]
    assert local(sent(sim, "ada", "receipt"), NEW_YORK) == ["Fri 10:00"]  # transactional
    [deferred] = [d for d in sim.decisions if d.rule_id == "news" and d.outcome == "deferred"]
    assert deferred.reason == "best_hour"
    assert deferred.due == at(4, 19, NEW_YORK)
    assert "19:00 America/New_York, the user's best hour" in deferred.detail


async def test_a_cold_user_gets_the_populations_best_hour(ruleset: RuleSet) -> None:
    events = Events()
    events.signup("bo", at(0, 9, BERLIN))  # no time zone: the default, Berlin
    events.add("news.ready", "bo", at(1, 10, BERLIN))
    sim = await run(ruleset, events, Population({15: 100.0, 22: 500.0}))
    # 22:00 weighs most but lies in quiet hours: the best hour outside them
    assert local(sent(sim, "bo", "news"), BERLIN) == ["Tue 15:00"]
    [deferred] = [d for d in sim.decisions if d.rule_id == "news" and d.outcome == "deferred"]
    assert "the population's best hour" in deferred.detail


async def test_with_no_history_anywhere_it_sends_at_once(ruleset: RuleSet) -> None:
    events = Events()
    events.signup("cy", at(0, 9, BERLIN))
    events.add("news.ready", "cy", at(1, 10, BERLIN))
    sim = await run(ruleset, events, None)
    assert local(sent(sim, "cy", "news"), BERLIN) == ["Tue 10:00"]
    assert not [d for d in sim.decisions if d.outcome == "deferred"]


async def test_a_deferred_send_goes_out_at_its_hour_even_if_the_best_hour_moved(
    ruleset: RuleSet,
) -> None:
    events = Events()
    events.signup("di", at(0, 9, BERLIN))
    events.opens("di", [at(0, 19, BERLIN, 5), at(1, 19, BERLIN, 5)])
    events.add("news.ready", "di", at(2, 10, BERLIN))
    # before 19:00 comes, she clicks a lot at noon: noon is her best hour now
    events.opens("di", [at(2, 12, BERLIN, m) for m in range(5)], kind="email_click")
    sim = await run(ruleset, events, None)
    assert local(sent(sim, "di", "news"), BERLIN) == ["Wed 19:00"]
    outcomes = [(d.outcome, d.reason) for d in sim.decisions if d.rule_id == "news"]
    assert outcomes == [("deferred", "best_hour"), ("fired", "ok")]


async def test_a_sequence_step_waits_for_the_best_hour(ruleset: RuleSet) -> None:
    events = Events()
    events.signup("eve", at(0, 9, BERLIN))
    events.opens("eve", [at(0, 20, BERLIN, 30)])
    sim = await run(ruleset, events, None)
    [first] = [s for s in sim.sends if s.template == "welcome" and s.rule_id == "series"]
    [tips] = [s for s in sim.sends if s.template == "welcome_tips"]
    assert local([first.created_at, tips.created_at], BERLIN) == ["Mon 09:00", "Tue 20:00"]


async def test_the_same_events_give_the_same_sends(ruleset: RuleSet) -> None:
    events = Events()
    events.signup("fay", at(0, 9, NEW_YORK), timezone="America/New_York")
    events.opens("fay", [at(0, 18, NEW_YORK), at(0, 7, NEW_YORK)])
    events.add("news.ready", "fay", at(1, 8, NEW_YORK))
    runs = [await run(ruleset, events, Population({10: 1.0})) for _ in range(2)]
    assert [s.to_json() for s in runs[0].sends] == [s.to_json() for s in runs[1].sends]
    assert local(sent(runs[0], "fay", "news"), NEW_YORK) == ["Tue 18:00"]

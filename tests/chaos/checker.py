"""The checker every chaos scenario ends with: input against output, request id by id.

The expected send requests are what ``triggers.simulate`` publishes for the very lines
the workload published, with every timer fired (``until`` past the last due time). The
live output is read from the send-requests and decisions topics to their end. The
account: **lost** (an expected request id never published), **unexpected** (a request id
not expected), **duplicates** (a request id published more than once: allowed, counted)
and, per trigger instance (rule, user, trigger event), the number of distinct request
ids, which must be 1.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from triggers import RuleSet, simulate

__all__ = ["Account", "Expected", "Row", "Tail", "expected_sends", "settle"]

#: (rule, user, trigger event): one trigger instance
Instance = tuple[str, str, str]


@dataclass(frozen=True)
class Expected:
    """The request ids ``simulate`` publishes, each with its trigger instance."""

    sends: dict[str, Instance]
    #: when the last timer is due: nothing more is expected after it
    last_due: datetime


async def expected_sends(rules: RuleSet, lines: list[bytes], longest_wait: float) -> Expected:
    """Replay ``lines`` through ``simulate`` up to the last event plus ``longest_wait``
    (every timer of the workload has fired by then, none re-arms)."""
    last = max(datetime.fromisoformat(orjson.loads(line)["ts"]) for line in lines)
    until = last + timedelta(seconds=longest_wait + 1)
    sim = await simulate(rules, lines, until=until)
    sends = {s.request_id: (s.rule_id, s.user_id, s.trigger_event_id) for s in sim.sends}
    return Expected(sends=sends, last_due=until)


class Tail:
    """Every record of a topic from its beginning, read on forward as it grows; keeps
    only what the account needs of each."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[dict[str, str | None]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000
        )
        self._parts: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def catch_up(self) -> int:
        """Read up to the topic's current end; how many records came in."""
        if not await self._assigned():
            return 0
        before = len(self.records)
        ends = await self._consumer.end_offsets(self._parts)
        while [tp for tp in self._parts if await self._consumer.position(tp) < ends[tp]]:
            batch = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                self.records += [_fields(r.value) for r in records]
        return len(self.records) - before

    async def _assigned(self) -> bool:
        if self._parts:
            return True
        await self._consumer.topics()
        found = self._consumer.partitions_for_topic(self.topic) or set()
        if not found:
            return False
        self._parts = [TopicPartition(self.topic, p) for p in sorted(found)]
        self._consumer.assign(self._parts)
        await self._consumer.seek_to_beginning(*self._parts)
        return True


def _fields(value: bytes) -> dict[str, str | None]:
    record = orjson.loads(value)
    names = ("request_id", "rule_id", "user_id", "trigger_event_id", "outcome")
    return {name: record.get(name) for name in names}


@dataclass
class Account:
    """Expected against seen, for one scenario."""

    expected: Expected
    seen: Counter[str] = field(default_factory=Counter)
    per_instance: dict[Instance, set[str]] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    instances: dict[str, Instance] = field(default_factory=dict)

    def add_sends(self, sends: Iterable[dict[str, str | None]]) -> None:
        for send in sends:
            rid = str(send["request_id"])
            self.seen[rid] += 1
            instance = (str(send["rule_id"]), str(send["user_id"]), str(send["trigger_event_id"]))
            self.per_instance.setdefault(instance, set()).add(rid)
            self.instances[rid] = instance

    def add_decisions(self, decisions: Iterable[dict[str, str | None]]) -> None:
        self.fired |= {str(d["request_id"]) for d in decisions if d["outcome"] == "fired"}

    @property
    def lost(self) -> set[str]:
        return set(self.expected.sends) - set(self.seen)

    @property
    def unexpected(self) -> set[str]:
        return set(self.seen) - set(self.expected.sends)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values())

    @property
    def split_instances(self) -> dict[Instance, set[str]]:
        """Trigger instances published under more than one request id."""
        return {i: ids for i, ids in self.per_instance.items() if len(ids) > 1}

    def describe(self, request_ids: Iterable[str], most: int = 10) -> list[Instance]:
        """The trigger instances of some request ids (for a failure's message)."""
        known = {**self.expected.sends, **self.instances}
        return [known[rid] for rid in sorted(request_ids)[:most]]

    @property
    def decisions_lost(self) -> set[str]:
        """Expected sends without their ``fired`` decision on the decisions topic."""
        return set(self.expected.sends) - self.fired


@dataclass(frozen=True)
class Row:
    """One line of the chaos table."""

    scenario: str
    events: int
    expected: int
    seen: int
    lost: int
    unexpected: int
    duplicates: int
    split: int
    recover_s: float

    HEADER = (
        "scenario",
        "events",
        "expected",
        "seen",
        "lost",
        "unexpected",
        "duplicates",
        "ids/instance>1",
        "recover_s",
    )

    def cells(self) -> tuple[str, ...]:
        return (
            self.scenario,
            str(self.events),
            str(self.expected),
            str(self.seen),
            str(self.lost),
            str(self.unexpected),
            str(self.duplicates),
            str(self.split),
            f"{self.recover_s:.1f}",
        )


async def settle(
    account: Account,
    sends: Tail,
    decisions: Tail,
    *,
    faults_ended: float,
    quiet: float = 8.0,
    timeout: float = 240.0,
) -> float:
    """Read both topics until every expected send is seen and nothing new came for
    ``quiet`` seconds (or ``timeout`` passes); the seconds from ``faults_ended`` (a
    monotonic time) until every expected send was seen, or -1 if never."""
    deadline = time.monotonic() + timeout
    matched = -1.0
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        before = len(sends.records)
        if await sends.catch_up():
            account.add_sends(sends.records[before:])
            last_new = time.monotonic()
        before = len(decisions.records)
        await decisions.catch_up()
        account.add_decisions(decisions.records[before:])
        if matched < 0 and not account.lost:
            matched = time.monotonic() - faults_ended
        if matched >= 0 and time.monotonic() - last_new >= quiet:
            break
        await asyncio.sleep(1.0)
    return matched

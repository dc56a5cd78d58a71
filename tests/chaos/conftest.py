"""The chaos suite's harness: one run of the workload under a fault, then the account.

Deselected unless pytest runs with ``--chaos`` (``make chaos``). ``CHAOS_USERS`` (default
2000) and ``CHAOS_SEED`` (default 1) size and seed the workload. The session ends by
printing the table of every scenario's row.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from triggers import load_rules

from ..streams.conftest import TEST_RULES, WorkerEnv
from .checker import Account, Row, Tail, expected_sends, settle
from .faults import Workers
from .workload import plan, publish, read_back

CART_WAIT, WINBACK_WAIT = 5.0, 8.0
RULES = TEST_RULES.format(cart_wait=f"{CART_WAIT:g}s", winback_wait=f"{WINBACK_WAIT:g}s")

ROWS: list[Row] = []


def users() -> int:
    return int(os.environ.get("CHAOS_USERS", "2000"))


def seed() -> int:
    return int(os.environ.get("CHAOS_SEED", "1"))


#: a fault: runs alongside the workload from its start, returns when the last fault ended
Fault = Callable[[Workers], Coroutine[Any, Any, None]]


@dataclass
class Chaos:
    """Runs one scenario: workers on ``env``, the workload, the fault, the account."""

    env: WorkerEnv
    pools: list[Workers] = field(default_factory=list)

    def on_broker(self, bootstrap: str) -> None:
        """Run this scenario against the broker at ``bootstrap`` (one of its own)."""
        assert not self.pools, "choose the broker before starting workers"
        self.env = replace(self.env, bootstrap=bootstrap)

    def workers(self, *, redis_url: str | None = None) -> Workers:
        """A pool of workers on this scenario's topics (and on ``redis_url`` if given)."""
        env = self.env if redis_url is None else replace(self.env, redis_url=redis_url)
        self.pools.append(Workers(env))
        return self.pools[-1]

    def stop_workers(self) -> None:
        """Stop every worker of every pool (again, if already stopped: a no-op)."""
        for pool in self.pools:
            pool.stop_all()

    async def run(
        self,
        name: str,
        fault: Fault,
        *,
        window: float,
        workers: Workers,
        publish_timeout_ms: int = 40_000,
        expect_from_topic: bool = False,
    ) -> Row:
        """The workload under ``fault``, then the account. ``publish_timeout_ms`` bounds
        how long the workload waits for an acknowledgement before sending a record
        again; with ``expect_from_topic`` the expected outcome is computed from the
        events topic read back (every record that reached it, resent ones included)
        rather than from the lines handed to the producer."""
        steps = plan(users(), window, seed())
        sends = Tail(self.env.bootstrap, self.env.send_topic)
        decisions = Tail(self.env.bootstrap, self.env.decisions_topic)
        await sends.start()
        await decisions.start()
        try:
            faults = asyncio.create_task(fault(workers))
            published = await publish(
                self.env.bootstrap,
                self.env.events_topic,
                steps,
                request_timeout_ms=publish_timeout_ms,
            )
            await faults
            faults_ended = time.monotonic()
            if expect_from_topic:
                published.lines = await read_back(self.env.bootstrap, self.env.events_topic)
            rules = load_rules(self.env.config_dir)
            expected = await expected_sends(rules, published.lines, WINBACK_WAIT)
            await asyncio.sleep(max(0.0, (expected.last_due - datetime.now(UTC)).total_seconds()))
            account = Account(expected)
            recover = await settle(account, sends, decisions, faults_ended=faults_ended)
        finally:
            await sends.stop()
            await decisions.stop()
        row = Row(
            scenario=name,
            events=len(published.lines),
            expected=len(expected.sends),
            seen=sum(account.seen.values()),
            lost=len(account.lost),
            unexpected=len(account.unexpected),
            duplicates=account.duplicates,
            split=len(account.split_instances),
            recover_s=recover,
        )
        ROWS.append(row)
        print(" | ".join(row.cells()), f"(events resent by the workload: {published.resent})")
        (self.env.tmp / f"events-{name.split()[0]}.jsonl").write_bytes(b"\n".join(published.lines))
        assert not account.lost, account.describe(account.lost)
        assert not account.unexpected, account.describe(account.unexpected)
        assert not account.split_instances, list(account.split_instances.items())[:10]
        assert not account.decisions_lost, sorted(account.decisions_lost)[:10]
        return row


@pytest.fixture
def chaos(
    kafka_bootstrap: str, redis_url: str, make_config: Callable[[str], Path], tmp_path: Path
) -> Iterator[Chaos]:
    """A scenario on fresh topics and Redis keys; its workers are stopped at the end."""
    # the faults are sized against a 6 s session (a pause of 15 s outlasts it)
    scenario = Chaos(WorkerEnv(kafka_bootstrap, redis_url, make_config(RULES), tmp_path))
    yield scenario
    scenario.stop_workers()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    table = [Row.HEADER, *(row.cells() for row in ROWS)]
    widths = [max(len(line[n]) for line in table) for n in range(len(Row.HEADER))]
    terminalreporter.section("chaos")
    for line in table:
        terminalreporter.write_line(
            "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))
        )

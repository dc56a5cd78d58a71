"""An experiment on a live worker: the split follows the weights, and what users do with
the mail comes back in ``nudge report`` with the statistics a reference computes."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from .conftest import Kafka, WorkerEnv, WorkerProcess

NUDGE = Path(sys.executable).parent / "nudge"
USERS = 10_000
HOLDOUT = 0.1

RULES = f"""\
version: 1
rules:
  - id: hello
    kind: on_event
    events: [signup]
    template: welcome
    experiment: hello_subjects
    holdout: {HOLDOUT}
    variants:
      - {{name: plain}}
      - name: question
        subject: "Ready for your first order, {{{{ user.first_name | default('friend', true) }}}}?"
"""

#: what users do with each arm's mail (the holdout gets none; some buy anyway)
OPEN_RATE = {"plain": 0.30, "question": 0.36}
CLICK_RATE = {"plain": 0.04, "question": 0.07}
BUY_RATE = {"plain": 0.05, "question": 0.06, "holdout": 0.03}


def ev(kind: str, user: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "ts": at.isoformat(),
        "properties": props,
    }


async def produce_many(kafka: Kafka, topic: str, events: list[dict[str, Any]]) -> None:
    """Send without waiting for each acknowledgement, then wait for them all."""
    futures = [
        await kafka.producer.send(topic, orjson.dumps(e), key=e["user_id"].encode()) for e in events
    ]
    await asyncio.gather(*futures)


def report(env: WorkerEnv) -> dict[str, Any]:
    done = subprocess.run(
        [str(NUDGE), "report", "--experiment", "hello_subjects", "--json"],
        env=env.environ(0),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    experiments = orjson.loads(done.stdout)["experiments"]
    return experiments[0] if experiments else {"arms": []}


async def wait_for_report(
    env: WorkerEnv, done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(report, env)
        if done(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1)


def arms_of(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {arm["arm"]: arm for arm in found["arms"]}


async def test_a_two_subject_experiment_with_a_holdout_reports_what_users_did(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
) -> None:
    env = worker_env(rules=RULES)
    start_worker(env)
    start = datetime.now(UTC) - timedelta(hours=1)
    users = [f"exp-{n}" for n in range(USERS)]
    await produce_many(
        kafka,
        env.events_topic,
        [ev("signup", u, start, email=f"{u}@example.com", consent={"email": True}) for u in users],
    )
    found = await wait_for_report(env, lambda r: sum(a["exposed"] for a in r["arms"]) >= USERS)
    exposed = {arm: a["exposed"] for arm, a in arms_of(found).items()}
    assert sum(exposed.values()) == USERS, exposed
    # each arm within four standard deviations of its share (a false alarm 1 in 16,000)
    for arm, share in (("holdout", HOLDOUT), ("plain", 0.45), ("question", 0.45)):
        sd = (USERS * share * (1 - share)) ** 0.5
        assert abs(exposed[arm] - USERS * share) < 4 * sd, exposed

    decisions = [orjson.loads(r.value) for r in await kafka.read_all(env.decisions_topic)]
    assigned = {
        d["user_id"]: (d["arm"], d["request_id"])
        for d in decisions
        if d["rule_id"] == "hello" and d["arm"] is not None
    }
    assert Counter(arm for arm, _ in assigned.values()) == Counter(exposed)
    subjects = {
        s["variant"]: s["subject"]
        for s in (orjson.loads(r.value) for r in await kafka.read_all(env.send_topic))
    }
    assert subjects["question"].startswith("Ready for your first order")
    assert not subjects["plain"].startswith("Ready for your first order")

    # users open, click and buy; what they did is counted per arm
    rng = random.Random(2026)
    later = datetime.now(UTC)  # after the sends: a purchase counts for a mail before it
    feedback: list[dict[str, Any]] = []
    truth: dict[str, Counter[str]] = {arm: Counter() for arm in exposed}
    for user, (arm, message_id) in sorted(assigned.items()):
        if arm != "holdout":
            clicked = rng.random() < CLICK_RATE[arm]
            if clicked or rng.random() < OPEN_RATE[arm]:
                truth[arm]["opened"] += 1
                kind = "email_click" if clicked else "email_open"
                extra = {"url": "https://shop.example/"} if clicked else {}
                feedback.append(ev(kind, user, later, message_id=message_id, **extra))
            truth[arm]["clicked"] += clicked
        if rng.random() < BUY_RATE[arm]:
            truth[arm]["converted"] += 1
            feedback.append(ev("purchase", user, later, order_id=f"o-{user}", total=40.0))
    await produce_many(kafka, env.events_topic, feedback)

    def caught_up(r: dict[str, Any]) -> bool:
        arms = arms_of(r)
        return all(
            (arms[arm]["converted"] or {}).get("successes") == counts["converted"]
            and (arm == "holdout" or arms[arm]["clicked"]["successes"] == counts["clicked"])
            and (arm == "holdout" or arms[arm]["opened"]["successes"] == counts["opened"])
            for arm, counts in truth.items()
        )

    found = await wait_for_report(env, caught_up)
    assert caught_up(found), (arms_of(found), truth)
    arms = arms_of(found)
    for arm, counts in truth.items():
        for metric in ("opened", "clicked", "converted") if arm != "holdout" else ("converted",):
            low, high = proportion_confint(counts[metric], exposed[arm], method="wilson")
            reported = arms[arm][metric]
            assert reported["rate"] == _close(counts[metric] / exposed[arm])
            assert (reported["low"], reported["high"]) == (_close(low), _close(high))
        assert arms[arm]["revenue"] == _close(40.0 * counts["converted"])

    comparisons = {(c["metric"], c["arm"], c["against"]): c for c in found["comparisons"]}
    for (metric, arm, against), c in comparisons.items():
        successes = [truth[arm][metric], truth[against][metric]]
        z, p = proportions_ztest(successes, [exposed[arm], exposed[against]])
        assert (c["z"], c["p"]) == (_close(z), _close(p)), (metric, arm, against)
    assert ("converted", "question", "holdout") in comparisons
    assert ("clicked", "question", "plain") in comparisons or (
        "clicked",
        "plain",
        "question",
    ) in comparisons
    assert found["verdict"]


def _close(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=1e-6, abs=1e-9)

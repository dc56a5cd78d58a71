"""Predictions on a live worker (real broker, real Redis): the features the worker's
profile gives are those training computes by replaying the events; a worker with a
trained model scores users with their events, fires the rules that read the scores, and
keeps its model when a broken one replaces it."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from profiles import Predicted, Profile, ScoringConfig, apply_event, parse_event
from profiles.predictions import Model, Scores, feature_vector
from profiles.predictions.bundle import load_model
from triggers import load_rules

from .conftest import Kafka, RedisView, WorkerEnv, WorkerProcess

Env = Callable[..., WorkerEnv]
Start = Callable[[WorkerEnv], WorkerProcess]
View = Callable[..., RedisView]

QUIET = """\
version: 1
rules:
  - id: receipt
    kind: on_event
    events: [purchase]
    category: transactional
    template: welcome
"""


def history(user: str, now: datetime) -> list[dict[str, Any]]:
    """Forty days of a shopper's life, oldest first."""

    def ev(days_ago: float, kind: str, **props: Any) -> dict[str, Any]:
        at = now - timedelta(days=days_ago)
        return {
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "user_id": user,
            "ts": at.isoformat(),
            "properties": props,
        }

    mug = {"product_id": "mug", "name": "Mug", "category": "kitchen", "price": 14.0}
    lamp = {"product_id": "lamp", "name": "Lamp", "category": "home", "price": 60.0}
    return [
        ev(40, "signup", email=f"{user}@example.com", consent={"email": True}),
        ev(39, "product_view", **mug),
        ev(39, "add_to_cart", **mug, cart_id="c1"),
        ev(38.5, "purchase", order_id="o1", total=14.0, items=[{**mug, "quantity": 1}]),
        ev(20, "email_open", message_id="m1"),
        ev(20, "email_click", message_id="m1", url="/lamp"),
        ev(19, "product_view", **lamp),
        ev(12, "page_view", url="/"),
        ev(3, "add_to_cart", **lamp, cart_id="c2"),
        ev(1, "product_view", **mug),
    ]


async def test_live_features_equal_replayed_features(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(rules=QUIET)
    start_worker(env)
    now = datetime.now(UTC)
    events = history("ada", now)
    await kafka.produce(env.events_topic, *events)
    view = redis_view(env.keys)

    async def applied() -> bool:
        profile = (await view.profile("ada")).profile
        return profile is not None and sum(profile.counts.values()) == len(events)

    await view.wait_until(applied)
    live = (await view.profile("ada")).profile
    assert live is not None

    scoring = load_rules(env.config_dir).config.scoring
    replayed: Profile | None = None
    for event in events:
        replayed = apply_event(replayed, parse_event(orjson.dumps(event)), scoring)
    assert replayed is not None
    at = now + timedelta(hours=1)
    assert feature_vector(live, at, scoring) == feature_vector(replayed, at, scoring)
    # the history is not trivial: it bought, browsed, read mail and holds a cart
    assert live.purchase_count == 1 and live.cart.item_count == 1 and live.activity_days


def _ev(user: str, kind: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "ts": at.isoformat(),
        "properties": props,
    }


def _signup(user: str, at: datetime) -> dict[str, Any]:
    return _ev(user, "signup", at, email=f"{user}@example.com", consent={"email": True})


def _scores(model: Model, events: list[dict[str, Any]], at: datetime) -> Scores:
    """What ``model`` says of the user these events make, as training replays them."""
    scoring = ScoringConfig()
    profile: Profile | None = None
    for event in events:
        profile = apply_event(profile, parse_event(orjson.dumps(event)), scoring)
    assert profile is not None
    return model.score([feature_vector(profile, at, scoring)])[0]


async def test_a_worker_scores_users_fires_on_scores_and_keeps_its_model(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View, tiny_model: Path
) -> None:
    model = load_model(tiny_model)
    now = datetime.now(UTC)
    # ann signs up and looks around; an earlier visit of hers, reported late, makes her
    # an older, quieter user: the model's churn rises past the bound between the two
    ann_first = [_signup("ann", now), _ev("ann", "page_view", now, url="/")]
    ann_late = [_ev("ann", "page_view", now - timedelta(days=200), url="/")]
    before = _scores(model, ann_first, now).churn_probability
    after = _scores(model, ann_first + ann_late, now).churn_probability
    assert after > before + 0.05, (before, after)
    # bo signs up, then buys: his cluster changes
    bo_first, bo_buys = [_signup("bo", now)], [_ev("bo", "purchase", now, order_id="o", total=40.0)]
    cluster = _scores(model, bo_first + bo_buys, now).cluster
    assert _scores(model, bo_first, now).cluster != cluster

    env = worker_env(
        rules=f"""\
version: 1
predictions:
  model: model
segments:
  in_cluster: "profile.predicted.cluster == {cluster!r}"
rules:
  - id: churn_winback
    kind: threshold
    value: profile.predicted.churn_probability
    above: {(before + after) / 2}
    template: winback
  - id: cluster_welcome
    kind: segment_entry
    segment: in_cluster
    template: vip_welcome
"""
    )
    shutil.copytree(tiny_model, env.config_dir / "model")
    worker = start_worker(env)
    view = redis_view(env.keys)

    async def scored(user: str) -> Predicted:
        async def ready() -> bool:
            profile = (await view.profile(user)).profile
            return profile is not None and profile.predicted is not None

        await view.wait_until(ready)
        profile = (await view.profile(user)).profile
        assert profile is not None and profile.predicted is not None
        return profile.predicted

    # scores land on the profile with the batch of the user's first events
    await kafka.produce(env.events_topic, *ann_first)
    first = await scored("ann")
    assert first.model_version == model.version
    assert first.churn_probability < (before + after) / 2
    assert abs(first.scored_at - now) < timedelta(minutes=1)

    await kafka.produce(env.events_topic, *ann_late)
    [winback] = await kafka.wait_for_sends(env.send_topic, "ann", "churn_winback")
    # fired by the scores of the batch that brought the late visit, under the model
    assert winback["trigger_event_id"].startswith(f"predicted:{model.version}:")
    decisions = [orjson.loads(r.value) for r in await kafka.read_all(env.decisions_topic)]
    fired = [d for d in decisions if d["rule_id"] == "churn_winback"]
    assert [d["model_version"] for d in fired] == [model.version]

    await kafka.produce(env.events_topic, *bo_first)
    await scored("bo")
    await kafka.produce(env.events_topic, *bo_buys)
    assert await kafka.wait_for_sends(env.send_topic, "bo", "cluster_welcome")

    # a broken replacement is refused, and the worker goes on scoring with the old model
    (env.config_dir / "model" / "manifest.json").write_text("{}")
    deadline = time.monotonic() + 30
    while worker.metric("nudge_config_reloads_total", result="rejected") < 1:
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.2)
    assert "keeping the running rules and model" in worker.log.read_text()
    await kafka.produce(env.events_topic, _signup("cy", datetime.now(UTC)))
    assert (await scored("cy")).model_version == model.version

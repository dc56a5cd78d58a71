"""Predictions on a live worker (real broker, real Redis): the features the worker's
profile gives are those training computes by replaying the events."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from profiles import Profile, apply_event, parse_event
from profiles.predictions import feature_vector
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

"""Personalised content on a live worker (real broker, real Redis): recommendations learnt
from the stream, the click feedback loop, and the best hour to send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from profiles import Product

from ..triggers.test_personalised import RULES as SHOP_RULES
from ..triggers.test_personalised import TEMPLATES
from .conftest import Kafka, RedisView, WorkerEnv, WorkerProcess
from .test_worker import ev, signup

Env = Callable[..., WorkerEnv]
Start = Callable[[WorkerEnv], WorkerProcess]
View = Callable[..., RedisView]

#: the simulate tests' rules, plus a transactional ``marker`` mail to wait for
RULES = (
    SHOP_RULES.replace("custom_events: [", "custom_events: [marker, ")
    + """\
  - id: marker
    kind: on_event
    events: [marker]
    category: transactional
    template: welcome
"""
)

KITCHEN = ["k-board", "k-bowl", "k-jar", "k-kettle", "k-mug", "k-pan", "k-spoon", "k-tea"]
OUTDOOR = ["o-axe", "o-boots", "o-chair", "o-lamp", "o-map", "o-stove", "o-tent", "o-torch"]


def _category(product: str) -> str:
    return "kitchen" if product.startswith("k-") else "outdoor"


@pytest.fixture
def shop_env(worker_env: Env, monkeypatch: pytest.MonkeyPatch) -> WorkerEnv:
    """A worker config with the test templates and a ten-product catalog; the worker
    re-reads the statistics at every batch (they are cached for 30 s by default)."""
    monkeypatch.setenv("NUDGE_LOOKUPS_TTL", "0")
    env = worker_env(rules=RULES)
    for name, body in TEMPLATES.items():
        folder = env.config_dir / "templates" / name
        folder.mkdir()
        for part in ("subject.txt", "body.html", "body.txt"):
            (folder / part).write_text(body)
    catalog = [
        Product(product_id=p, name=p, category=_category(p), price=10).model_dump_json()
        for p in KITCHEN + OUTDOOR
    ]
    (env.config_dir / "catalog.jsonl").write_text("\n".join(catalog) + "\n")
    return env


def buy(user: str, *products: str) -> dict[str, Any]:
    items = [{"product_id": p, "category": _category(p), "price": 10} for p in products]
    return ev("purchase", user, order_id=f"o-{user}", items=items, total=10.0 * len(items))


async def settled(kafka: Kafka, env: WorkerEnv, n: int = 2) -> None:
    """Wait until what was produced so far is in the statistics a render reads: each
    marker's batch waits for the previous batch's statistics and refreshes the cache."""
    for i in range(n):
        await kafka.produce(env.events_topic, ev("marker", "marker-user", f"marker-{i}"))
        assert await kafka.wait_for_sends(env.send_topic, "marker-user", "marker", count=i + 1)


async def test_buyers_get_what_others_bought_with_it_and_cold_users_what_is_popular(
    shop_env: WorkerEnv, start_worker: Start, kafka: Kafka
) -> None:
    env = shop_env
    start_worker(env)
    await kafka.produce(env.events_topic, signup("marker-user"))
    campers = [buy(f"camper{n}", "o-tent", "o-lamp") for n in range(6)]
    cooks = [buy(f"cook{n}", "k-mug") for n in range(9)]
    await kafka.produce(env.events_topic, *campers, *cooks)
    await settled(kafka, env)

    await kafka.produce(env.events_topic, signup("ann"), buy("ann", "o-tent"))
    await kafka.produce(env.events_topic, signup("cal"), ev("hello", "cal"))
    [thanks] = await kafka.wait_for_sends(env.send_topic, "ann", "thanks")
    assert thanks["products"][0] == "o-lamp"  # bought with the tent by every camper
    assert "o-tent" not in thanks["products"]  # hers already
    [hello] = await kafka.wait_for_sends(env.send_topic, "cal", "hello")
    assert hello["products"] == ["k-mug", "o-lamp"]  # the best sellers (ties by id)


async def test_a_reader_who_clicks_outdoor_mail_gets_more_outdoor(
    shop_env: WorkerEnv, start_worker: Start, kafka: Kafka
) -> None:
    """Two readers who lean towards kitchen things get the same newsletter and an
    outdoor promo; one clicks the promo. Their next newsletters part ways."""
    env = shop_env
    start_worker(env)
    readers = ("dee", "eve")
    everything = [buy(f"s{n}", p) for n, p in enumerate(KITCHEN + OUTDOOR)]
    await kafka.produce(env.events_topic, signup("marker-user"), *everything)
    for reader in readers:
        viewed = ("k-bowl", "k-pan", "k-tea", "o-boots", "o-stove")
        views = [ev("product_view", reader, product_id=p, category=_category(p)) for p in viewed]
        await kafka.produce(env.events_topic, signup(reader), *views)
    await settled(kafka, env)
    first = {}
    for reader in readers:
        await kafka.produce(env.events_topic, ev("news", reader))
        [first[reader]] = await kafka.wait_for_sends(env.send_topic, reader, "news")
        await kafka.produce(env.events_topic, ev("promo", reader, product_id="o-tent"))
    assert first["dee"]["products"] == first["eve"]["products"]

    [promo] = await kafka.wait_for_sends(env.send_topic, "dee", "promo")
    assert promo["products"] == ["o-tent"]
    click = ev("email_click", "dee", message_id=promo["request_id"], url="https://shop.example/t")
    await kafka.produce(env.events_topic, click)
    second = {}
    for reader in readers:
        await kafka.produce(env.events_topic, ev("news", reader))
        second[reader] = (await kafka.wait_for_sends(env.send_topic, reader, "news", count=2))[-1]
    assert _outdoor(first["dee"]["products"]) == 0
    assert _outdoor(second["dee"]["products"]) == 4
    assert _outdoor(second["eve"]["products"]) == 0


#: UTC+2 (Etc zones count the other way round); no quiet hours: any hour will do
ZONE = ZoneInfo("Etc/GMT-2")

BEST_HOUR_RULES = """\
version: 1
custom_events: [news]
rules:
  - id: news
    kind: on_event
    events: [news]
    send_at: best_hour
    template: welcome
"""


def at(event: dict[str, Any], moment: datetime) -> dict[str, Any]:
    return {**event, "ts": moment.isoformat()}


def _outdoor(products: list[str]) -> int:
    return sum(p.startswith("o-") for p in products)


async def test_a_best_hour_rule_waits_for_the_hour_the_user_reads_mail_at(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    """Ida opened mail at the same local hour three days running; a ``send_at: best_hour``
    mail now waits for the start of that hour (three hours from now, in her zone)."""
    now = datetime.now(UTC).astimezone(ZONE)
    best = (now.hour + 3) % 24
    env = worker_env(rules=BEST_HOUR_RULES)
    start_worker(env)
    view = redis_view(env.keys)
    joined = signup("ida")
    joined["properties"]["timezone"] = ZONE.key
    opens = [
        at(ev("email_open", "ida", message_id="m"), (now - timedelta(days=d)).replace(hour=best))
        for d in (1, 2, 3)
    ]
    await kafka.produce(env.events_topic, at(joined, now - timedelta(days=4)), *opens)
    await kafka.produce(env.events_topic, ev("news", "ida"))
    waiting = ("news", "deferred", "best_hour")
    assert waiting in await kafka.wait_for_decision(env.decisions_topic, "ida", waiting)
    [timer] = [t for t in await view.pending("ida") if t.rule_id == "news"]
    due = datetime.fromtimestamp(timer.due_ms / 1000, tz=ZONE)
    assert (due.hour, due.minute, due.second) == (best, 0, 0)  # the start of her hour
    assert timedelta(hours=2) < due - now <= timedelta(hours=3)
    assert not await kafka.sends(env.send_topic, "ida", "news")

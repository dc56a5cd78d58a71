"""The catalog end to end: a worker loads the catalog file, follows the catalog topic,
and turns a price drop into mail for the users watching the product."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from profiles import Product, RedisCatalog, RedisStatistics
from streams.catalog import alert_event_id

from .conftest import Kafka, RedisView, WorkerEnv, WorkerProcess
from .test_worker import ev, signup

PRICE_RULES = """\
version: 1
custom_events: [price.alert]
rules:
  - id: price_alert
    kind: on_event
    events: [price.alert]
    template: price_alert
"""

MUG = Product(
    product_id="sku-mug",
    name="Enamel mug",
    category="kitchen",
    price=20.0,
    url="https://giftshop.example/kitchen/enamel-mug",
)
LAMP = Product(product_id="sku-lamp", name="Desk lamp", price=39.9)


def record(product: Product) -> bytes:
    return product.model_dump_json().encode()


async def test_a_price_drop_mails_the_users_watching_the_product(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
    redis_url: str,
    redis_view: Callable[..., RedisView],
) -> None:
    env = worker_env(rules=PRICE_RULES)
    (env.config_dir / "catalog.jsonl").write_bytes(record(MUG) + b"\n" + record(LAMP) + b"\n")
    worker = start_worker(env)
    client = aioredis.Redis.from_url(redis_url)
    catalog = RedisCatalog(client, keys=env.keys)
    view = redis_view(env.keys)
    try:
        await view.wait_until(lambda: catalog.count())  # the file, loaded at start
        view_mug = ev("product_view", "ada", product_id=MUG.product_id, category="kitchen")
        await kafka.produce(env.events_topic, signup("ada"), signup("bob"), view_mug)
        statistics = RedisStatistics(client, keys=env.keys)
        await view.wait_until(lambda: _watching(statistics, MUG.product_id, "ada"))

        cheaper = MUG.model_copy(update={"price": 15.0})
        await kafka.produce(env.catalog_topic, record(cheaper), key=b"sku-mug")
        [sent] = await kafka.wait_for_sends(env.send_topic, "ada", "price_alert")
        assert sent["subject"] == "Enamel mug is now $15.00"
        assert "(was $20.00)" in sent["html"]
        assert "See it <https://giftshop.example/kitchen/enamel-mug>" in sent["text"]
        assert sent["trigger_event_id"] == alert_event_id("sku-mug", 15.0, "ada")

        # the same record again (a replay) alerts nobody; a further drop alerts again
        await kafka.produce(env.catalog_topic, record(cheaper), key=b"sku-mug")
        cheapest = MUG.model_copy(update={"price": 12.0})
        await kafka.produce(env.catalog_topic, record(cheapest), key=b"sku-mug")
        sends = await kafka.wait_for_sends(env.send_topic, "ada", "price_alert", count=2)
        assert [s["subject"] for s in sends] == [
            "Enamel mug is now $15.00",
            "Enamel mug is now $12.00",
        ]
        alerts = [
            orjson.loads(r.value)
            for r in await kafka.read_all(env.events_topic)
            if b"price.alert" in r.value
        ]
        assert {a["user_id"] for a in alerts} == {"ada"}  # bob watches nothing
        assert len(alerts) == 2

        # a null value deletes the product
        await kafka.producer.send_and_wait(env.catalog_topic, None, key=b"sku-lamp")
        await view.wait_until(lambda: _gone(catalog, "sku-lamp"))
        assert (await catalog.get(["sku-mug"]))["sku-mug"].price == 12.0
        assert worker.metric("nudge_price_alerts_total") == 2
        assert worker.metric("nudge_catalog_records_total", result="deleted") == 1
    finally:
        await client.aclose()


async def _watching(statistics: RedisStatistics, product_id: str, user_id: str) -> bool:
    """The worker recorded the view: ``user_id`` watches ``product_id``."""
    return user_id in await statistics.watchers(product_id, int(time.time() * 1000))


async def _gone(catalog: RedisCatalog, product_id: str) -> bool:
    return product_id not in await catalog.get([product_id])

"""``nudge dev --demo``: a small shop's event stream, and the emails it triggers, live.

Five shoppers sign up, browse, fill carts; some buy, one abandons a cart, one never gave
email consent. Waits are shortened so abandonment shows within the first minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
import orjson

from triggers import AbsenceRule, InactivityRule, RuleSet, SequenceRule

if TYPE_CHECKING:
    from streams.app import Nudge

__all__ = [
    "DEMO_ABSENCE_WAIT",
    "DEMO_INACTIVITY_WAIT",
    "attach_demo",
    "demo_script",
    "shorten_waits",
]

log = logging.getLogger(__name__)

DEMO_ABSENCE_WAIT = timedelta(seconds=10)
DEMO_INACTIVITY_WAIT = timedelta(seconds=40)
DEMO_STEP_DELAY = timedelta(seconds=15)

#: (user, first name, email consent)
SHOPPERS = [
    ("ada", "Ada", True),
    ("grace", "Grace", True),
    ("alan", "Alan", True),
    ("edsger", "Edsger", False),
    ("barbara", "Barbara", True),
]

PRODUCTS = [
    ("sku-mug", "Enamel mug", "kitchen", 14.0),
    ("sku-kettle", "Gooseneck kettle", "kitchen", 59.0),
    ("sku-socks", "Wool socks", "apparel", 12.5),
    ("sku-lamp", "Desk lamp", "home", 39.9),
]


def shorten_waits(rules: RuleSet) -> RuleSet:
    """The same rules with demo-sized waits and no quiet hours, so you see them fire."""
    shortened = []
    for rule in rules.config.rules:
        if isinstance(rule, AbsenceRule):
            rule = rule.model_copy(update={"wait": DEMO_ABSENCE_WAIT})
        elif isinstance(rule, InactivityRule):
            rule = rule.model_copy(update={"wait": DEMO_INACTIVITY_WAIT})
        elif isinstance(rule, SequenceRule):
            steps = [
                step.model_copy(update={"delay": DEMO_STEP_DELAY * index})
                for index, step in enumerate(rule.steps)
            ]
            rule = rule.model_copy(update={"steps": steps})
        shortened.append(rule)
    guards = rules.config.guards.model_copy(update={"quiet_hours": None})
    config = rules.config.model_copy(update={"rules": shortened, "guards": guards})
    return dataclasses.replace(rules, config=config)


def demo_script() -> Iterator[tuple[float, dict[str, Any]]]:
    """(delay before, event-without-ts) pairs telling the shop's story."""
    ids = itertools.count(1)

    def event(user: str, kind: str, **properties: Any) -> dict[str, Any]:
        return {
            "event_id": f"demo-{next(ids)}",
            "type": kind,
            "user_id": user,
            "properties": properties,
            "context": {"source": "nudge-demo"},
        }

    def cart(user: str, sku: int, quantity: int = 1) -> dict[str, Any]:
        product_id, name, category, price = PRODUCTS[sku]
        return event(
            user,
            "add_to_cart",
            product_id=product_id,
            name=name,
            category=category,
            price=price,
            quantity=quantity,
            cart_id=f"cart-{user}",
        )

    for user, first, consent in SHOPPERS:
        yield (
            0.3,
            event(
                user,
                "signup",
                email=f"{user}@example.com",
                first_name=first,
                locale="en",
                timezone="Europe/London",
                consent={"email": consent},
            ),
        )
    yield (
        0.5,
        event(
            "ada",
            "product_view",
            product_id="sku-kettle",
            name="Gooseneck kettle",
            category="kitchen",
            price=59.0,
        ),
    )
    yield 0.5, cart("ada", 1)
    yield 0.5, cart("ada", 0, 2)  # ada abandons this cart
    yield 0.5, cart("grace", 2, 3)
    yield (
        1.0,
        event(
            "grace",
            "purchase",
            order_id="o-1001",
            total=37.5,
            currency="EUR",
            items=[
                {
                    "product_id": "sku-socks",
                    "name": "Wool socks",
                    "category": "apparel",
                    "price": 12.5,
                    "quantity": 3,
                }
            ],
        ),
    )
    yield 0.5, cart("edsger", 3)  # no consent: no marketing email
    yield 0.5, cart("alan", 3)
    yield 0.5, event("alan", "remove_from_cart", product_id="sku-lamp", cart_id="cart-alan")
    yield 0.5, event("barbara", "page_view", url="https://shop.example/sale", title="Sale")
    yield 0.5, event("barbara", "email_open", message_id="m-1")


async def _feed(nudge: Nudge) -> None:
    await asyncio.sleep(2.0)  # let the worker join its group first
    topic = nudge.settings.events_topic
    for delay, event in demo_script():
        await asyncio.sleep(delay)
        event["ts"] = datetime.now(UTC).isoformat()
        await nudge.app.producer.send_and_wait(
            topic, event["user_id"].encode(), orjson.dumps(event), None, None, None
        )
    click.echo(click.style("demo: all events sent; timers fire in a few seconds", fg="cyan"))


async def _print_output(nudge: Nudge) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    sends, decisions = nudge.settings.send_topic, nudge.settings.decisions_topic
    consumer = AIOKafkaConsumer(bootstrap_servers=nudge.settings.bootstrap_servers)
    await consumer.start()
    try:
        await consumer.topics()  # fetch metadata
        parts = [
            TopicPartition(topic, p)
            for topic in (sends, decisions)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        await consumer.seek_to_end()
        async for record in consumer:
            data = orjson.loads(record.value)
            if record.topic == sends:
                _print_send(data)
            elif data["outcome"] != "fired":
                _print_decision(data)
    finally:
        await consumer.stop()


def _print_send(send: dict[str, Any]) -> None:
    head = f"[{send['rule_id']}] to {send['to']}: {send['subject']}"
    click.echo(click.style(head, fg="green", bold=True))
    click.echo("    " + send["text"].strip().replace("\n", "\n    ") + "\n")


def _print_decision(decision: dict[str, Any]) -> None:
    line = (
        f"[{decision['rule_id']}] {decision['user_id']}: {decision['outcome']} "
        f"({decision['reason']}{': ' + decision['detail'] if decision['detail'] else ''})"
    )
    click.echo(click.style(line, fg="yellow") + "\n")


def attach_demo(nudge: Nudge) -> None:
    click.echo(
        f"demo: waits shortened (absence {DEMO_ABSENCE_WAIT.seconds}s, inactivity "
        f"{DEMO_INACTIVITY_WAIT.seconds}s, sequence steps {DEMO_STEP_DELAY.seconds}s apart), "
        "quiet hours off; send requests and decisions (scheduled, cancelled, held back) print below"
    )
    nudge.app.task(lambda: _print_output(nudge))
    nudge.app.task(lambda: _feed(nudge))

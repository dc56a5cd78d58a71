"""``nudge dev --demo``: a small shop's event stream, and the emails it triggers, live.

Five shoppers sign up, browse, fill carts; some buy, one abandons a cart, one never gave
email consent. Their events go through ``nudge collector`` as Segment calls, the worker's
send requests through ``nudge mailer`` to an SMTP sink that prints each mail. Waits are
shortened so abandonment shows within the first minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import aiohttp
import click
import orjson

from triggers import AbsenceRule, InactivityRule, RuleSet, SequenceRule

if TYPE_CHECKING:
    from streams.app import Nudge
    from streams.dev import Pipe

__all__ = [
    "DEMO_ABSENCE_WAIT",
    "DEMO_INACTIVITY_WAIT",
    "demo_hooks",
    "demo_script",
    "print_mail",
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


def demo_script() -> Iterator[tuple[float, str, dict[str, Any]]]:
    """(delay before, collector path, body) of the shop's story, as a website using
    Segment's library would send it."""
    ids = itertools.count(1)

    def track(user: str, event: str, /, **properties: Any) -> tuple[str, dict[str, Any]]:
        body = {"userId": user, "event": event, "properties": properties}
        return "/v1/track", {**body, "messageId": f"demo-{next(ids)}", **_DEMO_CONTEXT}

    def cart(user: str, sku: int, quantity: int = 1) -> tuple[str, dict[str, Any]]:
        product_id, name, category, price = PRODUCTS[sku]
        return track(
            user,
            "Product Added",
            product_id=product_id,
            name=name,
            category=category,
            price=price,
            quantity=quantity,
            cart_id=f"cart-{user}",
        )

    for user, first, consent in SHOPPERS:
        signup = track(
            user,
            "Signed Up",
            email=f"{user}@example.com",
            first_name=first,
            locale="en",
            timezone="Europe/London",
            consent={"email": consent},
        )
        yield 0.3, *signup
    kettle = PRODUCTS[1]
    viewed = track(
        "ada", "Product Viewed", product_id=kettle[0], name=kettle[1], category=kettle[2]
    )
    yield 0.5, *viewed
    yield 0.5, *cart("ada", 1)
    yield 0.5, *cart("ada", 0, 2)  # ada abandons this cart
    yield 0.5, *cart("grace", 2, 3)
    socks = PRODUCTS[2]
    order = track(
        "grace",
        "Order Completed",
        order_id="o-1001",
        total=37.5,
        currency="EUR",
        products=[
            {
                "product_id": socks[0],
                "name": socks[1],
                "category": socks[2],
                "price": socks[3],
                "quantity": 3,
            }
        ],
    )
    yield 1.0, *order
    yield 0.5, *cart("edsger", 3)  # no consent: no marketing email
    yield 0.5, *cart("alan", 3)
    yield 0.5, *track("alan", "Product Removed", product_id="sku-lamp", cart_id="cart-alan")
    page = {"userId": "barbara", "properties": {"url": "https://shop.example/sale"}}
    yield 0.5, "/v1/page", {**page, "name": "Sale", "messageId": f"demo-{next(ids)}"}


#: what the demo's calls say about where they come from
_DEMO_CONTEXT = {"context": {"library": {"name": "nudge-demo"}}}


async def _feed(nudge: Nudge, pipe: Pipe) -> None:
    """The story through the collector over HTTP, each call stamped with the time."""
    await asyncio.sleep(2.0)  # let the worker join its group first
    auth = aiohttp.BasicAuth(pipe.write_key, "")
    async with aiohttp.ClientSession(base_url=pipe.public_url, auth=auth) as http:
        for delay, path, body in demo_script():
            await asyncio.sleep(delay)
            body["timestamp"] = datetime.now(UTC).isoformat()
            async with http.post(path, json=body) as answer:
                if answer.status != 200:
                    detail = await answer.text()
                    click.echo(f"demo: the collector answered {answer.status}: {detail}")
    click.echo(
        click.style(
            "demo: all events sent through the collector; timers fire in a few seconds", fg="cyan"
        )
    )


async def _print_decisions(nudge: Nudge) -> None:
    """Decisions other than ``fired`` (scheduled, cancelled, held back), as they come."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = nudge.settings.decisions_topic
    from streams.kafka_security import kafka_client_options

    consumer = AIOKafkaConsumer(**kafka_client_options(nudge.settings))
    await consumer.start()
    try:
        await consumer.topics()  # fetch metadata
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        await consumer.seek_to_end()
        async for record in consumer:
            data = orjson.loads(record.value)
            if data["outcome"] != "fired":
                _print_decision(data)
    finally:
        await consumer.stop()


def print_mail(message: EmailMessage) -> None:
    """A mail as the SMTP sink received it: who it is to, its subject and its text."""
    head = f"mail to {message['To']}: {message['Subject']}"
    click.echo(click.style(head, fg="green", bold=True))
    text = message.get_body(preferencelist=("plain",))
    content = text.get_content() if text is not None else ""
    click.echo("    " + content.strip().replace("\n", "\n    ") + "\n")


def _print_decision(decision: dict[str, Any]) -> None:
    line = (
        f"[{decision['rule_id']}] {decision['user_id']}: {decision['outcome']} "
        f"({decision['reason']}{': ' + decision['detail'] if decision['detail'] else ''})"
    )
    click.echo(click.style(line, fg="yellow") + "\n")


def demo_hooks(pipe: Pipe) -> Callable[[Nudge], None]:
    """What ``nudge dev --demo`` adds to its worker: the story fed through ``pipe``'s
    collector, and the decisions printed (the mails print as the SMTP sink gets them)."""

    def attach(nudge: Nudge) -> None:
        click.echo(
            f"demo: waits shortened (absence {DEMO_ABSENCE_WAIT.seconds}s, inactivity "
            f"{DEMO_INACTIVITY_WAIT.seconds}s, sequence steps {DEMO_STEP_DELAY.seconds}s "
            "apart), quiet hours off; the mails the SMTP sink receives and the decisions "
            "(scheduled, cancelled, held back) print below"
        )
        nudge.app.task(lambda: _print_decisions(nudge))
        nudge.app.task(lambda: _feed(nudge, pipe))

    return attach

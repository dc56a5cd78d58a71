"""Personalised content end to end in ``simulate``: what a mail recommends follows what
the shop's customers bought together, what is popular, and what the reader clicks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from profiles import Product, load_catalog
from triggers import RuleSet, load_rules
from triggers.simulate import Simulation, simulate

from ..conftest import REPO

DAY0 = datetime(2026, 3, 2, 12, tzinfo=UTC)

RULES = """\
version: 1
custom_events: [hello, news, promo]
rules:
  - id: thanks
    kind: on_event
    events: [purchase]
    category: transactional
    template: picks
  - id: hello
    kind: on_event
    events: [hello]
    template: picks
  - id: promo
    kind: on_event
    events: [promo]
    template: promo
  - id: news
    kind: on_event
    events: [news]
    template: similar
"""

TEMPLATES = {
    "picks": "{% for p in recommend(2) %}{{ p.product_id }} {% endfor %}",
    "similar": "{% for p in recommend(4, 'similar') %}{{ p.product_id }} {% endfor %}",
    "promo": "{{ catalog(event.properties.product_id).name }}",
}

KITCHEN = ["k-bowl", "k-kettle", "k-mug", "k-pan", "k-tea"]
OUTDOOR = ["o-boots", "o-lamp", "o-stove", "o-tent", "o-torch"]
CATALOG = [
    Product(product_id=pid, name=pid, category="kitchen" if pid[0] == "k" else "outdoor", price=10)
    for pid in KITCHEN + OUTDOOR
]


@pytest.fixture
def ruleset(make_config: Callable[[str], Path]) -> RuleSet:
    config = make_config(RULES)
    for name, body in TEMPLATES.items():
        folder = config / "templates" / name
        folder.mkdir()
        for part in ("subject.txt", "body.html", "body.txt"):
            (folder / part).write_text(body)
    return load_rules(config)


class Shop:
    """A day-by-day story of events, one JSON line each."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, kind: str, user: str, day: float, **props: Any) -> str:
        event_id = f"{user}-{len(self.lines)}"
        ts = DAY0 + timedelta(days=day)
        event = {"event_id": event_id, "type": kind, "user_id": user, "ts": ts.isoformat()}
        self.lines.append(orjson.dumps({**event, "properties": props}))
        return event_id

    def signup(self, user: str, day: float) -> None:
        self.add("signup", user, day, email=f"{user}@example.com", consent={"email": True})

    def buy(self, user: str, day: float, *products: str) -> None:
        items = [{"product_id": p, "category": _category(p), "price": 10} for p in products]
        self.add("purchase", user, day, order_id=f"o-{len(self.lines)}", items=items, total=10)

    def view(self, user: str, day: float, product: str) -> None:
        self.add("product_view", user, day, product_id=product, category=_category(product))


def _category(product: str) -> str:
    return "kitchen" if product.startswith("k-") else "outdoor"


async def run(ruleset: RuleSet, shop: Shop) -> Simulation:
    return await simulate(ruleset, shop.lines, until=DAY0 + timedelta(days=60), catalog=CATALOG)


def shown(sim: Simulation, user: str, rule: str) -> list[list[str]]:
    return [s.products for s in sim.sends if s.user_id == user and s.rule_id == rule]


async def test_a_buyer_is_recommended_what_others_bought_with_it(ruleset: RuleSet) -> None:
    shop = Shop()
    for n in range(6):  # a bundle: the tent goes with the lamp
        shop.buy(f"camper{n}", 1 + n / 10, "o-tent", "o-lamp")
    for n in range(9):  # the mug is the shop's best seller, but not bought with tents
        shop.buy(f"cook{n}", 1 + n / 10, "k-mug")
    shop.signup("ann", 3)
    shop.buy("ann", 4, "o-tent")
    sim = await run(ruleset, shop)
    [picks] = shown(sim, "ann", "thanks")
    assert picks[0] == "o-lamp"
    assert "o-tent" not in picks  # what she bought is not recommended back


async def test_a_cold_user_gets_the_shops_popular_products(ruleset: RuleSet) -> None:
    shop = Shop()
    for n in range(9):
        shop.buy(f"cook{n}", 1 + n / 10, "k-mug")
    for n in range(5):
        shop.buy(f"camper{n}", 1 + n / 10, "o-tent")
    shop.signup("cal", 3)
    shop.add("hello", "cal", 3.1)
    sim = await run(ruleset, shop)
    assert shown(sim, "cal", "hello") == [["k-mug", "o-tent"]]


async def test_clicking_outdoor_mail_brings_more_outdoor(ruleset: RuleSet) -> None:
    """Two readers with the same history get an outdoor promo; one clicks it, the other
    ignores it. Their next newsletters part ways."""
    shop = Shop()
    for n, product in enumerate(KITCHEN + OUTDOOR):  # every product equally popular
        shop.buy(f"shopper{n}", 1, product)
    for reader in ("dee", "eve"):
        shop.signup(reader, 2)
        for product in ("k-bowl", "k-pan", "o-boots", "o-stove"):
            shop.view(reader, 2.5, product)
    before = await run(ruleset, _news(shop, day=3))
    assert shown(before, "dee", "news") == shown(before, "eve", "news")
    for reader in ("dee", "eve"):
        shop.add("promo", reader, 4, product_id="o-tent")
    sends = (await run(ruleset, shop)).sends
    [mail] = [s for s in sends if s.rule_id == "promo" and s.user_id == "dee"]
    assert mail.products == ["o-tent"]
    shop.add("email_click", "dee", 4.2, message_id=mail.request_id, url="https://shop.example/t")
    after = await run(ruleset, _news(shop, day=10))
    outdoor = {r: _outdoor(shown(after, r, "news")[-1]) for r in ("dee", "eve")}
    assert outdoor["dee"] > _outdoor(shown(before, "dee", "news")[0])
    assert outdoor["eve"] < outdoor["dee"]


def _news(shop: Shop, day: float) -> Shop:
    story = Shop()
    story.lines = list(shop.lines)
    story.add("news", "dee", day)
    story.add("news", "eve", day)
    return story


def _outdoor(products: list[str]) -> int:
    return sum(p.startswith("o-") for p in products)


SHOP = REPO / "config"


async def test_the_shipped_abandonment_mails_show_the_items_and_two_picks() -> None:
    """With the shipped rules and catalog: the cart and browse mails show what was left
    behind, with image, price and link, and two picks of what goes with it."""
    shop = Shop()
    for n in range(5):
        shop.buy(f"regular{n}", 1 + n / 10, "sku-kettle", "sku-mug", "sku-lamp")
    shop.signup("uma", 2)
    shop.add("add_to_cart", "uma", 2.01, product_id="sku-kettle", price=59.0, cart_id="c1")
    shop.signup("vic", 2)
    shop.view("vic", 2.02, "sku-kettle")
    catalog = load_catalog(SHOP / "catalog.jsonl")
    sim = await simulate(
        load_rules(SHOP), shop.lines, until=DAY0 + timedelta(days=4), catalog=catalog
    )
    kettle = next(p for p in catalog if p.product_id == "sku-kettle")
    for user, rule in (("uma", "cart_abandonment"), ("vic", "browse_abandonment")):
        [mail] = [s for s in sim.sends if s.user_id == user and s.rule_id == rule]
        assert kettle.image_url and kettle.url
        assert kettle.image_url in mail.html and kettle.url in mail.html and "$59.00" in mail.html
        assert kettle.url in mail.text
        assert mail.products == ["sku-kettle", "sku-lamp", "sku-mug"]  # the item, two picks
        assert "Enamel mug" in mail.html and "Enamel mug" in mail.text


@pytest.mark.parametrize("call", ["recommend('similar')", "recommend(2, 'nonsense')"])
async def test_a_bad_recommend_call_suppresses_the_mail_not_the_batch(
    make_config: Callable[[str], Path], call: str
) -> None:
    config = make_config(RULES)
    for name in ("picks", "similar", "promo"):
        folder = config / "templates" / name
        folder.mkdir()
        for part in ("subject.txt", "body.html", "body.txt"):
            (folder / part).write_text("{{ " + call + " }}")
    shop = Shop()
    shop.signup("cal", 1)
    shop.add("hello", "cal", 1.1)
    sim = await run(load_rules(config), shop)
    assert not sim.sends
    [decision] = [d for d in sim.decisions if d.rule_id == "hello"]
    assert (decision.outcome, decision.reason) == ("suppressed", "render_error")
    assert "recommend()" in decision.detail


async def test_statistics_leave_out_events_dated_decades_away(ruleset: RuleSet) -> None:
    """One event dated 2099 (or 1970) in a batch neither fails the batch's statistics
    nor moves their epoch so far ahead that every later read overflows."""
    from profiles import (
        InMemoryCatalog,
        InMemoryProfileStore,
        InMemoryStatistics,
        InMemoryTimerStore,
    )
    from triggers.engine import Engine, Incoming, InMemoryOutbox

    ms = int(DAY0.timestamp() * 1000)
    stats = InMemoryStatistics(
        InMemoryCatalog(CATALOG), config=ruleset.config.recommendations, clock_ms=lambda: ms
    )
    engine = Engine(
        rules=ruleset,
        profiles=InMemoryProfileStore(),
        timers=InMemoryTimerStore(),
        outbox=InMemoryOutbox(),
        clock=lambda: DAY0,
        lookups=stats,
        statistics=stats,
    )
    shop = Shop()
    shop.buy("ann", 0, "o-tent", "o-lamp")
    dated = (("far", "2099-01-01T00:00:00Z"), ("old", "1970-01-01T00:00:00Z"))
    for user, ts in (*dated, ("alone", "2099-01-01T00:00:00Z")):
        view = {"event_id": user, "type": "product_view", "user_id": user, "ts": ts}
        shop.lines.append(orjson.dumps({**view, "properties": {"product_id": "k-mug"}}))
    for batch in (shop.lines[:3], shop.lines[3:]):  # mixed with a purchase; alone
        await engine.process([Incoming(line, None, "t", 0, n) for n, line in enumerate(batch)])
        await engine.settle()
    fetched = await stats.fetch(["o-tent"])
    assert [pid for pid, _ in fetched.also_bought["o-tent"]] == ["o-lamp"]
    assert "k-mug" not in dict(fetched.popular or ())

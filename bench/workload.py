"""A year of an online gift shop as nudge events: the workload every bench mode shares.

The shape comes from a real gift shop's year of orders:

- 35 % of customers buy once; orders per customer: median 2, p90 9;
- days between a customer's orders: median 22, p90 104 (log-normal);
- lines per order: median 15, p90 48 (log-normal);
- 3,700 items with Zipf popularity, the top 10 % making 45 % of the lines;
- 64 % of repeat orders share an item with the customer's previous order.

What was not measured is a named constant below (the share of signups who never buy,
email engagement, carts without ``cart_id``, ...). Every rule of ``config/rules.yaml`` gets
work: signups with and without consent (welcome), first orders over 100 (order_thanks),
``price.alert`` custom events (price_alert), carts with ``cart_id`` and some without one
(cart_abandonment, keyed and unkeyed; some emptied, some bought, some left), products
viewed and later bought or not (browse_abandonment), ``traits.birthday`` sent by
``profile_update`` (birthday), signups (signup_anniversary, winback), spending past 500
(vip_welcome) and email opens and clicks (engaged_reader).

Time
    Shoppers live on the shop's calendar (a year; visits in the afternoon, local time).
    The bench maps that year linearly onto ``span_ms`` of event time ending at ``end_ms``
    (default: 2 ms per event, a 500 events/s stream, like the bench always had), so a
    week between orders may be a second of event time; rule waits (1h, 30d, ...) are
    *not* scaled. A visit's events are spread over 80 % of the time until the shopper's
    next visit (at most 30 minutes), so a batch holds a few events of many shoppers, not
    one shopper's whole visit. ``span_ms`` of a year keeps the calendar as it is.

Quiet hours
    Each shopper's zone is a fixed-offset ``Etc/GMT`` zone in which ``end_ms`` falls
    between 10:00 and 16:00, so marketing mail decided around then is not deferred.

Determinism
    The same ``seed`` and event count give the same events, shifted with ``end_ms``
    (times, and the zones that keep them in the afternoon). ``python bench/workload.py
    --stats`` prints the measured shape next to the targets; ``--out FILE`` writes the
    events as JSON lines (for ``nudge simulate``).
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any, NamedTuple

import orjson

__all__ = [
    "Shopper",
    "Workload",
    "cart_event",
    "daytime_zone",
    "shop",
    "signup_event",
]

DAY_S = 86_400
YEAR_DAYS = 365
YEAR_S = YEAR_DAYS * DAY_S
#: the bench's event-time pace when no span is given: 2 ms per event
MS_PER_EVENT = 2

# --- measured on the real shop --------------------------------------------------------
CATALOGUE_SIZE = 3_700
TOP_ITEMS, TOP_SHARE = 0.10, 0.45
#: orders per customer in the year: P(1..9), the rest is the tail (10 and more)
ORDERS_PMF = (0.35, 0.20, 0.10, 0.07, 0.05, 0.04, 0.03, 0.03, 0.035)
ORDER_GAP_DAYS = (22, 104)  # median, p90, as measured over the year's orders
ORDER_LINES = (15, 48)  # median, p90
REPEAT_SHARES_ITEM = 0.64

# --- assumed ------------------------------------------------------------------------
#: mean of the orders beyond 9 (geometric tail), and the most orders a customer places
TAIL_MEAN, MAX_ORDERS = 8, 80
MAX_LINES = 250
#: days between orders as drawn: wider than measured, because fitting a busy customer's
#: orders into the year shortens their gaps (and they have most of the gaps); drawn like
#: this, the stream's gaps measure as the shop's (check with --stats)
GAP_DRAWN_DAYS = (45, 200)
#: popularity as drawn: a little steeper than measured, because an order holds each item
#: once (a popular item drawn twice counts once)
TOP_SHARE_DRAWN = 0.47
#: share of signups who ever buy
BUYER_SHARE = 0.5
#: chance a repeat order deliberately re-buys items of the previous one (calibrated so
#: that, with the overlap popular items give anyway, 64 % of repeat orders share one)
REBUY_CHANCE = 0.4
#: share of signups without email consent; of those, share who grant it later
NO_CONSENT, LATER_CONSENT = 0.12, 0.25
UNSUBSCRIBE = 0.03
BIRTHDAY_SHARE = 0.30
#: share of visits from a client that sends no cart_id (an unkeyed cart)
NO_CART_ID = 0.10
#: chance an order's cart was started and left on an earlier visit
LEFT_BEFORE_ORDER = 0.30
#: per line bought: chance its product page was viewed first; other products viewed;
#: chance of a category or search page before a product page
VIEW_BEFORE_ADD, OTHER_VIEWS_PER_LINE, PAGE_BEFORE_VIEW = 0.7, 0.5, 0.4
#: per line added: chance it is removed again
REMOVE_LINE = 0.05
#: per product viewed and not bought: chance of a price.alert about it later
PRICE_ALERT = 0.05
#: email engagement tiers: (share of users, opens per week, clicks per open)
ENGAGEMENT = ((0.45, 0.0, 0.0), (0.40, 0.25, 0.2), (0.15, 2.0, 0.35))
#: browse-only visits between two orders (Poisson mean), and for non-buyers
BROWSE_BETWEEN_ORDERS, BROWSE_NON_BUYER = 1.0, 1.5
#: most event time one visit's events are spread over
VISIT_MAX_MS = 30 * 60 * 1000

CATEGORIES = (
    "cards",
    "candles",
    "mugs",
    "jewellery",
    "toys",
    "books",
    "stationery",
    "home",
    "kitchen",
    "garden",
)
ADJECTIVES = ("Little", "Golden", "Cosy", "Happy", "Vintage", "Lucky", "Handmade", "Starry")
LOCALES = (("en", 0.55), ("de", 0.2), ("fr", 0.15), ("nl", 0.1))
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Linus", "Margaret", "Ken", "Frances")


# --- catalogue ------------------------------------------------------------------------


class Item(NamedTuple):
    product_id: str
    name: str
    category: str
    price: float


def zipf_exponent(n: int, top: float, share: float) -> float:
    """The Zipf exponent ``s`` for which the top ``top`` of ``n`` ranks get ``share``."""
    low, high = 0.0, 3.0
    cut = max(int(n * top), 1)
    for _ in range(50):
        s = (low + high) / 2
        weights = [rank**-s for rank in range(1, n + 1)]
        if sum(weights[:cut]) / sum(weights) < share:
            low = s
        else:
            high = s
    return (low + high) / 2


@dataclass(frozen=True)
class Catalogue:
    items: list[Item]
    #: cumulative popularity of ``items`` (most popular first)
    cumulative: list[float]

    @classmethod
    def build(cls, seed: int) -> Catalogue:
        rng = random.Random(f"catalogue:{seed}")
        s = zipf_exponent(CATALOGUE_SIZE, TOP_ITEMS, TOP_SHARE_DRAWN)
        items = []
        for n in range(CATALOGUE_SIZE):
            category = rng.choice(CATEGORIES)
            price = max(round(math.exp(rng.gauss(math.log(14), 0.7))) - 0.1, 1.9)
            name = f"{rng.choice(ADJECTIVES)} {category.rstrip('s')} {n}"
            items.append(Item(f"sku-{n:05d}", name, category, price))
        weights = [rank**-s for rank in range(1, CATALOGUE_SIZE + 1)]
        return cls(items, list(accumulate(weights)))

    def pick(self, rng: random.Random) -> int:
        """A popular item more often than an obscure one (an index into ``items``)."""
        return bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])


# --- shoppers and their visits ---------------------------------------------------------


@dataclass
class Shopper:
    user_id: str
    #: hours ahead of UTC (fixed-offset zone)
    offset_h: int
    first_name: str
    locale: str
    consent: bool
    buyer: bool

    @property
    def timezone(self) -> str:
        return daytime_zone_name(self.offset_h)


class Step(NamedTuple):
    """One event of a visit before it has a time: its type and what it needs."""

    kind: str
    data: Any = None


@dataclass
class Visit:
    day: float
    steps: list[Step]


class Planned(NamedTuple):
    """An event with its time; sorts by time, then shopper, then the shopper's order."""

    ts_ms: int
    user: int
    seq: int
    step: Step


def daytime_zone_name(offset_h: int) -> str:
    """The ``Etc/GMT`` zone ``offset_h`` hours ahead of UTC (its name's sign is inverted)."""
    return "Etc/GMT" if offset_h == 0 else f"Etc/GMT{-offset_h:+d}"


def daytime_zone(at_ms: int, local_hour: int = 13) -> str:
    """A fixed-offset zone in which ``at_ms`` falls in ``local_hour`` (quiet hours: none)."""
    return daytime_zone_name(_offset_for(at_ms, local_hour))


def _offset_for(at_ms: int, local_hour: int) -> int:
    utc_hour = (at_ms // 3_600_000) % 24
    offset = (local_hour - utc_hour) % 24
    return offset - 24 if offset > 14 else offset


def _lognormal(rng: random.Random, median: float, p90: float) -> float:
    sigma = (math.log(p90) - math.log(median)) / 1.2816
    return math.exp(rng.gauss(math.log(median), sigma))


def _order_count(rng: random.Random) -> int:
    roll = rng.random()
    for count, p in enumerate(ORDERS_PMF, start=1):
        if roll < p:
            return count
        roll -= p
    tail = int(rng.expovariate(1 / TAIL_MEAN))
    return min(10 + tail, MAX_ORDERS)


def _quantity(item: int) -> int:
    """Most lines are one of a kind; every seventh item sells in pairs."""
    return 2 if item % 7 == 0 else 1


def _poisson(rng: random.Random, mean: float) -> int:
    count, limit, product = 0, math.exp(-mean), rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class StoryWriter:
    """Plans one shopper's year: visits on calendar days, each a list of steps."""

    def __init__(self, shopper: Shopper, catalogue: Catalogue, rng: random.Random) -> None:
        self.shopper = shopper
        self.catalogue = catalogue
        self.rng = rng
        self.visits: list[Visit] = []
        self.carts = 0
        self.messages = 0
        self.viewed_unbought: list[tuple[float, int]] = []

    def write(self) -> list[Visit]:
        rng = self.rng
        if self.shopper.buyer:
            arrival, order_days = self._order_calendar()
        else:
            arrival, order_days = rng.uniform(0, YEAR_DAYS - 1), []
        self.visits.append(Visit(arrival, [Step("signup")]))
        self._orders(arrival, order_days)
        self._browsing(arrival, order_days)
        self._extras(arrival)
        self.visits.sort(key=lambda visit: visit.day)
        return self.visits

    # -- calendar --

    def _order_calendar(self) -> tuple[float, list[float]]:
        """Arrival day and order days: every order inside the year."""
        rng = self.rng
        count = _order_count(rng)
        first = 0.0 if rng.random() < 0.4 else rng.expovariate(1 / 10)
        gaps = [_lognormal(rng, *GAP_DRAWN_DAYS) for _ in range(count - 1)]
        length = first + sum(gaps)
        if length > YEAR_DAYS - 1:  # a very busy customer: squeeze into the year
            scale = (YEAR_DAYS - 1) / length
            first, gaps = first * scale, [gap * scale for gap in gaps]
            length = YEAR_DAYS - 1
        arrival = rng.uniform(0, YEAR_DAYS - 1 - length)
        days = list(accumulate([arrival + first, *gaps]))
        return arrival, days

    # -- orders --

    def _orders(self, arrival: float, order_days: list[float]) -> None:
        previous: tuple[int, ...] = ()
        for order, day in enumerate(order_days):
            lines = self._order_lines(previous)
            self._order_visits(order, lines, day=day, arrival=arrival)
            previous = lines

    def _order_lines(self, previous: tuple[int, ...]) -> tuple[int, ...]:
        rng = self.rng
        count = min(max(round(_lognormal(rng, *ORDER_LINES)), 1), MAX_LINES)
        chosen: dict[int, None] = {}
        if previous and rng.random() < REBUY_CHANCE:
            for item in rng.sample(previous, max(1, round(len(previous) * rng.random() / 3))):
                chosen[item] = None
        while len(chosen) < count:
            chosen[self.catalogue.pick(rng)] = None
        return tuple(list(chosen)[:count])

    def _order_visits(
        self, order: int, lines: tuple[int, ...], *, day: float, arrival: float
    ) -> None:
        """The visit that buys ``lines``, maybe after a visit that started and left it."""
        rng = self.rng
        cart = self._new_cart()
        started = 0
        if rng.random() < LEFT_BEFORE_ORDER and len(lines) > 1 and day - arrival > 0.1:
            started = rng.randint(1, len(lines) - 1)
            left_day = rng.uniform(max(day - 3, arrival), day - 0.05)
            self.visits.append(Visit(left_day, self._fill(lines[:started], cart, day=left_day)))
        steps = [Step("page_view", lines[0])]
        steps += self._fill(lines[started:], cart, day=day)
        quantities = tuple((item, _quantity(item)) for item in lines)
        steps.append(Step("checkout_started", (quantities, cart)))
        steps.append(Step("purchase", (order, quantities, cart)))
        self.visits.append(Visit(day, steps))

    def _new_cart(self) -> int | None:
        self.carts += 1
        return None if self.rng.random() < NO_CART_ID else self.carts

    def _fill(self, lines: tuple[int, ...], cart: int | None, *, day: float) -> list[Step]:
        """Product views and cart adds (and the odd remove) that put ``lines`` in a cart."""
        rng = self.rng
        steps = []
        for item in lines:
            if rng.random() < OTHER_VIEWS_PER_LINE:
                steps += self._view_unbought(day)
            if rng.random() < VIEW_BEFORE_ADD:
                steps += self._view(item)
            steps.append(Step("add_to_cart", (item, _quantity(item), cart)))
            if rng.random() < REMOVE_LINE:  # removed, then put back
                steps.append(Step("remove_from_cart", (item, cart)))
                steps.append(Step("add_to_cart", (item, _quantity(item), cart)))
        return steps

    def _view(self, item: int) -> list[Step]:
        """A product page, often reached through a category or search page."""
        page = [Step("page_view", item)] if self.rng.random() < PAGE_BEFORE_VIEW else []
        return [*page, Step("product_view", item)]

    def _view_unbought(self, day: float) -> list[Step]:
        item = self.catalogue.pick(self.rng)
        self.viewed_unbought.append((day, item))
        return self._view(item)

    # -- everything else --

    def _browsing(self, arrival: float, order_days: list[float]) -> None:
        rng = self.rng
        if not order_days:
            end = min(arrival + 90, YEAR_DAYS)
            for n in range(1 + _poisson(rng, BROWSE_NON_BUYER)):
                day = rng.uniform(arrival, end)
                left_cart = n == 0 and rng.random() < 0.4
                self.visits.append(Visit(day, self._browse(day, left_cart=left_cart)))
            return
        bounds = [*order_days, YEAR_DAYS]
        for start, end in pairwise(bounds):
            for _ in range(_poisson(rng, BROWSE_BETWEEN_ORDERS)):
                day = rng.uniform(start, end)
                self.visits.append(Visit(day, self._browse(day, left_cart=False)))

    def _browse(self, day: float, *, left_cart: bool) -> list[Step]:
        rng = self.rng
        steps = [Step("page_view", self.catalogue.pick(rng))]
        for _ in range(rng.randint(1, 8)):
            steps += self._view_unbought(day)
        if left_cart:
            cart = self._new_cart()
            added = [self.catalogue.pick(rng) for _ in range(rng.randint(1, 5))]
            steps += [Step("add_to_cart", (item, 1, cart)) for item in added]
            if rng.random() < 0.3:  # emptied again: cart_emptied
                steps += [Step("remove_from_cart", (item, cart)) for item in dict.fromkeys(added)]
        return steps

    def _extras(self, arrival: float) -> None:
        """Email opens and clicks, a birthday, price alerts, consent changes."""
        rng = self.rng
        self._emails(arrival)
        if rng.random() < BIRTHDAY_SHARE:
            birthday = (
                f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            )
            self._single(rng.uniform(arrival, YEAR_DAYS), Step("profile_update", birthday))
        for day, item in self.viewed_unbought:
            if rng.random() < PRICE_ALERT:
                self._single(day + rng.uniform(1, 10), Step("price.alert", item))
        if not self.shopper.consent and rng.random() < LATER_CONSENT:
            self._single(rng.uniform(arrival, YEAR_DAYS), Step("consent", True))
        if rng.random() < UNSUBSCRIBE:
            self._single(rng.uniform(arrival, YEAR_DAYS), Step("unsubscribe"))

    def _emails(self, arrival: float) -> None:
        rng = self.rng
        tiers = [(per_week, clicks) for _, per_week, clicks in ENGAGEMENT]
        per_week, clicks = rng.choices(tiers, [share for share, *_ in ENGAGEMENT])[0]
        weeks = (YEAR_DAYS - arrival) / 7
        for _ in range(_poisson(rng, per_week * weeks)):
            self.messages += 1
            steps = [Step("email_open", self.messages)]
            if rng.random() < clicks:
                steps.append(Step("email_click", self.messages))
            self._single(rng.uniform(arrival, YEAR_DAYS), *steps)

    def _single(self, day: float, *steps: Step) -> None:
        if day < YEAR_DAYS:
            self.visits.append(Visit(day, list(steps)))


# --- from the calendar to event time ----------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """Maps the shop's year onto ``span_ms`` of event time ending at ``end_ms``."""

    end_ms: int
    span_ms: int

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.span_ms

    @property
    def ms_per_shop_second(self) -> float:
        return self.span_ms / YEAR_S

    def visit_start(self, day: float, offset_h: int) -> float:
        """An afternoon (10:00-19:00 local) of ``day``, in event time."""
        whole = math.floor(day)
        local_hour = 10 + 9 * (day - whole)
        shop_s = whole * DAY_S + (local_hour - offset_h) * 3600
        return self.start_ms + shop_s * self.ms_per_shop_second

    def plan(self, user: int, shopper: Shopper, visits: list[Visit]) -> list[Planned]:
        """Times for every step of ``visits``: each visit spread over most of its slot."""
        starts = [self.visit_start(visit.day, shopper.offset_h) for visit in visits]
        last_slot = ORDER_GAP_DAYS[0] * DAY_S * self.ms_per_shop_second
        ends = [*starts[1:], starts[-1] + last_slot] if starts else []
        planned: list[Planned] = []
        for visit, start, end in zip(visits, starts, ends, strict=True):
            length = min(0.8 * (end - start), VISIT_MAX_MS)
            count = len(visit.steps)
            for k, step in enumerate(visit.steps):
                ts_ms = int(start + length * k / count)
                if ts_ms > self.end_ms:
                    return planned
                planned.append(Planned(ts_ms, user, len(planned), step))
        return planned


# --- the workload -------------------------------------------------------------------------


@dataclass
class Workload:
    """The first ``events`` events of the shop's year, in event-time order."""

    seed: int
    timeline: Timeline
    catalogue: Catalogue
    shoppers: list[Shopper]
    planned: list[Planned]

    def __len__(self) -> int:
        return len(self.planned)

    def event(self, planned: Planned) -> dict[str, Any]:
        shopper = self.shoppers[planned.user]
        return {
            "event_id": f"{shopper.user_id}-{planned.seq}",
            "type": planned.step.kind,
            "user_id": shopper.user_id,
            "ts": planned.ts_ms,
            "properties": self._properties(shopper, planned.user, planned.step),
        }

    def events(self) -> Iterator[dict[str, Any]]:
        return (self.event(planned) for planned in self.planned)

    def messages(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) Kafka messages: key = user_id, value = the event as JSON."""
        for planned in self.planned:
            event = self.event(planned)
            yield event["user_id"].encode(), orjson.dumps(event)

    @property
    def users(self) -> int:
        """Shoppers with at least one event in the stream."""
        return len({planned.user for planned in self.planned})

    def events_per_user(self) -> Counter[str]:
        return Counter(self.shoppers[planned.user].user_id for planned in self.planned)

    def _properties(self, shopper: Shopper, user: int, step: Step) -> dict[str, Any]:
        kind, data = step
        items = self.catalogue.items
        if kind == "signup":
            return signup_properties(shopper)
        if kind in ("page_view",):
            category = items[data].category
            return {"url": f"https://giftshop.example/{category}", "title": category.title()}
        if kind in ("product_view", "price.alert"):
            props = _item(items[data])
            if kind == "price.alert":
                props |= {"previous_price": props["price"], "price": round(props["price"] * 0.85)}
            return props
        if kind in ("add_to_cart", "remove_from_cart", "checkout_started", "purchase"):
            return self._cart_properties(user, kind, data)
        if kind in ("email_open", "email_click"):
            message = {"message_id": f"msg-{shopper.user_id}-{data}"}
            return message | (
                {"url": "https://giftshop.example/new"} if kind == "email_click" else {}
            )
        if kind == "profile_update":
            return {"traits": {"birthday": data}}
        if kind == "consent":
            return {"channel": "email", "granted": data}
        return {}

    def _cart_properties(self, user: int, kind: str, data: Any) -> dict[str, Any]:
        items = self.catalogue.items
        cart = data[-1]
        props: dict[str, Any] = {} if cart is None else {"cart_id": f"cart-{user}-{cart}"}
        if kind == "add_to_cart":
            item, quantity, _ = data
            return _item(items[item]) | {"quantity": quantity} | props
        if kind == "remove_from_cart":
            return {"product_id": items[data[0]].product_id} | props
        lines = data[-2]
        total = round(sum(items[item].price * quantity for item, quantity in lines), 2)
        if kind == "checkout_started":
            return props | {"total": total}
        bought = [_item(items[item]) | {"quantity": quantity} for item, quantity in lines]
        order = {"order_id": f"order-{user}-{data[0]}", "items": bought, "total": total}
        return order | {"currency": "EUR"} | props


def _item(item: Item) -> dict[str, Any]:
    return {"product_id": item.product_id, "name": item.name, "category": item.category} | {
        "price": item.price
    }


def _shopper(seed: int, n: int, timeline: Timeline) -> tuple[Shopper, random.Random]:
    rng = random.Random(f"{seed}:{n}")
    locale = rng.choices([code for code, _ in LOCALES], [w for _, w in LOCALES])[0]
    shopper = Shopper(
        user_id=f"shopper-{n:06d}",
        offset_h=_offset_for(timeline.end_ms, rng.randint(10, 16)),
        first_name=rng.choice(FIRST_NAMES),
        locale=locale,
        consent=rng.random() >= NO_CONSENT,
        buyer=rng.random() < BUYER_SHARE,
    )
    return shopper, rng


def shop(events: int, *, seed: int = 7, end_ms: int, span_ms: int | None = None) -> Workload:
    """The first ``events`` events of the shop's year, ending at ``end_ms``."""
    timeline = Timeline(end_ms, span_ms or events * MS_PER_EVENT)
    catalogue = Catalogue.build(seed)
    shoppers: list[Shopper] = []
    planned: list[Planned] = []
    while len(planned) < events:
        shopper, rng = _shopper(seed, len(shoppers), timeline)
        visits = StoryWriter(shopper, catalogue, rng).write()
        planned += timeline.plan(len(shoppers), shopper, visits)
        shoppers.append(shopper)
    planned.sort()
    return Workload(seed, timeline, catalogue, shoppers, planned[:events])


# --- single events for the latency and timers modes ---------------------------------------


def signup_properties(shopper: Shopper) -> dict[str, Any]:
    return {
        "email": f"{shopper.user_id}@example.com",
        "first_name": shopper.first_name,
        "locale": shopper.locale,
        "timezone": shopper.timezone,
        "consent": {"email": shopper.consent},
    }


def signup_event(user_id: str, *, event_id: str, ts_ms: int, zone_at_ms: int) -> dict[str, Any]:
    """A signup with email consent, in a zone where ``zone_at_ms`` is early afternoon."""
    shopper = Shopper(user_id, _offset_for(zone_at_ms, 13), "Ada", "en", True, False)
    return {
        "event_id": event_id,
        "type": "signup",
        "user_id": user_id,
        "ts": ts_ms,
        "properties": signup_properties(shopper),
    }


def cart_event(user_id: str, *, event_id: str, ts_ms: int, cart_id: str) -> dict[str, Any]:
    """One item added to cart ``cart_id`` (the cart_abandonment rule's start event)."""
    item = Item("sku-00042", "Golden candle 42", "candles", 18.9)
    return {
        "event_id": event_id,
        "type": "add_to_cart",
        "user_id": user_id,
        "ts": ts_ms,
        "properties": _item(item) | {"quantity": 1, "cart_id": cart_id},
    }


# --- checking the shape -----------------------------------------------------------------


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def _orders_by_user(workload: Workload) -> dict[int, list[tuple[int, list[int]]]]:
    """Per shopper: (time, items) of each purchase in the stream."""
    orders: dict[int, list[tuple[int, list[int]]]] = {}
    for planned in workload.planned:
        if planned.step.kind == "purchase":
            lines = [item for item, _ in planned.step.data[1]]
            orders.setdefault(planned.user, []).append((planned.ts_ms, lines))
    return orders


def describe(workload: Workload) -> list[str]:
    """The measured shape of ``workload`` next to the shop's, one line per figure."""
    orders = _orders_by_user(workload)
    counts = [len(mine) for mine in orders.values()]
    day_ms = DAY_S * workload.timeline.ms_per_shop_second
    gaps = [(b[0] - a[0]) / day_ms for mine in orders.values() for a, b in pairwise(mine)]
    lines = [len(items) for mine in orders.values() for _, items in mine]
    repeats = [bool(set(a[1]) & set(b[1])) for mine in orders.values() for a, b in pairwise(mine)]
    per_item = Counter(item for mine in orders.values() for _, items in mine for item in items)
    top = sum(sorted(per_item.values(), reverse=True)[: int(CATALOGUE_SIZE * TOP_ITEMS)])
    per_user = list(workload.events_per_user().values())
    kinds = Counter(planned.step.kind for planned in workload.planned)
    users = len(per_user)
    return [
        f"events            {len(workload):,} of {users:,} shoppers, "
        f"{len(orders):,} of them customers",
        f"buy once          {counts.count(1) / max(len(counts), 1):.0%}   (shop: 35 %)",
        f"orders/customer   median {statistics.median(counts or [0]):.0f}, "
        f"p90 {_quantile(counts, 0.9):.0f}   (shop: 2, 9)",
        f"days between      median {_quantile(gaps, 0.5):.0f}, p90 {_quantile(gaps, 0.9):.0f}"
        "   (shop: 22, 104)",
        f"lines/order       median {_quantile(lines, 0.5):.0f}, p90 {_quantile(lines, 0.9):.0f}"
        "   (shop: 15, 48)",
        f"top 10 % items    {top / max(sum(per_item.values()), 1):.0%} of lines   (shop: 45 %)",
        f"repeat shares     {sum(repeats) / max(len(repeats), 1):.0%} of repeat orders"
        "   (shop: 64 %)",
        f"events/shopper    mean {statistics.mean(per_user):.0f}, median "
        f"{statistics.median(per_user):.0f}, p90 {_quantile(per_user, 0.9):.0f}, "
        f"max {max(per_user)}",
        "mix               "
        + ", ".join(f"{kind} {n / len(workload):.1%}" for kind, n in kinds.most_common()),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=float, help="event-time span in days (default 2 ms/event)")
    parser.add_argument("--stats", action="store_true", help="print the shape vs the shop's")
    parser.add_argument("--out", type=argparse.FileType("wb"), help="write events as JSON lines")
    args = parser.parse_args(argv)
    end_ms = int(time.time() // 3600 * 3600 * 1000)
    span_ms = int(args.days * DAY_S * 1000) if args.days else None
    workload = shop(args.events, seed=args.seed, end_ms=end_ms, span_ms=span_ms)
    if args.out:
        for event in workload.events():
            args.out.write(orjson.dumps(event) + b"\n")
    if args.stats or not args.out:
        print("\n".join(describe(workload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

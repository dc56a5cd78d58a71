"""What each shopper of an online gift shop does in a year: visits, carts, orders, mails.

The shape comes from a real gift shop's year of orders:

- 35 % of customers buy once; orders per customer: median 2, p90 9;
- days between a customer's orders: median 22, p90 104 (log-normal);
- lines per order: median 15, p90 48 (log-normal);
- 3,700 items with Zipf popularity, the top 10 % making 45 % of the lines;
- 64 % of repeat orders share an item with the customer's previous order.

What was not measured is a named constant below (the share of signups who never buy,
email engagement, carts without ``cart_id``, ...). A :class:`StoryWriter` plans one
shopper's year as visits on calendar days, each a list of :class:`Step` (an event type
and what it needs); :mod:`workload` gives them times and turns them into events.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any, NamedTuple

__all__ = [
    "DAY_S",
    "YEAR_DAYS",
    "YEAR_S",
    "Catalogue",
    "Item",
    "Shopper",
    "Step",
    "StoryWriter",
    "Visit",
    "offset_for",
    "zone_name",
]

DAY_S = 86_400
YEAR_DAYS = 365
YEAR_S = YEAR_DAYS * DAY_S

# --- measured on the real shop (medians and p90s) -----------------------------------
BUY_ONCE = 0.35
ORDERS_PER_CUSTOMER = (2, 9)
ORDER_GAP_DAYS = (22, 104)
ORDER_LINES = (15, 48)
CATALOGUE_SIZE = 3_700
TOP_ITEMS, TOP_SHARE = 0.10, 0.45
REPEAT_SHARES_ITEM = 0.64

# --- drawn to give the measured shape, or assumed ------------------------------------
#: orders per customer in the year: P(1..9), the rest is the tail (10 and more)
ORDERS_PMF = (BUY_ONCE, 0.20, 0.10, 0.07, 0.05, 0.04, 0.03, 0.03, 0.035)
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
#: share of signups who ever buy; chance the first order is on the signup visit, else
#: mean days until it
BUYER_SHARE, FIRST_ORDER_AT_SIGNUP, FIRST_ORDER_DAYS = 0.5, 0.4, 10
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
#: non-buyers browse within this many days of signing up; chance one leaves a cart
NON_BUYER_DAYS, NON_BUYER_LEAVES_CART = 90, 0.4
#: chance a left cart is emptied again (cancel_when cart_emptied)
CART_EMPTIED = 0.3
#: products looked at on a browse-only visit (fewest, most)
BROWSE_VIEWS = (1, 8)

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
        return zone_name(self.offset_h)


class Step(NamedTuple):
    """One event of a visit before it has a time: its type and what it needs."""

    kind: str
    data: Any = None


@dataclass
class Visit:
    day: float
    steps: list[Step]


def zone_name(offset_h: int) -> str:
    """The ``Etc/GMT`` zone ``offset_h`` hours ahead of UTC (its name's sign is inverted)."""
    return "Etc/GMT" if offset_h == 0 else f"Etc/GMT{-offset_h:+d}"


def offset_for(at_ms: int, local_hour: int) -> int:
    """Hours ahead of UTC (-12..14) of a zone in which ``at_ms`` falls in ``local_hour``."""
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
        at_signup = rng.random() < FIRST_ORDER_AT_SIGNUP
        first = 0.0 if at_signup else rng.expovariate(1 / FIRST_ORDER_DAYS)
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
            end = min(arrival + NON_BUYER_DAYS, YEAR_DAYS)
            for n in range(1 + _poisson(rng, BROWSE_NON_BUYER)):
                day = rng.uniform(arrival, end)
                left_cart = n == 0 and rng.random() < NON_BUYER_LEAVES_CART
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
        for _ in range(rng.randint(*BROWSE_VIEWS)):
            steps += self._view_unbought(day)
        if left_cart:
            cart = self._new_cart()
            added = [self.catalogue.pick(rng) for _ in range(rng.randint(1, 5))]
            steps += [Step("add_to_cart", (item, 1, cart)) for item in added]
            if rng.random() < CART_EMPTIED:
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

"""A year of an online gift shop as nudge events: the workload every bench mode shares.

The shoppers and what they do come from :mod:`story` (shaped by a real gift shop's year
of orders). Every rule of ``config/rules.yaml`` gets work: signups with and without
consent (welcome), first orders over 100 (order_thanks), ``price.alert`` custom events
(price_alert), carts with ``cart_id`` and some without one (cart_abandonment, keyed and
unkeyed; some emptied, some bought, some left), products viewed and later bought or not
(browse_abandonment), ``traits.birthday`` sent by ``profile_update`` (birthday), signups
(signup_anniversary, winback), spending past 500 (vip_welcome) and email opens and clicks
(engaged_reader).

Time
    Shoppers live on the shop's calendar (a year; visits in the afternoon, local time).
    The bench maps that year linearly onto ``span_ms`` of event time ending at ``end_ms``
    (default: 2 ms per event, a 500 events/s stream, like the bench always had), so the
    weeks between orders become seconds of event time; rule waits (1h, 30d, ...) are
    *not* scaled. A visit's events are spread over 80 % of the time until the shopper's
    next visit (at most 30 minutes), so a batch holds a few events of many shoppers, not
    one shopper's whole visit. ``span_ms`` of a year keeps the calendar as it is.

Quiet hours
    Each shopper's zone is a fixed-offset ``Etc/GMT`` zone in which ``end_ms`` falls
    between 10:00 and 16:00, so marketing mail decided around then is not deferred.

Determinism
    The same ``seed`` and event count give the same events, shifted with ``end_ms``
    (times, and the zones that keep them in the afternoon). ``python bench/workload.py
    --stats`` prints the measured shape next to the shop's; ``--out FILE`` writes the
    events as JSON lines (for ``nudge simulate``).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import orjson
from story import (
    BUY_ONCE,
    BUYER_SHARE,
    CATALOGUE_SIZE,
    DAY_S,
    FIRST_NAMES,
    LOCALES,
    NO_CONSENT,
    ORDER_GAP_DAYS,
    ORDER_LINES,
    ORDERS_PER_CUSTOMER,
    REPEAT_SHARES_ITEM,
    TOP_ITEMS,
    TOP_SHARE,
    YEAR_S,
    Catalogue,
    Item,
    Shopper,
    Step,
    StoryWriter,
    Visit,
    offset_for,
)

__all__ = [
    "DAY_S",
    "Workload",
    "cart_event",
    "shop",
    "signup_event",
]

#: the bench's event-time pace when no span is given: 2 ms per event
MS_PER_EVENT = 2
#: most event time one visit's events are spread over
VISIT_MAX_MS = 30 * 60 * 1000


# --- from the calendar to event time ----------------------------------------------------


class Planned(NamedTuple):
    """An event with its time; sorts by time, then shopper, then the shopper's order."""

    ts_ms: int
    user: int
    seq: int
    step: Step


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
        if kind == "page_view":
            category = items[data].category
            return {"url": f"https://giftshop.example/{category}", "title": category.title()}
        if kind in ("product_view", "price.alert"):
            props = _item(items[data])
            if kind == "price.alert":  # the catalogue's price dropped by 15 %
                was = props["price"]
                props |= {"previous_price": was, "price": round(was * 0.85, 2)}
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
    return item._asdict()


def _shopper(seed: int, n: int, timeline: Timeline) -> tuple[Shopper, random.Random]:
    rng = random.Random(f"{seed}:{n}")
    locale = rng.choices([code for code, _ in LOCALES], [w for _, w in LOCALES])[0]
    shopper = Shopper(
        user_id=f"shopper-{n:06d}",
        offset_h=offset_for(timeline.end_ms, rng.randint(10, 16)),
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
    shopper = Shopper(user_id, offset_for(zone_at_ms, 13), "Ada", "en", True, False)
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
    orders = list(_orders_by_user(workload).values())
    counts = [len(mine) for mine in orders]
    day_ms = DAY_S * workload.timeline.ms_per_shop_second
    gaps = [(b[0] - a[0]) / day_ms for mine in orders for a, b in pairwise(mine)]
    lines = [len(items) for mine in orders for _, items in mine]
    repeats = [bool(set(a[1]) & set(b[1])) for mine in orders for a, b in pairwise(mine)]
    per_item = Counter(item for mine in orders for _, items in mine for item in items)
    top = sum(sorted(per_item.values(), reverse=True)[: int(CATALOGUE_SIZE * TOP_ITEMS)])
    per_user = list(workload.events_per_user().values())
    kinds = Counter(planned.step.kind for planned in workload.planned)
    return [
        f"events            {len(workload):,} of {workload.users:,} shoppers, "
        f"{len(orders):,} of them customers",
        _versus("buy once", f"{counts.count(1) / len(counts):.0%}", f"{BUY_ONCE:.0%}"),
        _versus("orders/customer", _median_p90(counts), _median_p90(ORDERS_PER_CUSTOMER)),
        _versus("days between", _median_p90(gaps), _median_p90(ORDER_GAP_DAYS)),
        _versus("lines/order", _median_p90(lines), _median_p90(ORDER_LINES)),
        _versus("top 10 % items", f"{top / sum(per_item.values()):.0%}", f"{TOP_SHARE:.0%}"),
        _versus("repeat shares", f"{sum(repeats) / len(repeats):.0%}", f"{REPEAT_SHARES_ITEM:.0%}"),
        f"events/shopper    mean {statistics.mean(per_user):.0f}, "
        f"{_median_p90(per_user)}, max {max(per_user):,}",
        "mix               "
        + ", ".join(f"{kind} {n / len(workload):.1%}" for kind, n in kinds.most_common()),
    ]


def _median_p90(values: Sequence[float]) -> str:
    """``median M, p90 P`` of ``values``, or of a (median, p90) pair as measured."""
    if len(values) == 2 and isinstance(values, tuple):
        return f"median {values[0]}, p90 {values[1]}"
    return f"median {_quantile(values, 0.5):.0f}, p90 {_quantile(values, 0.9):.0f}"


def _versus(label: str, measured: str, shop: str) -> str:
    return f"{label:<18}{measured}   (shop: {shop})"


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

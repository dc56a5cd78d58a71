"""Recommendation quality: hit-rate@4 of each strategy on planted purchase histories.

The shop: ``--items`` products in 10 categories with Zipf popularity (a popular head),
a brand each. Shoppers come from ``--groups`` taste groups; a group likes two categories
and buys from its own bundles (3 to 5 products of those categories that go together,
e.g. a mug, its tea and a spoon). As in the real shop most customers buy once or twice
(35 % once, median 2). An order is a bundle (2 or more of its products) plus, half the
time, one popular product from anywhere; before an order the shopper views a couple of
products (one of the coming bundle with chance 0.6).

Every event but each shopper's last order is replayed, in time order, through the same
statistics code the worker runs (:class:`profiles.Activity` into
:class:`profiles.InMemoryStatistics`, one batch per day). Then, per shopper, a
:class:`triggers.recommend.Taste` is built from their history (recent items newest first,
category and brand affinities as the profile counts them: view 1, cart 3, purchase 5;
bought items excluded) and each strategy's 4 recommendations are checked against the
held-out order: a hit when one of them is in it. ``popular`` is the baseline.

    .venv/bin/python bench/recommend.py [--users 6000] [--items 1500] [--seed 1] [--shops 3]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate

from harness import command_line, machine

from profiles import (
    Activity,
    InMemoryCatalog,
    InMemoryStatistics,
    Product,
    RecommendationConfig,
)
from triggers.recommend import STRATEGIES, Taste, recommend

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01
CATEGORIES = 10
BRANDS_PER_CATEGORY = 4
BUNDLES_PER_GROUP = 12
#: orders per shopper: P(1), P(2), ... (35 % buy once, median 2, a tail to 8)
ORDERS_PMF = (0.35, 0.25, 0.14, 0.09, 0.07, 0.05, 0.03, 0.02)
#: affinity points per event, as the profile's ``scoring.affinity`` counts them
AFFINITY = {"view": 1.0, "cart": 3.0, "purchase": 5.0}


@dataclass
class Shop:
    products: list[Product]
    #: cumulative Zipf popularity over ``products``
    cumulative: list[float]
    #: group -> its bundles (product indexes)
    bundles: list[list[list[int]]]
    by_category: list[list[int]]

    def popular_pick(self, rng: random.Random) -> int:
        return bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])


@dataclass
class History:
    """One shopper's events: (day, kind, product index), and the held-out last order."""

    group: int
    events: list[tuple[float, str, int]] = field(default_factory=list)
    held_out: set[int] = field(default_factory=set)


def build_shop(items: int, groups: int, rng: random.Random) -> Shop:
    products, by_category = [], [[] for _ in range(CATEGORIES)]
    for n in range(items):
        category = rng.randrange(CATEGORIES)
        by_category[category].append(n)
        brand = f"brand-{category}-{rng.randrange(BRANDS_PER_CATEGORY)}"
        pid = f"p{n:05d}"
        products.append(
            Product(product_id=pid, name=pid, category=f"c{category}", brand=brand, price=10)
        )
    cumulative = list(accumulate((rank + 1) ** -1.0 for rank in range(items)))
    bundles = []
    for _ in range(groups):
        liked = rng.sample(range(CATEGORIES), 2)
        own = []
        for _ in range(BUNDLES_PER_GROUP):
            pool = by_category[rng.choice(liked)]
            own.append(rng.sample(pool, rng.randint(3, 5)))
        bundles.append(own)
    return Shop(products, cumulative, bundles, by_category)


def _orders(rng: random.Random) -> int:
    return rng.choices(range(1, len(ORDERS_PMF) + 1), ORDERS_PMF)[0]


def history(shop: Shop, groups: int, rng: random.Random) -> History:
    """One shopper's year; the last order is held out."""
    story = History(rng.randrange(groups))
    own = shop.bundles[story.group]
    day = rng.uniform(0, 300)
    count = _orders(rng)
    for number in range(count):
        bundle = own[min(int(rng.expovariate(0.35)), len(own) - 1)]  # some bundles sell more
        lines = rng.sample(bundle, rng.randint(2, len(bundle)))
        if rng.random() < 0.5:
            lines.append(shop.popular_pick(rng))
        viewed = [rng.choice(bundle) if rng.random() < 0.6 else shop.popular_pick(rng)]
        viewed.append(shop.popular_pick(rng))
        story.events += [(day, "view", item) for item in viewed]
        if number == count - 1:
            story.held_out = set(lines)
        else:
            story.events += [(day + 0.01, "purchase", item) for item in lines]
        day += rng.expovariate(1 / 20)
    return story


async def replay(
    shop: Shop, stories: list[History], config: RecommendationConfig
) -> InMemoryStatistics:
    """Every story's events through the statistics, one batch per day, in time order."""
    clock = [START_MS]
    stats = InMemoryStatistics(
        InMemoryCatalog(shop.products), config=config, clock_ms=lambda: clock[0]
    )
    by_day: dict[int, list[tuple[float, int, str, int]]] = {}
    for user, story in enumerate(stories):
        for day, kind, item in story.events:
            by_day.setdefault(int(day), []).append((day, user, kind, item))
    for day in sorted(by_day):
        batch = Activity(config)
        orders: dict[tuple[int, float], list[tuple[str, str | None]]] = {}
        for at, user, kind, item in sorted(by_day[day]):
            product, at_ms = shop.products[item], START_MS + int(at * DAY_MS)
            if kind == "view":
                batch.add_view(f"u{user}", product.product_id, product.category, at_ms)
            else:
                orders.setdefault((user, at), []).append((product.product_id, product.category))
        for (user, at), lines in orders.items():
            batch.add_purchase(f"u{user}", lines, START_MS + int(at * DAY_MS))
        await stats.record(batch)
        clock[0] = START_MS + (day + 1) * DAY_MS
    return stats


def taste(shop: Shop, story: History) -> Taste:
    """What the profile knows of a shopper: recent items, affinities, what they bought."""
    categories: Counter[str] = Counter()
    brands: Counter[str] = Counter()
    for _, kind, item in story.events:
        product = shop.products[item]
        categories[product.category or ""] += AFFINITY[kind]
        brands[product.brand or ""] += AFFINITY[kind]
    recent = [shop.products[item].product_id for _, _, item in sorted(story.events, reverse=True)]
    bought = {shop.products[i].product_id for _, kind, i in story.events if kind == "purchase"}
    return Taste(tuple(dict.fromkeys(recent)), dict(categories), dict(brands), frozenset(bought))


async def evaluate(
    users: int, items: int, groups: int, seed: int, config: RecommendationConfig
) -> dict[tuple[str, str], float]:
    """Hit-rate@4 per (strategy, shoppers): ``all``, ``first order`` (the held-out order
    is their first: only views known), ``repeat``."""
    rng = random.Random(seed)
    shop = build_shop(items, groups, rng)
    stories = [history(shop, groups, rng) for _ in range(users)]
    stats = await replay(shop, stories, config)
    hits: Counter[tuple[str, str]] = Counter()
    counts: Counter[str] = Counter()
    for story in stories:
        user_taste = taste(shop, story)
        lookups = await stats.lookups(user_taste.recent)
        wanted = {shop.products[i].product_id for i in story.held_out}
        kind = "repeat" if user_taste.exclude else "first order"
        counts.update(["all", kind])
        for strategy in STRATEGIES:
            recs = recommend(user_taste, lookups, n=4, strategy=strategy)
            hit = any(p.product_id in wanted for p in recs)
            hits.update({(strategy, "all"): hit, (strategy, kind): hit})
    return {(s, kind): hits[s, kind] / counts[kind] for s in STRATEGIES for kind in counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1, help="the first shop's seed")
    parser.add_argument("--shops", type=int, default=3, help="shops drawn (seeds from --seed)")
    args = parser.parse_args()
    load = os.getloadavg()
    started = time.perf_counter()
    runs = [
        asyncio.run(evaluate(args.users, args.items, args.groups, seed, RecommendationConfig()))
        for seed in range(args.seed, args.seed + args.shops)
    ]
    elapsed = time.perf_counter() - started
    print(
        f"hit-rate@4 on each shopper's held-out last order: mean (min-max) of {args.shops} "
        f"shops of {args.users} shoppers\n"
    )
    print("| strategy | all shoppers | vs popular | first order | repeat |")
    print("|---|---|---|---|---|")
    for strategy in ("popular", "similar", "also_bought", "auto"):
        lift = [run[strategy, "all"] / run["popular", "all"] for run in runs]
        cells = [_spread([run[strategy, kind] for run in runs]) for kind in ("all", "first order")]
        repeat = _spread([run[strategy, "repeat"] for run in runs])
        print(f"| `{strategy}` | {cells[0]} | {_spread(lift, 'x', 1)} | {cells[1]} | {repeat} |")
    print(f"\n{machine(load)}; {elapsed:.1f} s\n{command_line()}")


def _spread(values: list[float], unit: str = "", digits: int = 3) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


if __name__ == "__main__":
    main()

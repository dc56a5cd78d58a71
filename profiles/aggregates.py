"""Shop-wide statistics: decayed popularity, co-occurrence, product watchers, send hours.

What a batch applied is summed into an :class:`Activity` (pure, no I/O) and recorded by
one :meth:`Statistics.record` call (one Lua call on Redis). Reads go through
:meth:`Statistics.fetch`, normally behind :class:`profiles.lookup_cache.LookupCache`.

**Forward decay.** A weight ``w`` observed at ``t`` is stored as
``w * 2 ** ((t - epoch) / half_life)``: old entries never need rewriting, and ranking by
stored weight is ranking by decayed weight at any moment. Reads scale to "now"
(``2 ** ((epoch - now) / half_life)``), so weights read are decayed counts. Before the
scale grows past ``2 ** RENORMALISE_AT`` the epoch moves forward and every stored weight
is divided by the same power of two (once every ``RENORMALISE_AT`` half-lives).

**Bounds.** Popularity (global and per category) and each product's co-occurrence row keep
their ``top_k`` strongest entries; a product's watchers keep the ``watchers_cap`` newest
within ``watch_days``. An order's pairs count ``1 / (lines - 1)`` each (every order adds
at most 1 to a product's row, however large), at most ``max_basket`` lines of it; a
carted product pairs with the ``CART_PAIRS`` products carted just before it, each pair
counting ``cart_weight`` shared among them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from profiles.catalog import InMemoryCatalog, Product
from profiles.events import Event
from profiles.keys import Keys
from profiles.lookups import Lookups, Ranked

__all__ = [
    "CART_PAIRS",
    "HOURS",
    "RENORMALISE_AT",
    "Activity",
    "Fetched",
    "InMemoryStatistics",
    "RecommendationConfig",
    "Statistics",
    "ranked",
]

HOURS = 24
#: half-lives past the epoch after which stored weights are rescaled. Floats keep their
#: relative precision at any scale, so only overflow (2**1024) bounds it: 2**500 leaves
#: room for counts up to 2**500. Rescaling rewrites every statistic in one script (about
#: 1 s on the bench workload's 7,400 keys), so it should be rare: every 500 half-lives
#: (19 years at the default 14 days)
RENORMALISE_AT = 500
DAY_MS = 86_400_000
#: a carted product pairs with this many products carted just before it (a cart of n
#: products costs at most 2 * CART_PAIRS * n pair updates, not n * (n - 1))
CART_PAIRS = 5


class RecommendationConfig(BaseModel):
    """The ``recommendations:`` block of ``rules.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: how fast popularity, co-occurrence and send hours forget
    half_life_days: float = Field(default=14.0, gt=0)
    #: entries kept per ranking (popularity, per category, per product's also-bought row)
    top_k: int = Field(default=50, ge=1, le=1000)
    #: weight of a cart pair (a purchase pair weighs 1) and of a cart in popularity
    cart_weight: float = Field(default=0.3, ge=0)
    #: weight of a product view in popularity
    view_weight: float = Field(default=0.05, ge=0)
    #: products of one order paired at most (its first lines): an order of n lines makes
    #: n * (n - 1) pair updates, and a large order says little about each pair
    max_basket: int = Field(default=20, ge=2)
    #: for callers building a Taste: recommendations sent this recently are not repeated
    exclude_recent_days: float = Field(default=30.0, ge=0)
    #: watchers kept per product (newest) and how long a view or cart keeps one
    watchers_cap: int = Field(default=1000, ge=1)
    watch_days: float = Field(default=30.0, gt=0)

    @property
    def half_life_ms(self) -> float:
        return self.half_life_days * DAY_MS

    @property
    def watch_ms(self) -> int:
        return int(self.watch_days * DAY_MS)


@dataclass
class Activity:
    """What one batch adds to the statistics, weights already scaled to ``ref_ms``.

    Build one per batch with ``Activity(config)`` and the ``add_*`` methods (or
    :meth:`add_event`); the first time added becomes ``ref_ms``.
    """

    config: RecommendationConfig = field(default_factory=RecommendationConfig)
    ref_ms: int | None = None
    popular: dict[str, float] = field(default_factory=dict)
    #: (category, product id) -> weight
    by_category: dict[tuple[str, str], float] = field(default_factory=dict)
    #: co-bought groups: every two distinct products of a group pair with the weight
    #: (an order's lines); the statistics expand them (Redis in its script), so building
    #: an activity costs one step per line, not one per pair
    baskets: list[tuple[list[str], float]] = field(default_factory=list)
    #: a product paired with each of some others with the weight (a cart addition)
    stars: list[tuple[str, list[str], float]] = field(default_factory=list)
    #: (product, user) -> (time ms, still watching: False after a purchase)
    watch: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    hours: list[float] = field(default_factory=lambda: [0.0] * HOURS)

    def __bool__(self) -> bool:
        return self.ref_ms is not None

    def _scaled(self, weight: float, at_ms: int) -> float:
        if self.ref_ms is None:
            self.ref_ms = at_ms
        return weight * float(2.0 ** ((at_ms - self.ref_ms) / self.config.half_life_ms))

    def _count(self, product_id: str, category: str | None, weight: float) -> None:
        self.popular[product_id] = self.popular.get(product_id, 0.0) + weight
        if category:
            at = (category, product_id)
            self.by_category[at] = self.by_category.get(at, 0.0) + weight

    @property
    def pairs(self) -> dict[tuple[str, str], float]:
        """(product, other product) -> weight, both directions: the baskets and stars
        expanded."""
        found: dict[tuple[str, str], float] = {}

        def pair(a: str, b: str, weight: float) -> None:
            for at in ((a, b), (b, a)):
                found[at] = found.get(at, 0.0) + weight

        for group, weight in self.baskets:
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    pair(a, b, weight)
        for product_id, others, weight in self.stars:
            for other in others:
                pair(product_id, other, weight)
        return found

    def _watch(self, product_id: str, user_id: str, at_ms: int, watching: bool) -> None:
        key = (product_id, user_id)
        if key not in self.watch or self.watch[key][0] <= at_ms:
            self.watch[key] = (at_ms, watching)

    def add_view(self, user_id: str, product_id: str, category: str | None, at_ms: int) -> None:
        """A product page seen: a little popularity; the user watches the product."""
        self._count(product_id, category, self._scaled(self.config.view_weight, at_ms))
        self._watch(product_id, user_id, at_ms, True)

    def add_cart(
        self,
        user_id: str,
        product_id: str,
        category: str | None,
        at_ms: int,
        *,
        in_cart: Sequence[str] = (),
    ) -> None:
        """A product carted beside ``in_cart`` (the cart's products before it, in the
        order they were added): it pairs with the last ``CART_PAIRS`` of them."""
        weight = self._scaled(self.config.cart_weight, at_ms)
        self._count(product_id, category, weight)
        others = [p for p in in_cart if p != product_id][-CART_PAIRS:]
        if others:
            self.stars.append((product_id, others, weight / len(others)))
        self._watch(product_id, user_id, at_ms, True)

    def add_purchase(
        self, user_id: str, lines: Sequence[tuple[str, str | None]], at_ms: int
    ) -> None:
        """An order's ``(product id, category)`` lines: popularity, pairs; a bought
        product is no longer watched by its buyer."""
        unit = self._scaled(1.0, at_ms)
        distinct = list(dict.fromkeys(pid for pid, _ in lines))[: self.config.max_basket]
        for product_id, category in dict(lines).items():
            self._count(product_id, category, unit)
            self._watch(product_id, user_id, at_ms, False)
        if len(distinct) > 1:
            self.baskets.append((distinct, unit / (len(distinct) - 1)))

    def add_engagement(self, local_hour: int, at_ms: int) -> None:
        """A mail opened or clicked at ``local_hour`` (0-23) in the user's time zone."""
        self.hours[local_hour % HOURS] += self._scaled(1.0, at_ms)

    def add_event(
        self, event: Event, *, in_cart: Sequence[str] = (), local_hour: int | None = None
    ) -> None:
        """Whatever ``event`` adds: views, carts (``in_cart``: the cart's products before
        it), purchases, and opens or clicks (when ``local_hour`` is known)."""
        props, at_ms = event.properties, event.ts_ms
        if event.type == "product_view":
            self.add_view(event.user_id, props["product_id"], props.get("category"), at_ms)
        elif event.type == "add_to_cart":
            pid, category = props["product_id"], props.get("category")
            self.add_cart(event.user_id, pid, category, at_ms, in_cart=in_cart)
        elif event.type == "purchase":
            lines = [(line["product_id"], line.get("category")) for line in props.get("items", [])]
            self.add_purchase(event.user_id, lines, at_ms)
        elif event.type in ("email_open", "email_click") and local_hour is not None:
            self.add_engagement(local_hour, at_ms)


@dataclass(frozen=True)
class Fetched:
    """One read of the statistics; the shop-wide parts are ``None`` when not asked for."""

    products: dict[str, Product]
    also_bought: dict[str, Ranked]
    popular: Ranked | None = None
    popular_by_category: dict[str, Ranked] | None = None
    send_hours: tuple[float, ...] | None = None

    def ranked_ids(self) -> set[str]:
        """Every product the rankings name."""
        rows: list[Ranked] = [*self.also_bought.values(), self.popular or ()]
        rows += (self.popular_by_category or {}).values()
        return {pid for row in rows for pid, _ in row}

    def to_lookups(self) -> Lookups:
        return Lookups(
            products=self.products,
            also_bought=self.also_bought,
            popular=self.popular or (),
            popular_by_category=self.popular_by_category or {},
            send_hours=self.send_hours or (),
        )


class Statistics(Protocol):
    async def record(self, activity: Activity) -> None:
        """Add one batch's activity (atomically on Redis: one script call)."""
        ...

    async def fetch(self, product_ids: Collection[str], *, shared: bool = True) -> Fetched:
        """The named products, their also-bought rows and, if ``shared``, popularity
        and send hours; plus the catalog entries of every product those rank."""
        ...

    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        """:meth:`fetch` as :class:`Lookups` (uncached: one read per call)."""
        ...

    async def watchers(self, product_id: str, now_ms: int) -> list[str]:
        """Users who viewed or carted ``product_id`` within ``watch_days`` before
        ``now_ms`` and have not bought it since, newest first."""
        ...

    async def forget(self, users: Mapping[str, Collection[str]]) -> None:
        """Take each user off the watcher lists of the products given (an erasure)."""
        ...


def ranked(scores: Mapping[str, float], factor: float = 1.0, limit: int | None = None) -> Ranked:
    """Scores as :data:`Ranked`: strongest first, ties by product id, times ``factor``."""
    # by id, then (stable) by score: the order of a (-score, id) key without building one
    order = sorted(sorted(scores.items()), key=itemgetter(1), reverse=True)[:limit]
    return tuple((pid, score * factor) for pid, score in order)


def _trim(zset: dict[str, float], keep: int) -> None:
    """Drop the weakest entries beyond ``keep`` (ties: the smallest id first, as Redis)."""
    if len(zset) > keep:
        for pid, _ in sorted(zset.items(), key=lambda i: (i[1], i[0]))[: len(zset) - keep]:
            del zset[pid]


class InMemoryStatistics:
    """Dict-backed :class:`Statistics` for ``simulate``, tests and the benchmark: the
    same arithmetic as ``record_stats.lua``, keyed by the same Redis key names."""

    def __init__(
        self,
        catalog: InMemoryCatalog | None = None,
        *,
        config: RecommendationConfig | None = None,
        clock_ms: Callable[[], int],
        keys: Keys | None = None,
    ) -> None:
        self.catalog = catalog or InMemoryCatalog()
        self.config = config or RecommendationConfig()
        self.clock_ms = clock_ms
        self.keys = keys or Keys()
        self.epoch: float | None = None
        self.zsets: dict[str, dict[str, float]] = {}
        self.hours = [0.0] * HOURS
        self.categories: set[str] = set()

    def _zset(self, key: str) -> dict[str, float]:
        return self.zsets.setdefault(key, {})

    def _scale(self, ref_ms: int) -> float:
        if self.epoch is None:
            self.epoch = ref_ms
        half_lives = (ref_ms - self.epoch) / self.config.half_life_ms
        if half_lives > RENORMALISE_AT:
            shift = int(half_lives)
            self._renormalise(2.0**-shift)
            self.epoch += shift * self.config.half_life_ms
            half_lives -= shift
        return float(2.0**half_lives)

    def _renormalise(self, factor: float) -> None:
        for key, zset in self.zsets.items():
            if ":watch:" not in key:
                for pid in zset:
                    zset[pid] *= factor
        self.hours = [h * factor for h in self.hours]

    async def record(self, activity: Activity) -> None:
        if activity.ref_ms is None:
            return
        scale, keys, top_k = self._scale(activity.ref_ms), self.keys, self.config.top_k
        touched: set[str] = set()
        increments: Iterable[tuple[str, str, float]] = [
            *((keys.popular(), pid, w) for pid, w in activity.popular.items()),
            *((keys.popular_in(c), pid, w) for (c, pid), w in activity.by_category.items()),
            *((keys.also_bought(a), b, w) for (a, b), w in activity.pairs.items()),
        ]
        for key, pid, weight in increments:
            zset = self._zset(key)
            zset[pid] = zset.get(pid, 0.0) + weight * scale
            touched.add(key)
        self.categories |= {c for c, _ in activity.by_category}
        for key in touched:
            _trim(self.zsets[key], top_k)
        self.hours = [h + w * scale for h, w in zip(self.hours, activity.hours, strict=True)]
        self._record_watchers(activity)

    def _record_watchers(self, activity: Activity) -> None:
        newest: dict[str, int] = {}
        for (pid, user), (at_ms, watching) in activity.watch.items():
            zset = self._zset(self.keys.watchers(pid))
            if not watching:
                zset.pop(user, None)
            elif at_ms > zset.get(user, -1):
                zset[user] = at_ms
            newest[pid] = max(newest.get(pid, at_ms), at_ms)
        for pid, at_ms in newest.items():
            zset = self.zsets[self.keys.watchers(pid)]
            for user in [u for u, t in zset.items() if t < at_ms - self.config.watch_ms]:
                del zset[user]
            _trim(zset, self.config.watchers_cap)

    async def watchers(self, product_id: str, now_ms: int) -> list[str]:
        since = now_ms - self.config.watch_ms
        zset = self.zsets.get(self.keys.watchers(product_id), {})
        return [user for user, at in ranked(zset) if at >= since]

    async def forget(self, users: Mapping[str, Collection[str]]) -> None:
        for user_id, products in users.items():
            for pid in products:
                self.zsets.get(self.keys.watchers(pid), {}).pop(user_id, None)

    def _to_now(self) -> float:
        if self.epoch is None:
            return 1.0
        return float(2.0 ** ((self.epoch - self.clock_ms()) / self.config.half_life_ms))

    async def fetch(self, product_ids: Collection[str], *, shared: bool = True) -> Fetched:
        factor, keys, top_k = self._to_now(), self.keys, self.config.top_k
        rows = {
            pid: ranked(self.zsets[keys.also_bought(pid)], factor, top_k)
            for pid in product_ids
            if self.zsets.get(keys.also_bought(pid))
        }
        fetched = Fetched({}, rows)
        if shared:
            by_category = {
                c: ranked(self._zset(keys.popular_in(c)), factor) for c in self.categories
            }
            hours = tuple(h * factor for h in self.hours) if any(self.hours) else ()
            popular = ranked(self._zset(keys.popular()), factor)
            fetched = Fetched({}, rows, popular, by_category, hours)
        wanted = set(product_ids) | fetched.ranked_ids()
        fetched.products.update(await self.catalog.get(wanted))
        return fetched

    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        return (await self.fetch(product_ids)).to_lookups()

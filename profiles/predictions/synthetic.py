"""A planted-truth shop history: users from a few behaviour groups with known rates,
as events of the contract, in time order, deterministic by seed.

Each user signs up at a random moment of the span and, while *alive*, visits the site
(sessions of page and product views, now and then an abandoned cart), buys (each order
a session ending in a purchase of ~15 lines from a catalog where the top tenth of items
makes ~45% of lines) and opens mail (sometimes clicking), as three Poisson processes
with the user's own rates. A constant per-user hazard ends all of it for good: the user
*churns*. Rates are the group's times a lognormal per-user factor.

:meth:`SyntheticHistory.truth` gives the Bayes-optimal chance that each user buys, or
churns (neither buys nor visits), within a window, knowing the user's true rates and
history up to the window's start but not whether they have already silently churned:
the best any model of the history can do, so a test can compare a model's AUC with it.

Memory is bounded by users: events are generated per user lazily and merged.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["GROUPS", "Group", "SyntheticHistory", "SyntheticUser", "Truth"]

_DAY = 86400.0
_CATALOG = 2000
_CATEGORIES = (
    "candles",
    "cards",
    "ceramics",
    "jewellery",
    "kitchen",
    "prints",
    "stationery",
    "textiles",
    "toys",
    "wellbeing",
)


@dataclass(frozen=True)
class Group:
    """A behaviour group; rates are per day while the user is alive."""

    name: str
    share: float
    purchase_rate: float
    session_rate: float
    open_rate: float
    churn_hazard: float
    lines_per_order: float


#: the planted groups (K-Means should find them)
GROUPS: tuple[Group, ...] = (
    Group("loyal", 0.16, 1 / 45, 1 / 6, 1 / 5, 1 / 900, 17.0),
    Group("occasional", 0.30, 1 / 100, 1 / 20, 1 / 25, 1 / 300, 14.0),
    Group("one-off", 0.33, 1 / 200, 1 / 45, 1 / 60, 1 / 60, 11.0),
    Group("browser", 0.25, 0.0, 1 / 8, 1 / 12, 1 / 250, 0.0),
)


@dataclass(frozen=True)
class SyntheticUser:
    user_id: str
    group: int
    signup: float
    purchase_rate: float
    session_rate: float
    open_rate: float
    churn_hazard: float
    #: when the user churns (epoch seconds; may lie after the span)
    churns_at: float


@dataclass(frozen=True)
class Truth:
    """True window probabilities of the users signed up by ``at``."""

    user_ids: tuple[str, ...]
    purchase: NDArray[np.float64]
    churn: NDArray[np.float64]
    #: had bought by ``at`` (churn is defined for them)
    past_buyer: NDArray[np.bool_]
    #: not churned by ``at`` (unknown to any model: it is what churn predicts)
    alive: NDArray[np.bool_]
    #: index into :data:`GROUPS`
    group: NDArray[np.int64]
    #: days since signup
    tenure_days: NDArray[np.float64]


class SyntheticHistory:
    """``users`` users over ``days`` days from ``start``."""

    def __init__(
        self,
        *,
        users: int,
        days: int,
        seed: int = 0,
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    ) -> None:
        self.seed = seed
        self.start = start
        self.end = start + timedelta(days=days)
        rng = random.Random(seed)
        weights = list(accumulate(g.share for g in GROUPS))
        t0, span = start.timestamp(), days * _DAY
        self.users = [self._user(i, rng, weights, t0, span) for i in range(users)]
        # item popularity: Zipf-like, so the top tenth of items make ~45% of lines
        popularity = [1.0 / (rank + 10) ** 0.8 for rank in range(_CATALOG)]
        self._popularity = list(accumulate(popularity))
        prices = random.Random(seed + 1)
        self._prices = [round(math.exp(prices.gauss(2.0, 0.6)), 2) for _ in range(_CATALOG)]

    def _user(
        self, i: int, rng: random.Random, weights: list[float], t0: float, span: float
    ) -> SyntheticUser:
        group = min(bisect.bisect_left(weights, rng.random() * weights[-1]), len(GROUPS) - 1)
        g = GROUPS[group]

        def factor(spread: float = 0.4) -> float:
            return math.exp(rng.gauss(0.0, spread))

        signup = t0 + rng.random() * span
        hazard = g.churn_hazard * factor()
        return SyntheticUser(
            user_id=f"u{i:06d}",
            group=group,
            signup=signup,
            purchase_rate=g.purchase_rate * factor(0.5),
            session_rate=g.session_rate * factor(),
            open_rate=g.open_rate * factor(),
            churn_hazard=hazard,
            churns_at=signup + rng.expovariate(hazard) * _DAY,
        )

    # -- the timeline ------------------------------------------------------------------

    def _times(self, user: SyntheticUser, rate: float, stream: int) -> Iterator[float]:
        if rate <= 0:
            return
        rng = random.Random((self.seed * 1_000_003 + int(user.user_id[1:])) * 8 + stream)
        stop = min(user.churns_at, self.end.timestamp())
        t = user.signup
        while True:
            t += rng.expovariate(rate) * _DAY
            if t > stop:
                return
            yield t

    def timeline(self, user: SyntheticUser) -> Iterator[tuple[float, str]]:
        """``(epoch seconds, kind)`` of the user's signup, sessions, orders and opens."""
        yield user.signup, "signup"
        yield from heapq.merge(
            ((t, "session") for t in self._times(user, user.session_rate, 0)),
            ((t, "order") for t in self._times(user, user.purchase_rate, 1)),
            ((t, "open") for t in self._times(user, user.open_rate, 2)),
        )

    def _user_events(self, user: SyntheticUser) -> Iterator[tuple[float, int, dict[str, Any]]]:
        """The user's events in time order (a session's events spread over minutes, so
        they wait in a small heap until the timeline has passed them)."""
        rng = random.Random((self.seed * 1_000_003 + int(user.user_id[1:])) * 8 + 7)
        end = self.end.timestamp()
        pending: list[tuple[float, int, dict[str, Any]]] = []
        n = 0
        for t, kind in self.timeline(user):
            while pending and pending[0][0] <= t:
                yield heapq.heappop(pending)
            for offset, event_type, props in self._content(kind, rng, user, n):
                n += 1
                if t + offset <= end:
                    event = self._event(user, n, t + offset, event_type, props)
                    heapq.heappush(pending, (t + offset, n, event))
        while pending:
            yield heapq.heappop(pending)

    def _event(
        self, user: SyntheticUser, n: int, t: float, event_type: str, props: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "event_id": f"{user.user_id}-{n}",
            "type": event_type,
            "user_id": user.user_id,
            "ts": datetime.fromtimestamp(round(t, 3), tz=UTC),
            "properties": props,
        }

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event of the span, in time order (``ts`` as an aware datetime)."""
        merged = heapq.merge(*(self._user_events(u) for u in self.users), key=lambda e: e[0])
        for _, _, event in merged:
            yield event

    # -- event content -------------------------------------------------------------------

    def _product(self, rng: random.Random) -> dict[str, Any]:
        index = min(
            bisect.bisect_left(self._popularity, rng.random() * self._popularity[-1]),
            _CATALOG - 1,
        )
        return {
            "product_id": f"p{index:04d}",
            "category": _CATEGORIES[index % len(_CATEGORIES)],
            "price": self._prices[index],
        }

    def _content(
        self, kind: str, rng: random.Random, user: SyntheticUser, n: int
    ) -> list[tuple[float, str, dict[str, Any]]]:
        if kind == "signup":
            address = f"{user.user_id}@example.com"
            return [(0.0, "signup", {"email": address, "consent": {"email": True}})]
        if kind == "open":
            message = {"message_id": f"m{user.user_id}-{n}"}
            click = {**message, "url": "https://shop.example/"}
            opened = [(0.0, "email_open", message)]
            return [*opened, (30.0, "email_click", click)] if rng.random() < 0.3 else opened
        out: list[tuple[float, str, dict[str, Any]]] = [
            (0.0, "page_view", {"url": "https://shop.example/"})
        ]
        views = [self._product(rng) for _ in range(1 + int(rng.expovariate(0.5)))]
        out += [(20.0 * (i + 1), "product_view", v) for i, v in enumerate(views)]
        if kind == "session":
            if rng.random() < 0.15:
                out.append((200.0, "add_to_cart", {**views[0], "quantity": 1}))
            return out
        return [*out, (300.0, "purchase", self._order(rng, user, n))]

    def _order(self, rng: random.Random, user: SyntheticUser, n: int) -> dict[str, Any]:
        mean_lines = GROUPS[user.group].lines_per_order
        count = max(1, round(rng.gammavariate(4.0, mean_lines / 4.0)))
        items = [
            {**self._product(rng), "quantity": 1 + int(rng.expovariate(1.5))} for _ in range(count)
        ]
        total = round(sum(i["price"] * i["quantity"] for i in items), 2)
        return {"order_id": f"o{user.user_id}-{n}", "items": items, "total": total}

    # -- planted truth -------------------------------------------------------------------

    def truth(self, at: datetime, horizon_days: float) -> Truth:
        """Bayes-optimal window probabilities for ``(at, at + horizon]``; see the module
        docstring."""
        cut = at.timestamp()
        ids, purchase, churn, buyers, groups, alive, tenure = [], [], [], [], [], [], []
        for user in self.users:
            if user.signup > cut:
                continue
            last, bought = user.signup, False
            for t, kind in self.timeline(user):
                if t > cut:
                    break
                last, bought = t, bought or kind == "order"
            p, c = _window(user, (cut - last) / _DAY, horizon_days)
            ids.append(user.user_id)
            purchase.append(p)
            churn.append(c)
            buyers.append(bought)
            groups.append(user.group)
            alive.append(user.churns_at > cut)
            tenure.append((cut - user.signup) / _DAY)
        return Truth(
            user_ids=tuple(ids),
            purchase=np.array(purchase),
            churn=np.array(churn),
            past_buyer=np.array(buyers, dtype=bool),
            alive=np.array(alive, dtype=bool),
            group=np.array(groups, dtype=np.int64),
            tenure_days=np.array(tenure),
        )


def _none_within(hazard: float, rate: float, horizon: float) -> float:
    """E[exp(-rate * min(T, horizon))] for T ~ Exp(hazard): the chance an alive user has
    no event of a ``rate`` process in the window (churning part-way through stops it)."""
    both = hazard + rate
    return hazard / both * (1 - math.exp(-both * horizon)) + math.exp(-both * horizon)


def _window(user: SyntheticUser, quiet_days: float, horizon: float) -> tuple[float, float]:
    """(P(buys), P(churns)) in the window, given ``quiet_days`` without any event."""
    hazard = user.churn_hazard
    site = user.session_rate + user.purchase_rate
    total = site + user.open_rate
    survive = math.exp(-(hazard + total) * quiet_days)
    alive = survive / (survive + hazard / (hazard + total) * (1 - survive))
    buys = alive * (1 - _none_within(hazard, user.purchase_rate, horizon))
    quiet = 1 - alive * (1 - _none_within(hazard, site, horizon))
    return buys, quiet

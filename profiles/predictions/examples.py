"""Training examples by rolling origin: feature rows at several past cutoffs, each
labelled by what the user did in the horizon after it.

Cutoffs sit at ``as_of - horizon - i * step`` (``i = 0 .. count - 1``), so every label
window ends by ``as_of`` and is fully known; the latest cutoff is the held-out test fold,
the one before it calibrates, the rest train. Only events with ``ts <= as_of`` are read:
anything later is skipped, so appending future events cannot change a model.

One pass over the stream: events are replayed into profiles with
:func:`profiles.apply_event` (the worker's fold) and, as the stream passes a cutoff,
:func:`~profiles.predictions.features.feature_vector` is taken for every user seen by
then. Memory is bounded by users (one profile each, plus one row per user and cutoff),
not by events.

The stream is assumed in time order, as a topic partition is per user. A *late* event
(older than a cutoff already taken) still updates the profile and any label window it
falls in, but the rows taken before it arrived stay as they were; the count is kept in
:attr:`Examples.late_events` and should be near zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from profiles.events import Event, Purchase
from profiles.features import SITE_EVENTS
from profiles.fold import apply_event
from profiles.model import Profile, ScoringConfig
from profiles.predictions.features import FEATURES, feature_vector

__all__ = ["Examples", "Labelled", "Rows", "build_examples", "cutoff_times"]

Floats = NDArray[np.float64]
_HAS_PURCHASED = FEATURES.index("has_purchased")


@dataclass(frozen=True)
class Rows:
    """Feature rows of every user known at ``at`` (``features[i]`` is ``user_ids[i]``)."""

    at: datetime
    user_ids: tuple[str, ...]
    features: Floats


@dataclass(frozen=True)
class Labelled:
    """One cutoff's rows and what each user did in ``(at, at + horizon]``."""

    rows: Rows
    #: bought at least once within the horizon
    purchased: NDArray[np.bool_]
    #: orders and their total within the horizon
    orders: Floats
    revenue: Floats
    #: any site event within the horizon (not mail)
    active: NDArray[np.bool_]
    #: revenue in the horizon *before* the cutoff (the naive value baseline)
    prior_revenue: Floats

    @property
    def past_buyers(self) -> NDArray[np.bool_]:
        """The rows churn is defined for: users who had bought by the cutoff."""
        flags: NDArray[np.bool_] = self.rows.features[:, _HAS_PURCHASED] > 0
        return flags

    @property
    def churned(self) -> NDArray[np.bool_]:
        """Neither bought nor active within the horizon (meaningful for past buyers)."""
        quiet: NDArray[np.bool_] = ~self.purchased & ~self.active
        return quiet


@dataclass(frozen=True)
class Examples:
    """Everything one pass over a history yields."""

    as_of: datetime
    horizon_days: int
    #: labelled cutoffs, oldest first (the last one is the held-out test fold)
    cutoffs: list[Labelled]
    #: every user's rows at ``as_of`` (clusters and training distributions use them)
    current: Rows
    events_read: int
    #: the oldest event read (``None`` when none was)
    first_event: datetime | None
    #: events older than a cutoff already taken (see the module docstring)
    late_events: int
    #: events after ``as_of``, skipped
    future_events: int


def cutoff_times(
    as_of: datetime, *, horizon_days: int, count: int, step_days: int | None = None
) -> list[datetime]:
    """The ``count`` cutoffs, oldest first; ``step_days`` defaults to the horizon, so
    label windows do not overlap."""
    horizon = timedelta(days=horizon_days)
    step = timedelta(days=step_days if step_days is not None else horizon_days)
    return [as_of - horizon - i * step for i in reversed(range(count))]


@dataclass
class _Window:
    """Label accumulators of one taken cutoff."""

    rows: Rows
    end: datetime
    index: dict[str, int]
    prior: Floats
    purchased: NDArray[np.bool_] = field(init=False)
    orders: Floats = field(init=False)
    revenue: Floats = field(init=False)
    active: NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.index)
        self.purchased = np.zeros(n, dtype=bool)
        self.orders = np.zeros(n)
        self.revenue = np.zeros(n)
        self.active = np.zeros(n, dtype=bool)

    def note(self, event: Event, total: float | None) -> None:
        i = self.index.get(event.user_id)
        if i is None or not self.rows.at < event.ts <= self.end:
            return
        if total is not None:
            self.purchased[i] = True
            self.orders[i] += 1
            self.revenue[i] += total
        if event.type in SITE_EVENTS:
            self.active[i] = True

    def labelled(self) -> Labelled:
        return Labelled(
            rows=self.rows,
            purchased=self.purchased,
            orders=self.orders,
            revenue=self.revenue,
            active=self.active,
            prior_revenue=self.prior,
        )


class _Replay:
    """The state of the single pass."""

    def __init__(self, cutoffs: list[datetime], horizon: timedelta, scoring: ScoringConfig):
        self.pending = list(cutoffs)
        self.horizon = horizon
        self.scoring = scoring
        self.profiles: dict[str, Profile] = {}
        #: revenue before each pending cutoff, within the horizon
        self.prior: dict[datetime, dict[str, float]] = {c: {} for c in cutoffs}
        self.windows: list[_Window] = []
        self.taken: datetime | None = None
        self.first: datetime | None = None
        self.read = self.late = 0

    def feed(self, event: Event) -> None:
        while self.pending and event.ts > self.pending[0]:
            self.take(self.pending.pop(0))
        self.read += 1
        if self.first is None or event.ts < self.first:
            self.first = event.ts
        if self.taken is not None and event.ts <= self.taken:
            self.late += 1
        total = _purchase_total(event)
        if total is not None:
            for cutoff, spent in self.prior.items():
                if cutoff - self.horizon < event.ts <= cutoff:
                    spent[event.user_id] = spent.get(event.user_id, 0.0) + total
        for window in self.windows:
            window.note(event, total)
        profile = apply_event(self.profiles.get(event.user_id), event, self.scoring, in_place=True)
        if profile is None:
            self.profiles.pop(event.user_id, None)
        else:
            self.profiles[event.user_id] = profile

    def rows(self, at: datetime) -> Rows:
        users = tuple(u for u, p in self.profiles.items() if p.first_seen <= at)
        matrix = np.array(
            [feature_vector(self.profiles[u], at, self.scoring) for u in users],
            dtype=np.float64,
        ).reshape(len(users), len(FEATURES))
        return Rows(at=at, user_ids=users, features=matrix)

    def take(self, cutoff: datetime) -> None:
        rows = self.rows(cutoff)
        spent = self.prior.pop(cutoff)
        prior = np.array([spent.get(u, 0.0) for u in rows.user_ids])
        index = {u: i for i, u in enumerate(rows.user_ids)}
        self.windows.append(_Window(rows, cutoff + self.horizon, index, prior))
        self.taken = cutoff


def _purchase_total(event: Event) -> float | None:
    typed: Any = event.typed
    return typed.total if isinstance(typed, Purchase) else None


def build_examples(
    events: Iterable[Event],
    *,
    as_of: datetime,
    horizon_days: int,
    cutoffs: int,
    scoring: ScoringConfig,
    step_days: int | None = None,
) -> Examples:
    """Replay ``events`` once (time order assumed) into labelled cutoff rows."""
    times = cutoff_times(as_of, horizon_days=horizon_days, count=cutoffs, step_days=step_days)
    replay = _Replay(times, timedelta(days=horizon_days), scoring)
    future = 0
    for event in events:
        if event.ts > as_of:
            future += 1
            continue
        replay.feed(event)
    while replay.pending:
        replay.take(replay.pending.pop(0))
    return Examples(
        as_of=as_of,
        horizon_days=horizon_days,
        cutoffs=[w.labelled() for w in replay.windows],
        current=replay.rows(as_of),
        events_read=replay.read,
        first_event=replay.first,
        late_events=replay.late,
        future_events=future,
    )

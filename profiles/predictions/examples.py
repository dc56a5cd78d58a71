"""Training examples by rolling origin: feature rows at several past cutoffs, each
labelled by what the user did in the horizon after it.

Cutoffs sit at ``as_of - horizon - i * step`` (``i = 0 .. count - 1``). Each user's row
of a cutoff is taken at the cutoff minus the user's own :func:`row_offset` (a fixed
moment of the day before it, from a hash of the user id), and their label window is the
horizon after that moment. Features count whole UTC days up to "now", so rows all taken
at midnight (where ``--as-of`` usually is) would see a "7 day" window of 6 days while the
live worker sees 6 to 7; spread over the day, training sees what live scoring sees. Every
label window still ends by ``as_of`` and is fully known; the latest cutoff is the
held-out test fold, the one before it calibrates, the rest train. Only events with
``ts <= as_of`` are read: anything later is skipped, so appending future events cannot
change a model.

One pass over the stream: events are replayed into profiles with
:func:`profiles.apply_event` (the worker's fold), and a user's row is taken with
:func:`~profiles.predictions.features.feature_vector` just before the first of their
events after their row moment (or, for users with none, when the stream passes the
cutoff). Memory is bounded by users (one profile each, plus one row per user and
cutoff), not by events.

The same pass keeps :attr:`Examples.reference`: rows taken the way the live worker
scores, right after an event (the profile with the event applied, as of its time), over
the last horizon before ``as_of``. Drift monitoring compares the worker's rows with
these, so they must be the same population; rows as of ``as_of`` of every user would be
mostly idle users, nothing like what the worker scores. Memory is bounded by a
deterministic sample: the :data:`REFERENCE_ROWS` events with the smallest hash of their
id, an unbiased sample of the rows after every event.

The stream is assumed in time order, as a topic partition is per user and the topic
reader merges partitions by time. A *late* event (older than an event read before it)
still updates the profile and any label window it falls in, but rows taken before it
arrived stay as they were; :attr:`Examples.late_events` counts them (training refuses a
history with more than 1%).
"""

from __future__ import annotations

import hashlib
import heapq
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

__all__ = [
    "REFERENCE_ROWS",
    "Examples",
    "Labelled",
    "Rows",
    "build_examples",
    "cutoff_times",
    "row_offset",
]

Floats = NDArray[np.float64]
_HAS_PURCHASED = FEATURES.index("has_purchased")
_DAY = timedelta(days=1)
#: the most rows :attr:`Examples.reference` keeps: as many as the worker's drift window
#: (PSI of 10 bins against 10,000 reference rows has a sampling error near 0.001, far
#: below the 0.1 that means "watch"); each row costs a feature vector during the replay
REFERENCE_ROWS = 10_000


@dataclass(frozen=True)
class Rows:
    """Feature rows of every user known at ``at`` (``features[i]`` is ``user_ids[i]``).

    For a labelled cutoff, user ``u``'s row is as of ``at - row_offset(u)``, and only
    users seen by then have one."""

    at: datetime
    user_ids: tuple[str, ...]
    features: Floats


@dataclass(frozen=True)
class Labelled:
    """One cutoff's rows and what each user did in the horizon after their row (``(m, m +
    horizon]`` with ``m = rows.at - row_offset(user)``)."""

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
    #: every user's rows at ``as_of`` (clusters use them)
    current: Rows
    #: rows right after sampled events of the last horizon (see the module docstring);
    #: the training distributions drift monitoring compares live rows with
    reference: Floats
    events_read: int
    #: the oldest event read (``None`` when none was)
    first_event: datetime | None
    #: events older than an event read before them (see the module docstring)
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


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def row_offset(user_id: str) -> timedelta:
    """How long before each cutoff ``user_id``'s training row is taken: whole seconds in
    ``[0, 24h)``, fixed by a hash of the id (so the same history gives the same rows)."""
    return timedelta(seconds=_hash(user_id) % 86400)


class _Offsets(dict[str, timedelta]):
    """:func:`row_offset` of each user, computed once (it is asked for at every event)."""

    def __missing__(self, user_id: str) -> timedelta:
        offset = self[user_id] = row_offset(user_id)
        return offset


@dataclass
class _Window:
    """One cutoff: the rows taken so far and their label accumulators (by user)."""

    at: datetime
    horizon: timedelta
    offsets: _Offsets
    #: user -> row; filled in the day before ``at``, completed when the stream passes it
    rows: dict[str, Floats] = field(default_factory=dict)
    prior: dict[str, float] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    revenue: dict[str, float] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    #: the stream has passed ``at``: every row is taken
    closed: bool = False

    def moment(self, user_id: str) -> datetime:
        return self.at - self.offsets[user_id]

    def take(self, user_id: str, profile: Profile | None, scoring: ScoringConfig) -> None:
        """Take ``user_id``'s row if they were known at their moment; the caller makes
        sure the profile holds nothing later than that moment."""
        moment = self.moment(user_id)
        if user_id not in self.rows and profile is not None and profile.first_seen <= moment:
            row = feature_vector(profile, moment, scoring)
            self.rows[user_id] = np.asarray(row, dtype=np.float64)

    def note(self, event: Event, total: float | None) -> None:
        user = event.user_id
        if user not in self.rows:
            if total is None:
                return
            moment = self.moment(user)
            if moment - self.horizon < event.ts <= moment:
                self.prior[user] = self.prior.get(user, 0.0) + total
            return
        moment = self.moment(user)
        if not moment < event.ts <= moment + self.horizon:
            return
        if total is not None:
            self.orders[user] = self.orders.get(user, 0) + 1
            self.revenue[user] = self.revenue.get(user, 0.0) + total
        if event.type in SITE_EVENTS:
            self.active.add(user)

    def labelled(self) -> Labelled:
        users = tuple(self.rows)
        matrix = np.array([self.rows[u] for u in users], dtype=np.float64)
        orders = np.array([self.orders.get(u, 0) for u in users], dtype=np.float64)
        return Labelled(
            rows=Rows(self.at, users, matrix.reshape(len(users), len(FEATURES))),
            purchased=orders > 0,
            orders=orders,
            revenue=np.array([self.revenue.get(u, 0.0) for u in users], dtype=np.float64),
            active=np.array([u in self.active for u in users], dtype=bool),
            prior_revenue=np.array([self.prior.get(u, 0.0) for u in users], dtype=np.float64),
        )


class _Reference:
    """The bottom-``size`` sample, by hash of the event id, of rows right after events
    from ``start`` on."""

    def __init__(self, start: datetime, size: int) -> None:
        self.start = start
        self.size = size
        #: (-hash, order, row): the largest hash on top, the one to drop
        self.heap: list[tuple[int, int, Floats]] = []
        self.seen = 0

    def offer(self, event: Event, profile: Profile | None, scoring: ScoringConfig) -> None:
        if event.ts <= self.start or profile is None or not self.size:
            return
        key = _hash(event.event_id)
        if len(self.heap) >= self.size and key >= -self.heap[0][0]:
            return
        self.seen += 1
        row = np.asarray(feature_vector(profile, event.ts, scoring), dtype=np.float64)
        heapq.heappush(self.heap, (-key, self.seen, row))
        if len(self.heap) > self.size:
            heapq.heappop(self.heap)

    def rows(self) -> Floats:
        ordered = sorted(self.heap, key=lambda item: (-item[0], item[1]))
        matrix = np.array([row for _, _, row in ordered], dtype=np.float64)
        return matrix.reshape(len(ordered), len(FEATURES))


class _Replay:
    """The state of the single pass."""

    def __init__(
        self,
        cutoffs: list[datetime],
        horizon: timedelta,
        scoring: ScoringConfig,
        reference: _Reference,
    ) -> None:
        offsets = _Offsets()
        self.windows = [_Window(c, horizon, offsets) for c in cutoffs]
        self.scoring = scoring
        self.reference = reference
        self.profiles: dict[str, Profile] = {}
        self.newest: datetime | None = None
        self.first: datetime | None = None
        self.read = self.late = 0

    def feed(self, event: Event) -> None:
        self.close(before=event.ts)
        self.read += 1
        if self.first is None or event.ts < self.first:
            self.first = event.ts
        if self.newest is not None and event.ts < self.newest:
            self.late += 1
        else:
            self.newest = event.ts
        user = event.user_id
        total = _purchase_total(event)
        for window in self.windows:
            # a user's moment is within the day before the cutoff: check the time first
            opened = not window.closed and event.ts > window.at - _DAY
            if opened and event.ts > window.moment(user):
                window.take(user, self.profiles.get(user), self.scoring)
            window.note(event, total)
        profile = apply_event(self.profiles.get(user), event, self.scoring, in_place=True)
        if profile is None:
            self.profiles.pop(user, None)
        else:
            self.profiles[user] = profile
        self.reference.offer(event, profile, self.scoring)

    def close(self, *, before: datetime | None = None) -> None:
        """Complete every open cutoff earlier than ``before`` (all when ``None``): take
        the rows of users with no event since their moment."""
        for window in self.windows:
            if window.closed or (before is not None and before <= window.at):
                continue
            for user, profile in self.profiles.items():
                window.take(user, profile, self.scoring)
            window.closed = True

    def rows(self, at: datetime) -> Rows:
        users = tuple(u for u, p in self.profiles.items() if p.first_seen <= at)
        matrix = np.array(
            [feature_vector(self.profiles[u], at, self.scoring) for u in users],
            dtype=np.float64,
        ).reshape(len(users), len(FEATURES))
        return Rows(at=at, user_ids=users, features=matrix)


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
    reference_rows: int = REFERENCE_ROWS,
) -> Examples:
    """Replay ``events`` once (time order assumed) into labelled cutoff rows, the rows
    as of ``as_of`` and at most ``reference_rows`` reference rows."""
    times = cutoff_times(as_of, horizon_days=horizon_days, count=cutoffs, step_days=step_days)
    horizon = timedelta(days=horizon_days)
    reference = _Reference(as_of - horizon, reference_rows)
    replay = _Replay(times, horizon, scoring, reference)
    future = 0
    for event in events:
        if event.ts > as_of:
            future += 1
            continue
        replay.feed(event)
    replay.close()
    return Examples(
        as_of=as_of,
        horizon_days=horizon_days,
        cutoffs=[w.labelled() for w in replay.windows],
        current=replay.rows(as_of),
        reference=reference.rows(),
        events_read=replay.read,
        first_event=replay.first,
        late_events=replay.late,
        future_events=future,
    )

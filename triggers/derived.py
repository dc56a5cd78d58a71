"""``profile.rfm`` and ``profile.lifecycle``: purchase recency, frequency and money, and
the lifecycle stage, computed from the stored profile at the moment of evaluation.

Both change with time alone (a purchase leaves a rolling window at a UTC midnight; a
stage ends some days after the last purchase), so each read notes, in the evaluation's
:class:`~triggers.conditions.TimeNotes`, the next moment the value read changes: the
re-check timer then fires in time whatever the value is compared with.
``rfm.days_since_last_purchase`` is ``days_since(profile.last_purchase_at)`` and notes
its flips as that does (when ordered against a number).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from profiles import LifecycleConfig, Profile
from profiles.features import Stage, day_number, day_start, lifecycle_stage, window_totals

if TYPE_CHECKING:  # conditions imports reads, which imports this module
    from triggers.conditions import TimeNotes

__all__ = ["RFM_FIELDS", "Rfm", "lifecycle"]

#: the attributes of ``profile.rfm``
RFM_FIELDS = (
    "days_since_last_purchase",
    "purchases_30d",
    "purchases_90d",
    "purchases_365d",
    "revenue_30d",
    "revenue_90d",
    "revenue_365d",
    "average_order_value",
)


class Rfm:
    """``profile.rfm``: rolling purchase figures at ``now`` (windows include today, UTC)."""

    __slots__ = ("_days_since", "_notes", "_profile", "_today")

    def __init__(
        self,
        profile: Profile,
        now: datetime,
        notes: TimeNotes | None,
        days_since: Callable[[Any], float | None],
    ) -> None:
        self._profile, self._notes, self._days_since = profile, notes, days_since
        self._today = day_number(now)

    def _window(self, window: int) -> tuple[int, float]:
        orders, revenue, changes = window_totals(self._profile.purchase_days, self._today, window)
        if self._notes is not None and changes >= 0:
            self._notes.note(day_start(changes))
        return orders, revenue

    @property
    def days_since_last_purchase(self) -> float | None:
        """Days since the last purchase (fractional); ``None`` if the user never bought."""
        return self._days_since(self._profile.last_purchase_at)

    @property
    def purchases_30d(self) -> int:
        return self._window(30)[0]

    @property
    def purchases_90d(self) -> int:
        return self._window(90)[0]

    @property
    def purchases_365d(self) -> int:
        return self._window(365)[0]

    @property
    def revenue_30d(self) -> float:
        return self._window(30)[1]

    @property
    def revenue_90d(self) -> float:
        return self._window(90)[1]

    @property
    def revenue_365d(self) -> float:
        return self._window(365)[1]

    @property
    def average_order_value(self) -> float:
        """Lifetime revenue per order (0 before the first)."""
        count = self._profile.purchase_count
        return round(self._profile.total_spent / count, 2) if count else 0.0


def lifecycle(
    profile: Profile, now: datetime, config: LifecycleConfig, notes: TimeNotes | None
) -> Stage:
    """The user's stage at ``now``, noting when it next changes by time alone."""
    stage, changes = lifecycle_stage(profile.first_seen, profile.recency_at, now, config)
    if notes is not None and changes is not None:
        notes.note(changes)
    return stage

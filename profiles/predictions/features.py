"""The one feature definition every prediction uses: a profile, as of a moment, as a
fixed vector of named numbers.

Training replays history through the same fold as the worker (:func:`profiles.apply_event`)
and calls :func:`feature_vector` at each cutoff; the live worker calls it on the profile it
just saved. So a user's features are the same whichever way they were built (a test
asserts it), and a model sees in production exactly what it was trained on.

Every feature is a plain float computed from stored profile fields at ``now``: windows
count the UTC days up to ``now``'s day, durations are fractional days. Day windows read
the profile's per-day buckets (purchases for a year, activity for 90 days), so old
buckets that merged under the caps count a little longer than their true day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from profiles.features import (
    ACTIVITY_HORIZON_DAYS,
    activity_totals,
    day_number,
    window_totals,
)
from profiles.model import Profile, ScoringConfig

__all__ = ["FEATURES", "FeatureRow", "feature_rows", "feature_vector"]

#: the feature names, in vector order (README "Predictions" lists what each means)
FEATURES: tuple[str, ...] = (
    "recency_days",
    "has_purchased",
    "frequency_30d",
    "frequency_90d",
    "frequency_365d",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "orders_lifetime",
    "revenue_lifetime",
    "average_order_value",
    "tenure_days",
    "days_since_last_seen",
    "active_days_7d",
    "active_days_30d",
    "active_days_90d",
    "views_7d",
    "views_30d",
    "views_90d",
    "carts_7d",
    "carts_30d",
    "carts_90d",
    "opens_30d",
    "opens_90d",
    "clicks_30d",
    "clicks_90d",
    "days_since_last_open",
    "days_since_last_click",
    "category_count",
    "top_category_share",
    "engagement_score",
    "email_consent",
    "unsubscribed",
    "cart_value",
    "cart_items",
)

FeatureRow = list[float]

_DAY = 86400.0
#: ``days_since_last_open`` / ``_click`` when none is within the activity horizon
_NEVER_DAYS = float(ACTIVITY_HORIZON_DAYS)


def feature_vector(profile: Profile, now: datetime, scoring: ScoringConfig) -> FeatureRow:
    """``profile``'s features as of ``now``, in :data:`FEATURES` order."""
    today = day_number(now)
    tenure = max(0.0, (now - profile.first_seen).total_seconds() / _DAY)
    bought = profile.last_purchase_at
    recency = (now - bought).total_seconds() / _DAY if bought is not None else tenure
    rfm: list[float] = []
    for window in (30, 90, 365):
        orders, revenue, _ = window_totals(profile.purchase_days, today, window)
        rfm += [orders, revenue]
    count = profile.purchase_count
    activity = [activity_totals(profile.activity_days, today, w) for w in (7, 30, 90)]
    affinity = profile.affinity
    total_affinity = sum(affinity.values())
    return [
        max(0.0, recency),
        1.0 if count else 0.0,
        rfm[0],
        rfm[2],
        rfm[4],
        rfm[1],
        rfm[3],
        rfm[5],
        float(count),
        profile.total_spent,
        round(profile.total_spent / count, 2) if count else 0.0,
        tenure,
        max(0.0, (now - profile.last_seen).total_seconds() / _DAY),
        *(float(a[0]) for a in activity),
        *(float(a[1]) for a in activity),
        *(float(a[2]) for a in activity),
        float(activity[1][3]),
        float(activity[2][3]),
        float(activity[1][4]),
        float(activity[2][4]),
        _days_since(profile, today, slot=4),
        _days_since(profile, today, slot=5),
        float(len(affinity)),
        max(affinity.values()) / total_affinity if total_affinity > 0 else 0.0,
        profile.score_now(now, scoring),
        1.0 if profile.email_consent else 0.0,
        1.0 if profile.counts.get("unsubscribe", 0) else 0.0,
        profile.cart.total,
        float(profile.cart.item_count),
    ]


def _days_since(profile: Profile, today: int, *, slot: int) -> float:
    """Whole days since the newest activity bucket with a count at ``slot`` (opens 4,
    clicks 5), or the horizon when there is none."""
    for bucket in reversed(profile.activity_days):
        if bucket[slot] and today - bucket[0] >= 0:
            return float(min(today - bucket[0], ACTIVITY_HORIZON_DAYS))
    return _NEVER_DAYS


def feature_rows(
    profiles: Sequence[Profile], now: datetime, scoring: ScoringConfig
) -> list[FeatureRow]:
    """:func:`feature_vector` of each profile, in order."""
    return [feature_vector(p, now, scoring) for p in profiles]

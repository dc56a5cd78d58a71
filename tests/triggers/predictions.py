"""A small, fixed stand-in for a trained model (the :class:`profiles.predictions.Model`
protocol), whose scores follow plainly from a user's features:

- ``churn_probability``: days since the last purchase (or since first seen) / 10, at most 1;
- ``purchase_probability``: 0.2 + 0.3 per cart addition of the last 30 days, at most 1;
- ``expected_value``: ``purchase_probability`` times the average order value;
- ``cluster``: ``cart fillers`` with items in the cart, else ``lapsed buyers`` for a
  buyer whose churn is above 0.7, else ``browsers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from profiles.predictions import FEATURES, Distribution, FeatureRow, Reason, Scores, Target

__all__ = ["FixedModel"]

_AT = {name: index for index, name in enumerate(FEATURES)}


@dataclass
class FixedModel:
    version: str = "fixed-1"
    clusters: tuple[str, ...] = ("cart fillers", "lapsed buyers", "browsers")
    features: tuple[str, ...] = FEATURES
    #: raise on every call to :meth:`score`
    broken: bool = False
    #: the number of rows of each call to :meth:`score`
    calls: list[int] = field(default_factory=list)

    def score(self, rows: Sequence[FeatureRow]) -> list[Scores]:
        self.calls.append(len(rows))
        if self.broken:
            raise RuntimeError("the model broke")
        return [self._one(row) for row in rows]

    @staticmethod
    def _one(row: FeatureRow) -> Scores:
        churn = min(1.0, row[_AT["recency_days"]] / 10)
        purchase = min(1.0, 0.2 + 0.3 * row[_AT["carts_30d"]])
        if row[_AT["cart_items"]] > 0:
            cluster = "cart fillers"
        elif row[_AT["has_purchased"]] and churn > 0.7:
            cluster = "lapsed buyers"
        else:
            cluster = "browsers"
        value = purchase * row[_AT["average_order_value"]]
        return Scores(purchase, churn, value, cluster)

    def reasons(self, row: FeatureRow, target: Target, top: int = 3) -> list[Reason]:
        name = "recency_days" if target == "churn_probability" else "carts_30d"
        return [Reason(name, row[_AT[name]], 1.0)][:top]

    def reason_method(self, target: Target) -> str:
        return "fixed"

    def distributions(self) -> dict[str, Distribution]:
        return {}

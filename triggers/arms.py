"""The experiment counters: how they are named in the store and read back per arm.

Every send (and every send a holdout withholds) is an *exposure* of one arm of one
experiment; opens, clicks and purchases attributed to it count for that arm (see
:mod:`profiles.attribution`). The counts are store counters (see
:class:`profiles.ProfileWrite`), one field per experiment, arm and metric, added in the
same write as the profile whose change they count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = [
    "COUNTER_PREFIX",
    "DEFAULT_ARM",
    "HOLDOUT",
    "METRICS",
    "ArmCounts",
    "arm_counts",
    "counter_field",
    "parse_counter_field",
]

#: the start of every experiment counter field (the store may hold other counters)
COUNTER_PREFIX = "x\x1f"
#: the arm of a rule without variants
DEFAULT_ARM = "default"
#: the arm of users an experiment's ``holdout`` share keeps from the mail
HOLDOUT = "holdout"
_SEP = "\x1f"


@dataclass(frozen=True)
class ArmCounts:
    """What one arm of one experiment did."""

    #: sends; for the holdout arm, the sends it withheld
    exposed: int = 0
    #: exposures opened (a click counts as an open too)
    opened: int = 0
    clicked: int = 0
    #: exposures followed by at least one attributed purchase
    converted: int = 0
    #: the attributed purchases' totals
    revenue: float = 0.0
    #: the sum over exposures of (the exposure's revenue) squared
    revenue_sq: float = 0.0


#: the metrics of :class:`ArmCounts`, in order
METRICS = tuple(f.name for f in fields(ArmCounts))


def counter_field(experiment: str, arm: str, metric: str) -> str:
    """The store counter of ``metric`` for ``arm`` of ``experiment``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    return f"{COUNTER_PREFIX}{experiment}{_SEP}{arm}{_SEP}{metric}"


def parse_counter_field(field: str) -> tuple[str, str, str] | None:
    """(experiment, arm, metric) of a field :func:`counter_field` made; ``None`` for others."""
    if not field.startswith(COUNTER_PREFIX):
        return None
    parts = field[len(COUNTER_PREFIX) :].split(_SEP)
    if len(parts) != 3 or parts[2] not in METRICS:
        return None
    experiment, arm, metric = parts
    return experiment, arm, metric


def arm_counts(counters: Mapping[str, float]) -> dict[str, dict[str, ArmCounts]]:
    """Experiment -> arm -> counts, from store counters (other fields are ignored)."""
    raw: dict[str, dict[str, dict[str, float]]] = {}
    for field, value in counters.items():
        parsed = parse_counter_field(field)
        if parsed is None:
            continue
        experiment, arm, metric = parsed
        arm_raw = raw.setdefault(experiment, {}).setdefault(arm, {})
        arm_raw[metric] = arm_raw.get(metric, 0.0) + value
    return {
        experiment: {arm: _counts(values) for arm, values in sorted(arms.items())}
        for experiment, arms in sorted(raw.items())
    }


def _counts(values: Mapping[str, float]) -> ArmCounts:
    whole = {m: round(values.get(m, 0.0)) for m in ("exposed", "opened", "clicked", "converted")}
    return ArmCounts(
        **whole, revenue=values.get("revenue", 0.0), revenue_sq=values.get("revenue_sq", 0.0)
    )

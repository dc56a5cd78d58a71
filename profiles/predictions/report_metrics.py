"""The numbers in a training report, computed from held-out labels and predictions.

Everything here is a pure function of arrays. A metric that is undefined for the data (an
AUC on labels of one class, anything on no rows) is returned as ``None`` together with the
reason, never as NaN or a made-up value. Ties in the predictions are treated as ties:
neither the top-decile lift nor the gains curve depends on how equal scores happen to be
ordered, so a constant prediction gets a lift of exactly 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

from profiles.predictions.fit import value_errors

__all__ = [
    "HIGHER_IS_BETTER",
    "METRIC_LABELS",
    "VALUE_LABELS",
    "CalibrationBin",
    "ProbabilityMetrics",
    "ValueMetrics",
    "calibration_bins",
    "comparable",
    "gains_curve",
    "lift_at",
    "probability_metrics",
    "shortfalls",
    "value_metrics",
]

Floats = NDArray[np.float64]

#: probability metrics in report order, with their display names
METRIC_LABELS: dict[str, str] = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "log_loss": "log-loss",
    "brier": "Brier",
    "lift_top_decile": "lift top 10%",
}
#: value metrics in report order, with their display names
VALUE_LABELS: dict[str, str] = {
    "mae": "MAE",
    "rmse": "RMSE",
    "poisson_deviance": "Poisson deviance",
}
#: the metrics where a larger number is the better model (the others are losses)
HIGHER_IS_BETTER: frozenset[str] = frozenset({"roc_auc", "pr_auc", "lift_top_decile"})

_TOP_DECILE = 0.1
_NO_ROWS = "no held-out rows"


@dataclass(frozen=True)
class ProbabilityMetrics:
    """One scorer's metrics on the held-out rows; ``undefined`` maps each metric that
    is ``None`` to why."""

    values: dict[str, float | None]
    undefined: dict[str, str]


@dataclass(frozen=True)
class CalibrationBin:
    """Rows whose prediction falls in one quantile bin: how many, the mean predicted
    probability and the observed positive rate."""

    rows: int
    low: float
    high: float
    mean_predicted: float
    observed: float


@dataclass(frozen=True)
class ValueMetrics:
    """Errors of a value prediction; both ``None`` (with ``undefined``) on no rows."""

    values: dict[str, float | None]
    undefined: str | None


def _labels(y_true: NDArray[np.generic]) -> Floats:
    return np.asarray(y_true, dtype=np.float64).ravel()


def probability_metrics(y_true: NDArray[np.generic], predicted: Floats) -> ProbabilityMetrics:
    """ROC AUC, PR AUC (average precision), log-loss, Brier score and top-decile lift."""
    y = _labels(y_true)
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if y.size == 0:
        return ProbabilityMetrics(
            values=dict.fromkeys(METRIC_LABELS), undefined=dict.fromkeys(METRIC_LABELS, _NO_ROWS)
        )
    values: dict[str, float | None] = {
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "roc_auc": None,
        "pr_auc": None,
        "lift_top_decile": lift_at(y, p, _TOP_DECILE),
    }
    undefined: dict[str, str] = {}
    positives = int(y.sum())
    if 0 < positives < y.size:
        values["roc_auc"] = float(roc_auc_score(y, p))
        values["pr_auc"] = float(average_precision_score(y, p))
    else:
        only = "positive" if positives else "negative"
        reason = f"all {y.size} held-out labels are {only}: a ranking has nothing to separate"
        undefined["roc_auc"] = undefined["pr_auc"] = reason
    if values["lift_top_decile"] is None:
        undefined["lift_top_decile"] = "no positives among the held-out labels"
    return ProbabilityMetrics(values=values, undefined=undefined)


def lift_at(y_true: NDArray[np.generic], predicted: Floats, fraction: float) -> float | None:
    """Positive rate among the top ``fraction`` of rows by prediction, over the base
    rate; ``None`` when there are no rows or no positives.

    The top is ``ceil(fraction * rows)`` rows (at least one). Rows tied with the last
    one taken count by their tie group's positive rate: the expected value over every
    ordering of the ties.
    """
    y = _labels(y_true)
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if y.size == 0 or not y.any():
        return None
    take = max(1, math.ceil(fraction * y.size))
    threshold = np.sort(p)[::-1][take - 1]
    above = p > threshold
    tied = p == threshold
    from_ties = take - int(above.sum())
    positives = float(y[above].sum()) + from_ties * float(y[tied].mean())
    return (positives / take) / float(y.mean())


def gains_curve(y_true: NDArray[np.generic], predicted: Floats) -> tuple[Floats, Floats]:
    """Cumulative gains: share of rows targeted (highest predictions first) against the
    share of all positives they hold, from (0, 0) to (1, 1). One point per distinct
    prediction, so a group of tied rows is a straight segment. Empty arrays when there
    are no rows or no positives."""
    y = _labels(y_true)
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if y.size == 0 or not y.any():
        return np.empty(0), np.empty(0)
    distinct, inverse = np.unique(-p, return_inverse=True)
    rows = np.bincount(inverse, minlength=distinct.size).astype(np.float64)
    hits = np.bincount(inverse, weights=y, minlength=distinct.size)
    share_rows = np.concatenate(([0.0], np.cumsum(rows) / y.size))
    share_hits = np.concatenate(([0.0], np.cumsum(hits) / y.sum()))
    return share_rows, share_hits


def calibration_bins(
    y_true: NDArray[np.generic], predicted: Floats, *, bins: int = 10
) -> list[CalibrationBin]:
    """Predicted against observed by quantile bin of the prediction (deciles by
    default). Equal predictions never straddle two bins, so heavily tied predictions
    give fewer, uneven bins (a constant prediction gives one); empty bins are left out."""
    y = _labels(y_true)
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if y.size == 0:
        return []
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    # each group of equal predictions goes to the quantile bin holding its middle row
    middle = np.cumsum(counts) - counts / 2.0
    group_bin = np.minimum((middle * bins / y.size).astype(np.int64), bins - 1)
    index = group_bin[inverse]
    result = []
    for b in np.unique(index):
        member = index == b
        result.append(
            CalibrationBin(
                rows=int(member.sum()),
                low=float(p[member].min()),
                high=float(p[member].max()),
                mean_predicted=float(p[member].mean()),
                observed=float(y[member].mean()),
            )
        )
    return result


def value_metrics(y_true: Floats, predicted: Floats) -> ValueMetrics:
    """Mean absolute and root mean squared error, and mean Poisson deviance (see
    :func:`profiles.predictions.fit.value_errors`)."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if y.size == 0:
        return ValueMetrics(values=dict.fromkeys(VALUE_LABELS), undefined=_NO_ROWS)
    return ValueMetrics(
        values=dict(value_errors(y, p)),
        undefined=None,
    )


def shortfalls(
    model: dict[str, float | None],
    baselines: dict[str, dict[str, float | None]],
    labels: dict[str, str],
) -> list[str]:
    """One line per (baseline, metric) where the model is not strictly better, e.g.
    ``does not beat rfm on ROC AUC: 0.7100 vs 0.7200``. Compared at full precision;
    a metric undefined for either side is skipped (the report says why elsewhere)."""
    lines = []
    for name, scores in baselines.items():
        for metric, label in labels.items():
            ours, theirs = model.get(metric), scores.get(metric)
            if ours is None or theirs is None:
                continue
            better = ours > theirs if metric in HIGHER_IS_BETTER else ours < theirs
            if not better:
                lines.append(f"does not beat {name} on {label}: {ours:.4f} vs {theirs:.4f}")
    return lines


def comparable(
    model: dict[str, float | None],
    baselines: dict[str, dict[str, float | None]],
    labels: dict[str, str],
) -> int:
    """How many (baseline, metric) pairs :func:`shortfalls` could compare: both defined."""
    return sum(
        model.get(metric) is not None and scores.get(metric) is not None
        for scores in baselines.values()
        for metric in labels
    )

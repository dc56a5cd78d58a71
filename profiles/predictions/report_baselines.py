"""The naive baselines a probability model must beat: how recently a user bought, and
the classic RFM score, each turned into a probability by a one-feature logistic
regression fitted on the training rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from profiles.predictions.features import FEATURES

__all__ = [
    "BASELINES",
    "BASELINE_DESCRIPTIONS",
    "CLASSIFIER_TARGETS",
    "LAST_PERIOD",
    "baseline_probabilities",
    "rfm_scores",
]

Floats = NDArray[np.float64]

#: the probability targets evaluated as classifiers
CLASSIFIER_TARGETS: tuple[str, ...] = ("purchase_probability", "churn_probability")
#: the baselines' names, in report order
BASELINES: tuple[str, ...] = ("recency", "rfm")
#: what each baseline is, as the report explains it
BASELINE_DESCRIPTIONS: dict[str, str] = {
    "recency": "a logistic regression on recency_days alone",
    "rfm": "a logistic regression on the R+F+M quintile score (3 to 15), edges from the"
    " training rows",
}
#: the naive value baseline: revenue in the horizon before the cutoff, as the next one's
LAST_PERIOD = "last period"

_RFM_COLUMNS = ("recency_days", "frequency_365d", "monetary_365d")
_QUINTILES = np.array([0.2, 0.4, 0.6, 0.8])


def _column(x: NDArray[Any], name: str) -> Floats:
    matrix = np.asarray(x, dtype=np.float64).reshape(-1, len(FEATURES))
    return matrix[:, FEATURES.index(name)]


def rfm_scores(x_fit: NDArray[Any], x: NDArray[Any]) -> Floats:
    """The classic RFM score (3 to 15) of each row of ``x``: the quintile (1 to 5) of
    recency (5 = most recent), of 365-day order count and of 365-day revenue (5 = most),
    summed. Quintile edges come from ``x_fit``; a value on an edge takes the lower
    quintile, so a crowd of users without orders all score 1 on frequency. All zeros
    when ``x_fit`` has no rows."""
    scores = np.zeros(_column(x, "recency_days").size)
    if _column(x_fit, "recency_days").size == 0:
        return scores
    for name in _RFM_COLUMNS:
        edges = np.quantile(_column(x_fit, name), _QUINTILES)
        quintile = np.searchsorted(edges, _column(x, name), side="left")
        # recency is better when smaller: its most recent fifth scores 5
        scores += 5 - quintile if name == "recency_days" else 1 + quintile
    return scores


def _one_feature_logistic(x_fit: Floats, y_fit: Floats, x_test: Floats) -> Floats:
    """Probabilities from a logistic regression on one standardised feature; a constant,
    the smoothed base rate, when the fit rows hold one class or none (no fit possible)."""
    positives = float(y_fit.sum())
    if positives in (0.0, float(y_fit.size)) or x_test.size == 0:
        return np.full(x_test.size, (positives + 0.5) / (y_fit.size + 1.0))
    centre, scale = float(x_fit.mean()), float(x_fit.std()) or 1.0
    model = LogisticRegression()
    model.fit(((x_fit - centre) / scale).reshape(-1, 1), y_fit)
    probabilities: Floats = model.predict_proba(((x_test - centre) / scale).reshape(-1, 1))
    return probabilities[:, 1]


def baseline_probabilities(
    x_fit: NDArray[Any], y_fit: NDArray[Any], x_test: NDArray[Any], *, target: str
) -> dict[str, Floats]:
    """The baselines' probabilities for ``x_test``, fitted on ``x_fit``/``y_fit`` (feature
    matrices in ``FEATURES`` order): ``recency``, a logistic regression on
    ``recency_days`` alone; ``rfm``, one on :func:`rfm_scores`.

    Both serve either target (the fit learns the sign: churn rises with recency, a
    purchase gets less likely); ``target`` must be one of :data:`CLASSIFIER_TARGETS`.
    For churn, days since last seen would be a fair naive predictor too; the recency
    baseline stays with ``recency_days`` so both targets face the same one.
    """
    if target not in CLASSIFIER_TARGETS:
        raise ValueError(f"no baselines for {target!r}: one of {CLASSIFIER_TARGETS}")
    y = np.asarray(y_fit, dtype=np.float64).ravel()
    recency = "recency_days"
    return {
        "recency": _one_feature_logistic(_column(x_fit, recency), y, _column(x_test, recency)),
        "rfm": _one_feature_logistic(rfm_scores(x_fit, x_fit), y, rfm_scores(x_fit, x_test)),
    }

"""The estimators: two calibrated classifiers, an expected-value method and behavioural
clusters.

Candidates are fitted on the training cutoffs and chosen on the calibration cutoff;
the test (latest) cutoff only measures what was kept, so its figures are not flattered
by having picked the best of several there.

Every model sees :func:`signed_log1p` of the feature rows: counts and money are heavy
tailed, and the log keeps a few big spenders from dominating the linear model and the
cluster distances (trees do not care either way). Seeds are fixed: the same examples
give the same models.

Calibration is sigmoid (Platt) on the calibration cutoff, a later time fold than the
training rows. Sigmoid rather than isotonic because it has two parameters, so it cannot
overfit a calibration fold of a few hundred past buyers (churn), it corrects the shift
in base rate between time folds that dominates miscalibration here, and being monotone it
keeps the ranking (AUC) of the model it calibrates; isotonic steps would add ties and
need thousands of rows per fold.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    log_loss,
    mean_absolute_error,
    mean_poisson_deviance,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import ThreadpoolController

from profiles.errors import ProfileError
from profiles.predictions.features import FEATURES

__all__ = [
    "CLASSIFIERS",
    "DEVIANCE_FLOOR",
    "VALUE_METHODS",
    "FittedClassifier",
    "FittedValue",
    "TrainingError",
    "base_pipeline",
    "expected_order_value",
    "fit_classifier",
    "fit_value",
    "signed_log1p",
    "single_threaded",
    "value_errors",
]

Floats = NDArray[np.float64]
#: candidate classifiers, by the name the report and manifest use
CLASSIFIERS: tuple[str, ...] = ("logistic_regression", "gradient_boosting")
VALUE_METHODS: tuple[str, ...] = ("regression", "probability_x_order_value")
_AOV = FEATURES.index("average_order_value")
#: predictions below this count as it in the Poisson deviance (which is infinite for a
#: prediction of 0 where revenue came): one cent
DEVIANCE_FLOOR = 0.01


class TrainingError(ProfileError):
    """The history cannot train a model (too short, or a target without both outcomes)."""


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def single_threaded() -> AbstractContextManager[Any]:
    """Run sklearn's OpenMP code (gradient boosting, K-Means) on one thread inside.

    Its worker threads spin while waiting; on a machine whose cores are busy with other
    work (the live worker, other services) that made training ten times slower, and a
    live batch of ~100 rows gains nothing from threads. One thread is also the
    simplest way to be sure the same input gives the same model.
    """
    limit: AbstractContextManager[Any] = _threadpools().limit(limits=1, user_api="openmp")
    return limit


def signed_log1p(x: NDArray[Any]) -> Floats:
    """``sign(x) * log1p(|x|)`` of every cell: the scale every model is fitted on."""
    matrix = np.asarray(x, dtype=np.float64)
    out: Floats = np.sign(matrix) * np.log1p(np.abs(matrix))
    return out


#: the gradient-boosting settings the classifiers and the value regression share
_BOOSTING: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 100,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "early_stopping": False,
}


def _candidate(name: str, seed: int) -> Any:
    if name == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return HistGradientBoostingClassifier(**_BOOSTING, l2_regularization=1.0, random_state=seed)


@dataclass(frozen=True)
class FittedClassifier:
    """The kept calibrated model of one target and what choosing it measured."""

    model: Any
    name: str
    #: log-loss of each calibrated candidate on the calibration rows (which chose)
    candidates: dict[str, float]
    #: the same on the test rows (for the report only)
    test_losses: dict[str, float]
    #: the kept model's probabilities on the calibration and the test rows
    calibration_predicted: Floats
    predicted: Floats


def _check_labels(target: str, fold: str, y: NDArray[Any]) -> None:
    if y.size == 0 or y.min() == y.max():
        raise TrainingError(
            f"{target}: the {fold} rows hold {y.size} examples of one outcome only; "
            "give a longer history, fewer cutoffs or a longer horizon"
        )


def fit_classifier(
    target: str,
    folds: dict[str, tuple[Floats, NDArray[Any]]],
    *,
    candidates: tuple[str, ...] = CLASSIFIERS,
    seed: int = 0,
) -> FittedClassifier:
    """Fit every candidate (names from :data:`CLASSIFIERS`) on ``folds["train"]``,
    calibrate it on ``"calibration"`` and keep the lowest log-loss there; ``"test"`` is
    only measured (each fold: transformed rows, 0/1 labels).

    The calibration fold both calibrates and chooses: sigmoid calibration has two
    parameters, so its optimism on its own fold is small and alike for every candidate."""
    unknown = set(candidates) - set(CLASSIFIERS)
    if unknown or not candidates:
        raise TrainingError(f"classifiers must be some of {CLASSIFIERS}, got {candidates}")
    for fold, (_, y) in folds.items():
        _check_labels(target, fold, y)
    x_fit, y_fit = folds["train"]
    x_cal, y_cal = folds["calibration"]
    x_test, y_test = folds["test"]
    losses: dict[str, float] = {}
    test_losses: dict[str, float] = {}
    fitted: dict[str, tuple[Any, Floats, Floats]] = {}
    for name in candidates:
        base = _candidate(name, seed).fit(x_fit, y_fit)
        model = CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid")
        model.fit(x_cal, y_cal)
        on_cal: Floats = model.predict_proba(x_cal)[:, 1]
        on_test: Floats = model.predict_proba(x_test)[:, 1]
        losses[name] = float(log_loss(y_cal, on_cal, labels=[0, 1]))
        test_losses[name] = float(log_loss(y_test, on_test, labels=[0, 1]))
        fitted[name] = (model, on_cal, on_test)
    kept = min(losses, key=losses.__getitem__)
    model, on_cal, on_test = fitted[kept]
    return FittedClassifier(
        model=model,
        name=kept,
        candidates=losses,
        test_losses=test_losses,
        calibration_predicted=on_cal,
        predicted=on_test,
    )


def base_pipeline(model: Any) -> Pipeline | None:
    """The standardising logistic pipeline inside a calibrated model, or ``None`` when
    the calibrated model is not linear."""
    inner = model.calibrated_classifiers_[0].estimator
    inner = getattr(inner, "estimator", inner)  # FrozenEstimator wraps the fitted model
    return inner if isinstance(inner, Pipeline) else None


@dataclass(frozen=True)
class FittedValue:
    """The kept expected-value method."""

    method: str
    #: the regressor (``regression`` only)
    regressor: Any | None
    #: order value assumed for users who never bought (``probability_x_order_value``)
    order_value: float
    #: mean orders of a user who buys within the horizon
    orders_per_buyer: float
    #: method -> :func:`value_errors` on the calibration rows (which chose)
    candidates: dict[str, dict[str, float]]
    #: the kept method's prediction on the test rows
    predicted: Floats


def expected_order_value(x: NDArray[Any], *, order_value: float, orders_per_buyer: float) -> Floats:
    """Revenue of a user if they buy: their own average order value (the population's
    for a user who never bought) times the orders a buyer places in a horizon."""
    aov = np.asarray(x, dtype=np.float64)[:, _AOV]
    value: Floats = np.where(aov > 0, aov, order_value) * orders_per_buyer
    return value


def value_errors(y_true: NDArray[Any], predicted: NDArray[Any]) -> dict[str, float]:
    """MAE, RMSE and mean Poisson deviance (predictions floored at
    :data:`DEVIANCE_FLOOR`) of a revenue prediction."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    return {
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(root_mean_squared_error(y, p)),
        "poisson_deviance": float(
            mean_poisson_deviance(np.maximum(y, 0.0), np.maximum(p, DEVIANCE_FLOOR))
        ),
    }


def fit_value(
    raw: dict[str, Floats],
    revenue: dict[str, Floats],
    orders: Floats,
    purchase: dict[str, Floats],
    *,
    seed: int = 0,
) -> FittedValue:
    """Fit a Poisson-loss gradient boosting regression of horizon revenue and measure it
    against purchase probability x expected order value on the calibration rows; keep
    the lower mean Poisson deviance there (MAE would reward predicting the median
    revenue, which is 0). ``raw`` holds untransformed rows of ``"train"``,
    ``"calibration"`` and ``"test"``, ``revenue`` their horizon revenue, ``orders`` the
    train rows' horizon order counts, ``purchase`` the kept purchase model's
    probabilities on the calibration and test rows."""
    regressor = HistGradientBoostingRegressor(**_BOOSTING, loss="poisson", random_state=seed).fit(
        signed_log1p(raw["train"]), revenue["train"]
    )
    aov = raw["train"][:, _AOV]
    order_value = float(aov[aov > 0].mean()) if (aov > 0).any() else 0.0
    bought = orders > 0
    per_buyer = float(orders[bought].mean()) if bought.any() else 1.0

    def by_method(fold: str) -> dict[str, Floats]:
        by_probability = purchase[fold] * expected_order_value(
            raw[fold], order_value=order_value, orders_per_buyer=per_buyer
        )
        by_regression: Floats = regressor.predict(signed_log1p(raw[fold]))
        return {"regression": by_regression, "probability_x_order_value": by_probability}

    on_cal = by_method("calibration")
    candidates = {name: value_errors(revenue["calibration"], p) for name, p in on_cal.items()}
    method = min(candidates, key=lambda name: candidates[name]["poisson_deviance"])
    return FittedValue(
        method=method,
        regressor=regressor if method == "regression" else None,
        order_value=order_value,
        orders_per_buyer=per_buyer,
        candidates=candidates,
        predicted=by_method("test")[method],
    )

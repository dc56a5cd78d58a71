"""Train every prediction from an event history and write the model directory.

:func:`train` is the whole job (``nudge model train`` calls it): replay the history into
rolling-origin examples (:mod:`~profiles.predictions.examples`), fit on the older
cutoffs, calibrate and choose on the next, report on the latest (held out), cluster the
users as of ``as_of``, and save (:func:`~profiles.predictions.bundle.save_model`). The
kept models are the ones measured: they are not refitted on the held-out rows, so the
report describes exactly what is shipped. The training distributions drift monitoring
compares with are those of the examples' reference rows, taken the way the worker
scores.

A history out of time order is refused: above :data:`MAX_LATE_SHARE` of late events,
rows and labels would no longer describe what happened before and after a cutoff.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from profiles.events import Event
from profiles.model import ScoringConfig
from profiles.predictions.bundle import Estimators, ModelBundle, save_model
from profiles.predictions.clusters import CLUSTER_FEATURES, FittedClusters, fit_clusters
from profiles.predictions.examples import Examples, Labelled, build_examples
from profiles.predictions.features import FEATURES
from profiles.predictions.fit import (
    CLASSIFIERS,
    FittedClassifier,
    FittedValue,
    TrainingError,
    fit_classifier,
    fit_value,
    signed_log1p,
    single_threaded,
)
from profiles.predictions.manifest import (
    FORMAT,
    ClassifierSpec,
    ClusterSpec,
    Manifest,
    ValueSpec,
    distribution_of,
)
from profiles.predictions.report import (
    ClassifierResult,
    ClusterResult,
    Report,
    TrainingSummary,
    ValueResult,
    baseline_probabilities,
    build_report,
)

__all__ = [
    "DEFAULT_CUTOFFS",
    "MAX_LATE_SHARE",
    "TrainResult",
    "TrainingError",
    "check_order",
    "fit_bundle",
    "train",
]

Floats = NDArray[np.float64]
#: labelled cutoffs by default: four train, one calibration, one test
DEFAULT_CUTOFFS = 6
_FOLDS = ("train", "calibration", "test")
#: the share of late events (older than one read before them) training accepts
MAX_LATE_SHARE = 0.01


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote and measured."""

    directory: Path
    #: the saved model, as :func:`~profiles.predictions.bundle.load_model` reads it
    model: ModelBundle
    report: Report
    examples: Examples


def train(
    events: Iterable[Event],
    *,
    as_of: datetime,
    scoring: ScoringConfig,
    out: Path,
    horizon_days: int = 30,
    cutoffs: int = DEFAULT_CUTOFFS,
    k_range: tuple[int, int] = (3, 8),
    classifiers: tuple[str, ...] = CLASSIFIERS,
    seed: int = 0,
) -> TrainResult:
    """Train on ``events`` (time order; only ``ts <= as_of`` read) into directory ``out``
    (model files, ``manifest.json``, ``report.md``/``.html`` and plots).

    ``k_range`` bounds the number of clusters tried; ``classifiers`` the candidate
    probability models (both by default); ``seed`` fixes every random choice."""
    if cutoffs < 3:
        raise TrainingError(f"need at least 3 cutoffs (train, calibration, test), got {cutoffs}")
    examples = build_examples(
        events, as_of=as_of, horizon_days=horizon_days, cutoffs=cutoffs, scoring=scoring
    )
    check_order(examples)
    with single_threaded():
        bundle, report = fit_bundle(examples, k_range=k_range, classifiers=classifiers, seed=seed)
    model = save_model(out, bundle, extra=report.write)
    return TrainResult(directory=out, model=model, report=report, examples=examples)


def check_order(examples: Examples) -> None:
    """Raise :class:`TrainingError` when more than :data:`MAX_LATE_SHARE` of the events
    read were late."""
    late, read = examples.late_events, examples.events_read
    if read and late > MAX_LATE_SHARE * read:
        raise TrainingError(
            f"history is not in time order: {late} of {read} events "
            f"({late / read:.1%}) are older than an event read before them (at most "
            f"{MAX_LATE_SHARE:.0%} is accepted); sort the file by ts, or read the topic "
            "with --from-topic, which merges its partitions in time order"
        )


def _split(examples: Examples) -> dict[str, list[Labelled]]:
    c = examples.cutoffs
    return {"train": c[:-2], "calibration": [c[-2]], "test": [c[-1]]}


def _stack(cuts: list[Labelled], get: Any) -> NDArray[Any]:
    return np.concatenate([np.asarray(get(c)) for c in cuts])


def _classifier(
    target: str, split: dict[str, list[Labelled]], classifiers: tuple[str, ...], seed: int
) -> tuple[FittedClassifier, ClassifierResult]:
    churn = target == "churn_probability"

    def rows(c: Labelled) -> NDArray[Any]:
        return c.rows.features[c.past_buyers] if churn else c.rows.features

    def labels(c: Labelled) -> NDArray[Any]:
        return (c.churned[c.past_buyers] if churn else c.purchased).astype(np.int64)

    raw = {fold: _stack(cuts, rows).reshape(-1, len(FEATURES)) for fold, cuts in split.items()}
    y = {fold: _stack(cuts, labels) for fold, cuts in split.items()}
    fitted = fit_classifier(
        target,
        {f: (signed_log1p(raw[f]), y[f]) for f in _FOLDS},
        candidates=classifiers,
        seed=seed,
    )
    result = ClassifierResult(
        target=target,
        y_true=y["test"],
        predicted=fitted.predicted,
        model_name=fitted.name,
        candidates=fitted.candidates,
        baselines=baseline_probabilities(raw["train"], y["train"], raw["test"], target=target),
        test_losses=fitted.test_losses,
    )
    return fitted, result


def _value(
    split: dict[str, list[Labelled]], purchase: FittedClassifier, seed: int
) -> tuple[FittedValue, ValueResult]:
    raw = {
        f: _stack(split[f], lambda c: c.rows.features).reshape(-1, len(FEATURES)) for f in _FOLDS
    }
    revenue = {f: _stack(split[f], lambda c: c.revenue) for f in _FOLDS}
    orders = _stack(split["train"], lambda c: c.orders)
    probabilities = {"calibration": purchase.calibration_predicted, "test": purchase.predicted}
    fitted = fit_value(raw, revenue, orders, probabilities, seed=seed)
    result = ValueResult(
        y_true=revenue["test"],
        predicted=fitted.predicted,
        method=fitted.method,
        candidates=fitted.candidates,
        last_period=split["test"][0].prior_revenue,
    )
    return fitted, result


def _summary(examples: Examples, split: dict[str, list[Labelled]]) -> TrainingSummary:
    return TrainingSummary(
        as_of=examples.as_of,
        horizon_days=examples.horizon_days,
        events_read=examples.events_read,
        users=len(examples.current.user_ids),
        cutoffs={f: [c.rows.at for c in cuts] for f, cuts in split.items()},
        examples={f: sum(len(c.rows.user_ids) for c in cuts) for f, cuts in split.items()},
        late_events=examples.late_events,
    )


def fit_bundle(
    examples: Examples,
    *,
    k_range: tuple[int, int] = (3, 8),
    classifiers: tuple[str, ...] = CLASSIFIERS,
    seed: int = 0,
) -> tuple[ModelBundle, Report]:
    """Fit, choose and report every model on ``examples``; the bundle is not saved yet
    (its version is assigned by :func:`~profiles.predictions.bundle.save_model`)."""
    if len(examples.cutoffs) < 3:
        raise TrainingError("need at least 3 cutoffs (train, calibration, test)")
    if not len(examples.reference):
        raise TrainingError(
            f"no events in the last {examples.horizon_days} days before {examples.as_of:%Y-%m-%d}: "
            "nothing to compare the live worker's rows with; train as of a recent moment"
        )
    split = _split(examples)
    purchase, purchase_result = _classifier("purchase_probability", split, classifiers, seed)
    churn, churn_result = _classifier("churn_probability", split, classifiers, seed)
    value, value_result = _value(split, purchase, seed)
    clusters = fit_clusters(
        examples.current.features,
        k_range=k_range,
        horizon_days=examples.horizon_days,
        seed=seed,
    )
    report = build_report(
        _summary(examples, split),
        [purchase_result, churn_result],
        value_result,
        ClusterResult(
            k=len(clusters.names),
            silhouettes=clusters.silhouettes,
            names=clusters.names,
            sizes=clusters.sizes,
            centroids=clusters.centroids,
        ),
    )
    estimators = Estimators(
        purchase_probability=purchase.model,
        churn_probability=churn.model,
        clusters=clusters.model,
        expected_value=value.regressor,
    )
    manifest = _manifest(examples, split, (purchase, churn, value, clusters), report)
    unsaved = ModelBundle(manifest, estimators)
    scores = unsaved.predict(examples.reference)
    distributions = {
        **manifest.distributions,
        **{
            name: distribution_of(values)
            for name, values in zip(
                ("purchase_probability", "churn_probability", "expected_value"),
                scores,
                strict=True,
            )
        },
    }
    return ModelBundle(
        manifest.model_copy(update={"distributions": distributions}), estimators
    ), report


def _manifest(
    examples: Examples,
    split: dict[str, list[Labelled]],
    fitted: tuple[FittedClassifier, FittedClassifier, FittedValue, FittedClusters],
    report: Report,
) -> Manifest:
    purchase, churn, value, clusters = fitted
    train_rows = _stack(split["train"], lambda c: c.rows.features).reshape(-1, len(FEATURES))
    reference = examples.reference
    return Manifest(
        format=FORMAT,
        version="unsaved",
        trained_at=examples.as_of,
        as_of=examples.as_of,
        horizon_days=examples.horizon_days,
        training_window=(examples.first_event, examples.as_of),
        features=list(FEATURES),
        cutoffs={f: [c.rows.at for c in cuts] for f, cuts in split.items()},
        purchase_probability=ClassifierSpec(file="purchase_probability.skops", kind=purchase.name),
        churn_probability=ClassifierSpec(file="churn_probability.skops", kind=churn.name),
        expected_value=ValueSpec(
            method=value.method,
            file="expected_value.skops" if value.regressor is not None else None,
            order_value=value.order_value,
            orders_per_buyer=value.orders_per_buyer,
        ),
        clusters=ClusterSpec(
            file="clusters.skops",
            features=list(CLUSTER_FEATURES),
            names=clusters.names,
            sizes=clusters.sizes,
        ),
        medians=[float(v) for v in np.median(train_rows, axis=0)],
        distributions={f: distribution_of(reference[:, i]) for i, f in enumerate(FEATURES)},
        metrics=report.metrics(),
        files={},
        libraries={},
        late_events=examples.late_events,
    )

"""The training report: how the trained models do on the held-out (latest) cutoff, next
to the naive baselines a data scientist would try first.

The trainer hands over what it kept and what it measured (:class:`ClassifierResult`,
:class:`ValueResult`, :class:`ClusterResult`, :class:`TrainingSummary`);
:func:`build_report` computes the metrics once, and :class:`Report` shows them as JSON
(the manifest's ``metrics``), a terminal table, and ``report.md`` / ``report.html`` with
PNG plots. Every number is printed with the same four decimals, and each metric where the
model is not strictly better than a baseline gets its own "does not beat" line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from profiles.predictions.report_baselines import (
    BASELINES,
    CLASSIFIER_TARGETS,
    LAST_PERIOD,
    baseline_probabilities,
    rfm_scores,
)
from profiles.predictions.report_metrics import (
    METRIC_LABELS,
    VALUE_LABELS,
    CalibrationBin,
    ProbabilityMetrics,
    ValueMetrics,
    calibration_bins,
    comparable,
    probability_metrics,
    shortfalls,
    value_metrics,
)
from profiles.predictions.report_render import Plot, html_page, markdown, text
from profiles.predictions.report_tables import metrics_dict, tables

__all__ = [
    "BASELINES",
    "CLASSIFIER_TARGETS",
    "LAST_PERIOD",
    "ClassifierEvaluation",
    "ClassifierResult",
    "ClusterResult",
    "Report",
    "TrainingSummary",
    "ValueEvaluation",
    "ValueResult",
    "baseline_probabilities",
    "build_report",
    "rfm_scores",
]

TITLE = "Prediction models: training report"


@dataclass(frozen=True)
class ClassifierResult:
    """A probability target on the held-out (latest) cutoff, as the trainer measured it."""

    #: ``purchase_probability`` or ``churn_probability``
    target: str
    #: 0/1 labels on the held-out cutoff
    y_true: NDArray[Any]
    #: the kept model's calibrated probabilities there
    predicted: NDArray[Any]
    #: ``logistic_regression`` or ``gradient_boosting``
    model_name: str
    #: log-loss of each calibrated candidate on the calibration cutoff, which chose
    candidates: dict[str, float]
    #: ``recency``, ``rfm`` -> probabilities on the held-out rows
    baselines: dict[str, NDArray[Any]]
    #: the candidates' log-loss on the held-out cutoff (shown, not used to choose)
    test_losses: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ValueResult:
    """Expected value on the held-out cutoff."""

    #: revenue within the horizon after the cutoff
    y_true: NDArray[Any]
    #: the kept method's expected value
    predicted: NDArray[Any]
    #: ``regression`` or ``probability_x_order_value``
    method: str
    #: each method's MAE, RMSE and Poisson deviance on the calibration cutoff, which
    #: chose by the deviance
    candidates: dict[str, dict[str, float]]
    #: naive baseline: revenue in the horizon before the cutoff
    last_period: NDArray[Any]


@dataclass(frozen=True)
class ClusterResult:
    """The behavioural clusters kept."""

    k: int
    #: k -> silhouette score, for each k tried
    silhouettes: dict[int, float]
    #: plain name per cluster index
    names: list[str]
    sizes: list[int]
    #: feature -> centroid value per cluster (original units)
    centroids: dict[str, list[float]]


@dataclass(frozen=True)
class TrainingSummary:
    """What the training run read and how it split it."""

    as_of: datetime
    horizon_days: int
    events_read: int
    users: int
    #: ``train``, ``calibration``, ``test`` -> cutoffs used
    cutoffs: dict[str, list[datetime]]
    #: same keys -> number of rows
    examples: dict[str, int]
    #: events older than an event read before them
    late_events: int = 0


@dataclass(frozen=True)
class ClassifierEvaluation:
    """A probability target's metrics: ``scores`` holds ``model``, then each baseline."""

    result: ClassifierResult
    scores: dict[str, ProbabilityMetrics]
    calibration: list[CalibrationBin]
    shortfalls: list[str]
    #: how many (baseline, metric) pairs were defined on both sides and compared
    compared: int

    @property
    def rows(self) -> int:
        return int(np.asarray(self.result.y_true).size)

    @property
    def positives(self) -> int:
        return int(np.asarray(self.result.y_true, dtype=np.float64).sum())

    @property
    def base_rate(self) -> float | None:
        return self.positives / self.rows if self.rows else None


@dataclass(frozen=True)
class ValueEvaluation:
    """Expected value's errors: ``scores`` holds ``model`` and ``last period``."""

    result: ValueResult
    scores: dict[str, ValueMetrics]
    shortfalls: list[str]
    #: how many (baseline, metric) pairs were defined on both sides and compared
    compared: int


def _same_length(what: str, *arrays: NDArray[Any]) -> None:
    sizes = sorted({np.asarray(a).size for a in arrays})
    if len(sizes) > 1:
        raise ValueError(f"{what}: labels, predictions and baselines differ in length {sizes}")


def _evaluate_classifier(result: ClassifierResult) -> ClassifierEvaluation:
    _same_length(result.target, result.y_true, result.predicted, *result.baselines.values())
    scorers = {"model": result.predicted, **result.baselines}
    scores = {name: probability_metrics(result.y_true, p) for name, p in scorers.items()}
    baselines = {name: scores[name].values for name in result.baselines}
    return ClassifierEvaluation(
        result=result,
        scores=scores,
        calibration=calibration_bins(result.y_true, result.predicted),
        shortfalls=shortfalls(scores["model"].values, baselines, METRIC_LABELS),
        compared=comparable(scores["model"].values, baselines, METRIC_LABELS),
    )


def _evaluate_value(result: ValueResult) -> ValueEvaluation:
    _same_length("expected_value", result.y_true, result.predicted, result.last_period)
    scores = {
        "model": value_metrics(result.y_true, result.predicted),
        LAST_PERIOD: value_metrics(result.y_true, result.last_period),
    }
    baseline = {LAST_PERIOD: scores[LAST_PERIOD].values}
    return ValueEvaluation(
        result=result,
        scores=scores,
        shortfalls=shortfalls(scores["model"].values, baseline, VALUE_LABELS),
        compared=comparable(scores["model"].values, baseline, VALUE_LABELS),
    )


def build_report(
    summary: TrainingSummary,
    classifiers: list[ClassifierResult],
    value: ValueResult,
    clusters: ClusterResult,
) -> Report:
    """Evaluate everything the trainer measured. Raises ``ValueError`` when arrays that
    describe the same rows differ in length (a bug in the caller, not in the data)."""
    return Report(
        summary=summary,
        classifiers=tuple(_evaluate_classifier(c) for c in classifiers),
        value=_evaluate_value(value),
        clusters=clusters,
    )


@dataclass(frozen=True)
class Report:
    """The evaluated training run; see the module docstring for its forms."""

    summary: TrainingSummary
    classifiers: tuple[ClassifierEvaluation, ...]
    value: ValueEvaluation
    clusters: ClusterResult

    @property
    def shortfalls(self) -> list[str]:
        """Every "does not beat" line, prefixed with its target."""
        lines = [f"{c.result.target}: {line}" for c in self.classifiers for line in c.shortfalls]
        return lines + [f"expected_value: {line}" for line in self.value.shortfalls]

    def metrics(self) -> dict[str, Any]:
        """Everything measured, JSON-able, at full precision; an undefined metric is
        ``None`` with its reason under ``undefined``."""
        return metrics_dict(self)

    def table(self) -> str:
        """The headline tables as fixed-width text for a terminal."""
        return text([t for t in tables(self) if t.terminal])

    def write(self, directory: Path) -> list[Path]:
        """Write ``report.md``, ``report.html`` (self-contained) and the PNG plots into
        ``directory``, created if missing; returns the paths written."""
        directory.mkdir(parents=True, exist_ok=True)
        plots = self._plots()
        content = tables(self)
        written = []
        for name, body in (
            ("report.md", markdown(TITLE, content, plots)),
            ("report.html", html_page(TITLE, content, plots)),
        ):
            (directory / name).write_text(body, encoding="utf-8")
            written.append(directory / name)
        for plot in plots:
            (directory / plot.name).write_bytes(plot.png)
            written.append(directory / plot.name)
        return written

    def _plots(self) -> list[Plot]:
        # matplotlib is imported only when plots are drawn: metrics and the terminal
        # table must not pay for it (nor build its font cache)
        from profiles.predictions.report_plots import calibration_png, gains_png

        plots = []
        for c in self.classifiers:
            target, y = c.result.target, c.result.y_true
            scorers = {f"model ({c.result.model_name})": c.result.predicted, **c.result.baselines}
            plots += [
                Plot(
                    f"calibration_{target}.png",
                    f"{target}: reliability on the held-out cutoff",
                    calibration_png(f"{target}: calibration", y, scorers),
                    section=target,
                ),
                Plot(
                    f"gains_{target}.png",
                    f"{target}: cumulative gains on the held-out cutoff",
                    gains_png(f"{target}: cumulative gains", y, scorers),
                    section=target,
                ),
            ]
        return plots

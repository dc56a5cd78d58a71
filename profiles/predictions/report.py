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

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from profiles.predictions.report_baselines import (
    BASELINES,
    CLASSIFIER_TARGETS,
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
from profiles.predictions.report_render import Plot, Table, html_page, markdown, text

__all__ = [
    "BASELINES",
    "CLASSIFIER_TARGETS",
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

#: the naive value baseline: revenue in the horizon before the cutoff
LAST_PERIOD = "last period"
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
    #: held-out log-loss of each candidate model
    candidates: dict[str, float]
    #: ``recency``, ``rfm`` -> probabilities on the held-out rows
    baselines: dict[str, NDArray[Any]]


@dataclass(frozen=True)
class ValueResult:
    """Expected value on the held-out cutoff."""

    #: revenue within the horizon after the cutoff
    y_true: NDArray[Any]
    #: the kept method's expected value
    predicted: NDArray[Any]
    #: ``regression`` or ``probability_x_order_value``
    method: str
    #: held-out MAE of each method
    candidates: dict[str, float]
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
        return {
            "summary": _summary_dict(self.summary),
            **{c.result.target: _classifier_dict(c) for c in self.classifiers},
            "expected_value": _value_dict(self.value),
            "clusters": _clusters_dict(self.clusters),
            "shortfalls": self.shortfalls,
        }

    def table(self) -> str:
        """The headline tables as fixed-width text for a terminal."""
        return text([t for t in self._tables() if t.terminal])

    def write(self, directory: Path) -> list[Path]:
        """Write ``report.md``, ``report.html`` (self-contained) and the PNG plots into
        ``directory``, created if missing; returns the paths written."""
        directory.mkdir(parents=True, exist_ok=True)
        plots = self._plots()
        tables = self._tables()
        written = []
        for name, body in (
            ("report.md", markdown(TITLE, tables, plots)),
            ("report.html", html_page(TITLE, tables, plots)),
        ):
            (directory / name).write_text(body, encoding="utf-8")
            written.append(directory / name)
        for plot in plots:
            (directory / plot.name).write_bytes(plot.png)
            written.append(directory / plot.name)
        return written

    def _tables(self) -> list[Table]:
        tables = _summary_tables(self.summary)
        for evaluation in self.classifiers:
            tables += _classifier_tables(evaluation)
        return tables + _value_tables(self.value) + _cluster_tables(self.clusters)

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
                ),
                Plot(
                    f"gains_{target}.png",
                    f"{target}: cumulative gains on the held-out cutoff",
                    gains_png(f"{target}: cumulative gains", y, scorers),
                ),
            ]
        return plots


# --- formatting: every number with the same precision ----------------------------------


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _verdict(
    shortfalls: list[str], compared: int, baselines: list[str], metrics: int
) -> tuple[str, ...]:
    """The line under a table when it has no "does not beat" line: a win is claimed only
    for what was compared."""
    if shortfalls:
        return ()
    if not compared:
        return ("no metric could be compared with a baseline (see the n/a reasons)",)
    scope = "every metric" if compared == metrics * len(baselines) else "every defined metric"
    return (f"beats {', '.join(baselines)} on {scope}",)


def _undefined_notes(scores: dict[str, ProbabilityMetrics]) -> tuple[str, ...]:
    """One note per metric that is n/a for some scorer, saying for whom and why."""
    notes = []
    for metric, label in METRIC_LABELS.items():
        reasons = {s.undefined[metric] for s in scores.values() if metric in s.undefined}
        names = [name for name, s in scores.items() if metric in s.undefined]
        notes += [f"{label} is n/a for {', '.join(names)}: {r}" for r in sorted(reasons)]
    return tuple(notes)


def _summary_tables(summary: TrainingSummary) -> list[Table]:
    facts = (
        ("data as of", _when(summary.as_of)),
        ("horizon (days)", str(summary.horizon_days)),
        ("events read", str(summary.events_read)),
        ("users", str(summary.users)),
    )
    splits = tuple(
        (
            split,
            str(summary.examples.get(split, 0)),
            str(len(moments)),
            ", ".join(_when(m) for m in moments) or "none",
        )
        for split, moments in summary.cutoffs.items()
    )
    return [
        Table("Training run", ("", "value"), facts, section="Summary", terminal=False),
        Table(
            "Rows per split (one row per user and cutoff)",
            ("split", "rows", "cutoffs", "cutoff moments"),
            splits,
            terminal=False,
        ),
    ]


def _classifier_tables(c: ClassifierEvaluation) -> list[Table]:
    result = c.result
    names = list(c.scores)
    rows = tuple(
        (label, *(_num(c.scores[n].values[metric]) for n in names))
        for metric, label in METRIC_LABELS.items()
    )
    verdict = _verdict(c.shortfalls, c.compared, list(result.baselines), len(METRIC_LABELS))
    headline = Table(
        f"Held-out cutoff: {c.rows} rows, {c.positives} positives, base rate "
        f"{_num(c.base_rate)}; kept model: {result.model_name}",
        ("metric", *(f"model ({result.model_name})" if n == "model" else n for n in names)),
        rows,
        notes=(*_undefined_notes(c.scores), *verdict),
        warnings=tuple(c.shortfalls),
        section=result.target,
    )
    candidates = Table(
        "Candidate models (held-out log-loss)",
        ("candidate", "log-loss", "kept"),
        tuple(
            (name, _num(loss), "yes" if name == result.model_name else "")
            for name, loss in result.candidates.items()
        ),
    )
    calibration = Table(
        "Calibration of the kept model by decile of its prediction",
        ("decile", "rows", "lowest", "highest", "mean predicted", "observed rate"),
        tuple(
            (str(i), str(b.rows), *map(_num, (b.low, b.high, b.mean_predicted, b.observed)))
            for i, b in enumerate(c.calibration, start=1)
        ),
        notes=("equal predictions share a decile, so tied predictions give fewer rows",),
        terminal=False,
    )
    return [headline, candidates, calibration]


def _value_tables(v: ValueEvaluation) -> list[Table]:
    result = v.result
    names = list(v.scores)
    rows = tuple(
        (label, *(_num(v.scores[n].values[metric]) for n in names))
        for metric, label in VALUE_LABELS.items()
    )
    means = [_mean(a) for a in (result.predicted, result.last_period)]
    undefined = {s.undefined for s in v.scores.values() if s.undefined}
    verdict = _verdict(v.shortfalls, v.compared, [LAST_PERIOD], len(VALUE_LABELS))
    return [
        Table(
            f"Revenue within the horizon after the held-out cutoff: "
            f"{np.asarray(result.y_true).size} rows, mean actual {_num(_mean(result.y_true))}; "
            f"kept method: {result.method}",
            ("metric", f"model ({result.method})", LAST_PERIOD),
            (*rows, ("mean prediction", *(_num(m) for m in means))),
            notes=(*(f"n/a: {reason}" for reason in sorted(undefined)), *verdict),
            warnings=tuple(v.shortfalls),
            section="expected_value",
        ),
        Table(
            "Candidate methods (held-out MAE)",
            ("method", "MAE", "kept"),
            tuple(
                (name, _num(mae), "yes" if name == result.method else "")
                for name, mae in result.candidates.items()
            ),
        ),
    ]


def _mean(values: NDArray[Any]) -> float | None:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()) if array.size else None


def _cluster_tables(clusters: ClusterResult) -> list[Table]:
    total = sum(clusters.sizes)
    indexes = range(len(clusters.names))
    return [
        Table(
            f"k = {clusters.k}, chosen by silhouette",
            ("k", "silhouette", "kept"),
            tuple(
                (str(k), _num(s), "yes" if k == clusters.k else "")
                for k, s in sorted(clusters.silhouettes.items())
            ),
            section="clusters",
        ),
        Table(
            "Clusters",
            ("cluster", "name", "users", "share"),
            tuple(
                (str(i), name, str(size), _num(size / total if total else None))
                for i, (name, size) in enumerate(zip(clusters.names, clusters.sizes, strict=True))
            ),
            labels=2,
        ),
        Table(
            "Centroids (original units)",
            ("feature", *(clusters.names[i] for i in indexes)),
            tuple(
                (feature, *(_num(values[i]) for i in indexes))
                for feature, values in clusters.centroids.items()
            ),
        ),
    ]


# --- metrics(): the same numbers, unformatted ------------------------------------------


def _summary_dict(summary: TrainingSummary) -> dict[str, Any]:
    return {
        "as_of": summary.as_of.isoformat(),
        "horizon_days": summary.horizon_days,
        "events_read": summary.events_read,
        "users": summary.users,
        "cutoffs": {k: [m.isoformat() for m in v] for k, v in summary.cutoffs.items()},
        "examples": dict(summary.examples),
    }


def _classifier_dict(c: ClassifierEvaluation) -> dict[str, Any]:
    return {
        "model": c.result.model_name,
        "rows": c.rows,
        "positives": c.positives,
        "base_rate": c.base_rate,
        "scores": {name: dict(s.values) for name, s in c.scores.items()},
        "undefined": {name: dict(s.undefined) for name, s in c.scores.items() if s.undefined},
        "candidates": {k: float(v) for k, v in c.result.candidates.items()},
        "calibration": [asdict(b) for b in c.calibration],
        "shortfalls": list(c.shortfalls),
    }


def _value_dict(v: ValueEvaluation) -> dict[str, Any]:
    return {
        "method": v.result.method,
        "rows": int(np.asarray(v.result.y_true).size),
        "scores": {name: dict(s.values) for name, s in v.scores.items()},
        "undefined": {name: s.undefined for name, s in v.scores.items() if s.undefined},
        "candidates": {k: float(mae) for k, mae in v.result.candidates.items()},
        "shortfalls": list(v.shortfalls),
    }


def _clusters_dict(clusters: ClusterResult) -> dict[str, Any]:
    return {
        "k": clusters.k,
        "silhouettes": {str(k): float(s) for k, s in clusters.silhouettes.items()},
        "names": list(clusters.names),
        "sizes": [int(s) for s in clusters.sizes],
        "centroids": {f: [float(x) for x in vs] for f, vs in clusters.centroids.items()},
    }

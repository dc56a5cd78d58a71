"""The training report's content: its tables (formatted, for the terminal, Markdown and
HTML) and its metrics (unformatted, for the model manifest), from one evaluated
:class:`~profiles.predictions.report.Report`.

Every number in a table is printed with the same four decimals, whichever column it is
in, so no rounding favours the model over a baseline.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from profiles.predictions.report_baselines import BASELINE_DESCRIPTIONS, LAST_PERIOD
from profiles.predictions.report_metrics import METRIC_LABELS, VALUE_LABELS, ProbabilityMetrics
from profiles.predictions.report_render import Table

if TYPE_CHECKING:
    from profiles.predictions.report import (
        ClassifierEvaluation,
        ClusterResult,
        Report,
        TrainingSummary,
        ValueEvaluation,
    )

__all__ = ["metrics_dict", "tables"]


def tables(report: Report) -> list[Table]:
    """The report's tables in reading order: summary, each classifier, expected value,
    clusters. Tables marked ``terminal=False`` are for the files only."""
    content = _summary_tables(report.summary)
    for evaluation in report.classifiers:
        content += _classifier_tables(evaluation)
    return content + _value_tables(report.value) + _cluster_tables(report.clusters)


def metrics_dict(report: Report) -> dict[str, Any]:
    """The same numbers at full precision, JSON-able; ``None`` where undefined."""
    return {
        "summary": _summary_dict(report.summary),
        **{c.result.target: _classifier_dict(c) for c in report.classifiers},
        "expected_value": _value_dict(report.value),
        "clusters": _clusters_dict(report.clusters),
        "shortfalls": report.shortfalls,
    }


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text  # a centre's float noise around zero


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
        ("late events (older than one read before)", str(summary.late_events)),
    )
    names = dict.fromkeys([*summary.cutoffs, *summary.examples])
    splits = tuple(
        (
            split,
            ", ".join(_when(m) for m in summary.cutoffs.get(split, [])) or "none",
            str(len(summary.cutoffs.get(split, []))),
            str(summary.examples.get(split, 0)),
        )
        for split in names
    )
    return [
        Table("Training run", ("", "value"), facts, section="Summary", terminal=False, labels=2),
        Table(
            "Rows per split (one row per user and cutoff)",
            ("split", "cutoff moments", "cutoffs", "rows"),
            splits,
            notes=(
                "each user's row is taken at their own moment of the day before a cutoff "
                "(fixed by their id), and labelled by the horizon after it",
            ),
            terminal=False,
            labels=2,
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
        notes=(
            *(f"{n}: {BASELINE_DESCRIPTIONS[n]}" for n in names if n in BASELINE_DESCRIPTIONS),
            *_undefined_notes(c.scores),
            *verdict,
        ),
        warnings=tuple(c.shortfalls),
        section=result.target,
    )
    candidates = Table(
        "Candidate models: chosen by log-loss on the calibration cutoff",
        ("candidate", "log-loss (calibration, chose)", "log-loss (held-out)", "kept"),
        tuple(
            (
                name,
                _num(loss),
                _num(result.test_losses.get(name)),
                "yes" if name == result.model_name else "",
            )
            for name, loss in result.candidates.items()
        ),
        notes=(
            "the held-out cutoff only measures the kept model: choosing there would "
            "flatter its figures",
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
            "Candidate methods: chosen by Poisson deviance on the calibration cutoff",
            ("method", *(f"{label} (calibration)" for label in VALUE_LABELS.values()), "kept"),
            tuple(
                (
                    name,
                    *(_num(errors.get(metric)) for metric in VALUE_LABELS),
                    "yes" if name == result.method else "",
                )
                for name, errors in result.candidates.items()
            ),
            notes=(
                "MAE is not the criterion: it rewards predicting the median revenue, 0; "
                "the deviance counts predictions under one cent as one cent",
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
        "late_events": summary.late_events,
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
        "candidates_held_out": {k: float(v) for k, v in c.result.test_losses.items()},
        "calibration": [asdict(b) for b in c.calibration],
        "shortfalls": list(c.shortfalls),
    }


def _value_dict(v: ValueEvaluation) -> dict[str, Any]:
    return {
        "method": v.result.method,
        "rows": int(np.asarray(v.result.y_true).size),
        "scores": {name: dict(s.values) for name, s in v.scores.items()},
        "undefined": {name: s.undefined for name, s in v.scores.items() if s.undefined},
        "candidates": {
            k: {m: float(x) for m, x in errors.items()} for k, errors in v.result.candidates.items()
        },
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

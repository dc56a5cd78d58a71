"""The training report: metrics on hand-checkable arrays, the naive baselines, the
"does not beat" lines, degenerate held-out sets, and the files it writes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from profiles.predictions import FEATURES
from profiles.predictions.report import (
    CLASSIFIER_TARGETS,
    ClassifierResult,
    ClusterResult,
    Report,
    TrainingSummary,
    ValueResult,
    baseline_probabilities,
    build_report,
    rfm_scores,
)
from profiles.predictions.report_metrics import (
    METRIC_LABELS,
    calibration_bins,
    gains_curve,
    lift_at,
    probability_metrics,
    shortfalls,
)

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
RECENCY = FEATURES.index("recency_days")
FREQUENCY = FEATURES.index("frequency_365d")
MONETARY = FEATURES.index("monetary_365d")


def array(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


# --- metrics on small arrays -------------------------------------------------------------


def test_a_perfect_ranking_has_auc_one_and_a_reversed_one_zero() -> None:
    y = array(0, 0, 0, 1, 1)
    perfect = probability_metrics(y, array(0.1, 0.2, 0.3, 0.8, 0.9)).values
    reversed_ = probability_metrics(y, array(0.9, 0.8, 0.7, 0.2, 0.1)).values
    assert perfect["roc_auc"] == 1.0
    assert perfect["pr_auc"] == 1.0
    assert reversed_["roc_auc"] == 0.0


def test_pr_auc_is_the_average_precision_at_each_positive() -> None:
    # positives at ranks 1 and 3: precision 1/1 and 2/3
    values = probability_metrics(array(1, 0, 1), array(0.9, 0.8, 0.7)).values
    assert values["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)


def test_log_loss_and_brier_match_their_definitions() -> None:
    values = probability_metrics(array(1, 0), array(0.8, 0.4)).values
    assert values["brier"] == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert values["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_lift_in_the_top_decile_is_one_over_the_base_rate_when_it_is_all_positives() -> None:
    y = np.zeros(20)
    y[:2] = 1
    predicted = np.linspace(1.0, 0.0, 20)  # the two positives score highest
    assert lift_at(y, predicted, 0.1) == pytest.approx(1 / 0.1)
    assert probability_metrics(y, predicted).values["lift_top_decile"] == pytest.approx(10.0)


def test_tied_predictions_give_the_lift_of_any_order_of_the_ties() -> None:
    y = array(1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert lift_at(y, np.full(10, 0.3), 0.1) == pytest.approx(1.0)
    # the positive ties with one negative at the top: half a positive expected in the top row
    assert lift_at(y, array(0.9, 0.9, *[0.1] * 8), 0.1) == pytest.approx(0.5 / 0.1)


def test_calibration_has_a_bin_per_decile_with_its_mean_prediction_and_observed_rate() -> None:
    predicted = np.repeat(np.arange(10) / 10 + 0.05, 10)
    y = np.array([1.0 if i % 10 < b else 0.0 for b in range(10) for i in range(10)])
    bins = calibration_bins(y, predicted)
    assert [b.rows for b in bins] == [10] * 10
    assert [b.mean_predicted for b in bins] == pytest.approx(list(np.arange(10) / 10 + 0.05))
    assert [b.observed for b in bins] == pytest.approx([b / 10 for b in range(10)])


def test_a_constant_prediction_is_one_calibration_bin_at_the_base_rate() -> None:
    y = array(1, 0, 0, 1, 0, 0, 0, 0)
    (only,) = calibration_bins(y, np.full(8, 0.4))
    assert (only.rows, only.mean_predicted, only.observed) == (8, 0.4, 0.25)
    values = probability_metrics(y, np.full(8, 0.4)).values
    assert values["roc_auc"] == 0.5
    assert values["lift_top_decile"] == pytest.approx(1.0)


def test_the_gains_curve_of_a_perfect_ranking_captures_everyone_at_the_base_rate() -> None:
    y = array(1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    rows, hits = gains_curve(y, np.linspace(1, 0, 10))
    assert (rows[0], hits[0], rows[-1], hits[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (rows[2], hits[2]) == (pytest.approx(0.2), pytest.approx(1.0))
    rows, hits = gains_curve(y, np.full(10, 0.5))  # all tied: the random diagonal
    assert list(rows) == list(hits) == [0.0, 1.0]


# --- the "does not beat" lines -----------------------------------------------------------


def test_a_line_per_metric_where_a_baseline_is_better_and_none_where_the_model_is() -> None:
    model = {"roc_auc": 0.71, "log_loss": 0.40}
    lines = shortfalls(model, {"rfm": {"roc_auc": 0.72, "log_loss": 0.45}}, METRIC_LABELS)
    assert lines == ["does not beat rfm on ROC AUC: 0.7100 vs 0.7200"]
    better = shortfalls(model, {"rfm": {"roc_auc": 0.70, "log_loss": 0.41}}, METRIC_LABELS)
    assert better == []


def test_a_tie_or_a_difference_lost_in_rounding_is_not_a_win() -> None:
    tie = shortfalls({"brier": 0.1}, {"recency": {"brier": 0.1}}, METRIC_LABELS)
    assert tie == ["does not beat recency on Brier: 0.1000 vs 0.1000"]
    # 0.71996 would round up to the baseline's 0.7200; it is still worse
    close = shortfalls({"roc_auc": 0.71996}, {"rfm": {"roc_auc": 0.72}}, METRIC_LABELS)
    assert close == ["does not beat rfm on ROC AUC: 0.7200 vs 0.7200"]


def test_the_report_says_where_a_baseline_ranks_better(tmp_path: Path) -> None:
    y = np.array([0.0] * 8 + [1.0] * 2)
    good = np.linspace(0.05, 0.5, 10)
    bad = good[::-1].copy()
    worse = report(classifier(y=y, predicted=bad, baselines={"recency": good, "rfm": good}))
    lines = worse.classifiers[0].shortfalls
    assert "does not beat recency on ROC AUC: 0.0000 vs 1.0000" in lines
    assert any(line.startswith("does not beat rfm on ROC AUC") for line in lines)
    assert "does not beat recency on ROC AUC" in worse.table()
    assert "purchase_probability: does not beat rfm on ROC AUC" in " ".join(worse.shortfalls)
    better = report(classifier(y=y, predicted=good, baselines={"recency": bad, "rfm": bad}))
    assert better.classifiers[0].shortfalls == []
    assert "does not beat" not in better.table()
    assert "beats recency, rfm on every metric" in better.table()
    (markdown, *_) = better.write(tmp_path)
    assert "does not beat" not in markdown.read_text()


CANDIDATES = {"regression": {"mae": 1.0, "rmse": 1.0, "poisson_deviance": 1.0}}


def test_expected_value_is_compared_with_last_period() -> None:
    actual = array(0, 10, 0, 30)
    close = ValueResult(actual, array(1, 9, 1, 29), "regression", CANDIDATES, actual)
    assert [
        s.split(":")[0] for s in build_report(SUMMARY, [], close, CLUSTERS).value.shortfalls
    ] == [
        "does not beat last period on MAE",
        "does not beat last period on RMSE",
        "does not beat last period on Poisson deviance",
    ]
    naive = array(5, 5, 5, 5)
    ahead = ValueResult(actual, actual + 0.5, "regression", CANDIDATES, naive)
    evaluation = build_report(SUMMARY, [], ahead, CLUSTERS).value
    assert evaluation.shortfalls == []
    assert evaluation.scores["model"].values["mae"] == pytest.approx(0.5)
    assert evaluation.scores["last period"].values["mae"] == pytest.approx(10.0)


# --- degenerate held-out sets ------------------------------------------------------------


def test_one_class_held_out_reports_auc_as_na_with_the_reason(tmp_path: Path) -> None:
    y = np.zeros(12)
    p = np.linspace(0.1, 0.3, 12)
    made = report(classifier(y=y, predicted=p, baselines={"recency": p, "rfm": p}))
    metrics = json.loads(json.dumps(made.metrics(), allow_nan=False))["purchase_probability"]
    assert metrics["scores"]["model"]["roc_auc"] is None
    assert "negative" in metrics["undefined"]["model"]["roc_auc"]
    assert metrics["scores"]["model"]["log_loss"] > 0
    table = made.table()
    assert "n/a" in table
    assert "ROC AUC is n/a for model, recency, rfm: all 12 held-out labels are negative" in table
    assert all(path.exists() for path in made.write(tmp_path))


def test_empty_held_out_sets_do_not_crash(tmp_path: Path) -> None:
    empty = np.empty(0)
    made = build_report(
        TrainingSummary(AS_OF, 30, 0, 0, {"train": [], "calibration": [], "test": []}, {}),
        [
            classifier(target=t, y=empty, predicted=empty, baselines={"recency": empty})
            for t in CLASSIFIER_TARGETS
        ],
        ValueResult(empty, empty, "regression", {}, empty),
        ClusterResult(0, {}, [], [], {}),
    )
    metrics = json.loads(json.dumps(made.metrics(), allow_nan=False))
    assert metrics["purchase_probability"]["scores"]["model"]["roc_auc"] is None
    assert metrics["expected_value"]["scores"]["model"]["mae"] is None
    assert "no held-out rows" in made.table()
    assert "no metric could be compared with a baseline" in made.table()
    assert "beats" not in made.table()  # nothing compared, nothing claimed
    assert len(made.write(tmp_path)) == 6  # md, html, two plots per target


def test_constant_predictions_are_reported_not_rejected(tmp_path: Path) -> None:
    y = array(1, 0, 0, 0, 1, 0, 0, 0, 0, 0)
    constant = np.full(10, 0.2)
    made = report(classifier(y=y, predicted=constant, baselines={"rfm": constant}))
    scores = made.classifiers[0].scores["model"].values
    assert (scores["roc_auc"], scores["lift_top_decile"]) == (0.5, pytest.approx(1.0))
    assert "does not beat rfm on ROC AUC: 0.5000 vs 0.5000" in made.table()
    assert len(made.write(tmp_path)) == 4  # md, html, two plots


def test_arrays_of_different_lengths_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        report(classifier(y=array(0, 1), predicted=array(0.5), baselines={}))


# --- baselines ---------------------------------------------------------------------------


def features(recency: list[float], frequency: list[float], monetary: list[float]) -> np.ndarray:
    x = np.zeros((len(recency), len(FEATURES)))
    x[:, RECENCY], x[:, FREQUENCY], x[:, MONETARY] = recency, frequency, monetary
    return x


def test_rfm_scores_sum_quintiles_with_recent_and_frequent_high() -> None:
    fit = features(list(range(10)), list(range(10)), list(range(10)))
    scores = rfm_scores(fit, features([0, 9, 9], [9, 0, 9], [9, 0, 0]))
    # most recent (R 5) + most orders (F 5) + most revenue (M 5); the opposite; a mix
    assert list(scores) == [15, 3, 1 + 5 + 1]


def test_a_crowd_without_orders_scores_lowest_on_frequency() -> None:
    fit = features([1] * 10, [0] * 7 + [1, 2, 3], [0] * 10)
    scores = rfm_scores(fit, features([1, 1], [0, 3], [0, 0]))
    assert scores[1] - scores[0] == 4  # frequency quintile 1 against 5


def test_the_recency_baseline_learns_the_direction_of_each_target() -> None:
    recency = list(np.linspace(0, 300, 60))
    x = features(recency, [0] * 60, [0] * 60)
    bought = np.array([1.0 if r < 100 else 0.0 for r in recency])
    test = features([5, 250], [0, 0], [0, 0])
    purchase = baseline_probabilities(x, bought, test, target="purchase_probability")
    churn = baseline_probabilities(x, 1 - bought, test, target="churn_probability")
    assert purchase["recency"][0] > purchase["recency"][1]
    assert churn["recency"][0] < churn["recency"][1]
    assert set(purchase) == {"recency", "rfm"}
    for p in (*purchase.values(), *churn.values()):
        assert p.shape == (2,)
        assert ((p > 0) & (p < 1)).all()


def test_baselines_fitted_on_one_class_predict_its_smoothed_rate() -> None:
    x = features([1, 2, 3, 4], [0] * 4, [0] * 4)
    probabilities = baseline_probabilities(x, np.zeros(4), x[:2], target="churn_probability")
    assert list(probabilities["rfm"]) == pytest.approx([0.1, 0.1])
    assert baseline_probabilities(x, np.zeros(4), x[:0], target="churn_probability")[
        "recency"
    ].shape == (0,)


def test_baselines_exist_only_for_the_probability_targets() -> None:
    x = features([1, 2], [0, 1], [0, 5])
    with pytest.raises(ValueError, match="expected_value"):
        baseline_probabilities(x, array(0, 1), x, target="expected_value")


# --- the report's forms ------------------------------------------------------------------


def test_write_produces_markdown_html_and_readable_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(200) < 0.2).astype(float)
    noisy = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, 200), 0.01, 0.99)
    made = report(
        *(
            classifier(target=t, y=y, predicted=noisy, baselines={"recency": rng.random(200)})
            for t in CLASSIFIER_TARGETS
        )
    )
    written = made.write(tmp_path / "model" / "report")
    names = {path.name for path in written}
    assert {"report.md", "report.html"} <= names
    for target in CLASSIFIER_TARGETS:
        assert {f"calibration_{target}.png", f"gains_{target}.png"} <= names
    for path in written:
        assert path.exists()
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG"
                assert min(image.size) > 200
    markdown = (tmp_path / "model" / "report" / "report.md").read_text()
    page = (tmp_path / "model" / "report" / "report.html").read_text()
    for section in (*CLASSIFIER_TARGETS, "expected_value", "clusters"):
        assert f"## {section}" in markdown
        assert section in page
    # each target's plots sit in its own section
    purchase, churn = (markdown.index(f"## {t}") for t in CLASSIFIER_TARGETS)
    assert purchase < markdown.index("(gains_purchase_probability.png)") < churn
    assert page.count("data:image/png;base64,") == 4  # self-contained: no files needed
    assert "2026-02-01 00:00" in markdown  # a cutoff of the training summary
    assert "Calibration of the kept model" in markdown


def test_every_number_is_printed_with_four_decimals() -> None:
    made = report(classifier(y=array(0, 1, 0, 1), predicted=array(0.123456, 0.9, 0.2, 0.7)))
    assert "2.0000" in made.table()  # lift of the top row, a positive, over base rate 0.5
    metric_rows = [line for line in made.table().splitlines() if line.startswith("log-loss")]
    assert all(len(cell.split(".")[1]) == 4 for cell in metric_rows[0].split()[1:])


def test_metrics_are_json_with_the_numbers_the_tables_show() -> None:
    made = report(classifier(y=array(0, 1, 0, 1), predicted=array(0.1, 0.9, 0.2, 0.7)))
    metrics = json.loads(json.dumps(made.metrics(), allow_nan=False))
    purchase = metrics["purchase_probability"]
    assert purchase["scores"]["model"]["roc_auc"] == 1.0
    assert purchase["model"] == "gradient_boosting"
    assert purchase["base_rate"] == 0.5
    assert purchase["candidates"] == {"logistic_regression": 0.5, "gradient_boosting": 0.4}
    assert metrics["clusters"]["silhouettes"] == {"2": 0.3, "3": 0.4}
    assert metrics["summary"]["examples"]["test"] == 4
    assert f"{purchase['scores']['model']['brier']:.4f}" in made.table()


# --- builders ----------------------------------------------------------------------------

SUMMARY = TrainingSummary(
    as_of=AS_OF,
    horizon_days=30,
    events_read=1000,
    users=50,
    cutoffs={
        "train": [AS_OF - timedelta(days=d) for d in (90, 60)],
        "calibration": [AS_OF - timedelta(days=45)],
        "test": [AS_OF - timedelta(days=28)],
    },
    examples={"train": 100, "calibration": 50, "test": 4},
)
CLUSTERS = ClusterResult(
    k=3,
    silhouettes={2: 0.3, 3: 0.4},
    names=["loyal", "browsers", "lapsed"],
    sizes=[10, 30, 10],
    centroids={"recency_days": [3.0, 40.0, 200.0], "views_30d": [5.0, 20.0, 0.0]},
)


def classifier(
    *,
    y: np.ndarray,
    predicted: np.ndarray,
    target: str = "purchase_probability",
    baselines: dict[str, np.ndarray] | None = None,
) -> ClassifierResult:
    flat = np.full(len(y), 0.5)
    return ClassifierResult(
        target=target,
        y_true=y,
        predicted=predicted,
        model_name="gradient_boosting",
        candidates={"logistic_regression": 0.5, "gradient_boosting": 0.4},
        baselines={"recency": flat, "rfm": flat} if baselines is None else baselines,
    )


def report(*classifiers: ClassifierResult, **value: Any) -> Report:
    actual = array(0, 10, 0, 30)
    fields = {
        "y_true": actual,
        "predicted": actual + 1,
        "method": "regression",
        "candidates": CANDIDATES,
        "last_period": array(5, 5, 5, 5),
        **value,
    }
    return build_report(SUMMARY, list(classifiers), ValueResult(**fields), CLUSTERS)

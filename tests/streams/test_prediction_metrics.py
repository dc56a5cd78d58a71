"""What a worker exports about its predictions: users scored, the scores' histograms, and
the drift index per feature and score, refreshed at most every few seconds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from profiles.predictions import FEATURES, TARGETS
from profiles.predictions.drift import distribution
from streams.metrics import DRIFT_PSI, DRIFT_ROWS, Metrics

CARTS = FEATURES.index("carts_30d")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rows(n: int, *, seed: int, carts: float = 2.0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    rows = rng.poisson(3.0, size=(n, len(FEATURES))).astype(float)
    rows[:, CARTS] = rng.poisson(carts, size=n)
    return rows.tolist()


@pytest.fixture
def model(stub_model: Any) -> Any:
    rows = _rows(5000, seed=1)
    columns = np.asarray(rows)
    trained = {name: distribution(columns[:, i]) for i, name in enumerate(FEATURES)}
    scores = stub_model().score(rows)
    trained.update({t: distribution([getattr(s, t) for s in scores]) for t in TARGETS})
    return stub_model(version="m-7", trained=trained)


def _psi(metrics: Metrics, feature: str, version: str = "m-7") -> float | None:
    return metrics.registry.get_sample_value(DRIFT_PSI, {"model": version, "feature": feature})


def _record(metrics: Metrics, model: Any, rows: list[list[float]]) -> None:
    metrics.record_predictions(model, rows, model.score(rows))


def test_scored_users_are_counted_and_their_scores_observed(model: Any) -> None:
    metrics = Metrics(drift_min_rows=10)
    rows = _rows(40, seed=2)
    _record(metrics, model, rows)
    sample = metrics.registry.get_sample_value
    assert sample("nudge_predictions_total", {"model": "m-7"}) == 40
    for score in ("purchase_probability", "churn_probability"):
        labels = {"model": "m-7", "score": score}
        assert sample("nudge_prediction_score_count", labels) == 40
        buckets = {"0.05", "0.5", "0.95", "1.0", "+Inf"}
        assert all(
            sample("nudge_prediction_score_bucket", {**labels, "le": b}) is not None
            for b in buckets
        )
    assert sample("nudge_prediction_expected_value_count", {"model": "m-7"}) == 40
    total = sum(s.expected_value for s in model.score(rows))
    assert sample("nudge_prediction_expected_value_sum", {"model": "m-7"}) == pytest.approx(total)


def test_every_feature_and_score_gets_a_drift_gauge(model: Any) -> None:
    metrics = Metrics(drift_min_rows=10)
    _record(metrics, model, _rows(40, seed=3))
    assert metrics.registry.get_sample_value(DRIFT_ROWS, {"model": "m-7"}) == 40
    for name in (*FEATURES, *TARGETS):
        assert _psi(metrics, name) is not None, name
    text = generate_latest(metrics.registry).decode()
    assert f'{DRIFT_PSI}{{feature="carts_30d",model="m-7"}}' in text


def test_no_drift_figures_before_enough_users_were_scored(model: Any) -> None:
    metrics = Metrics(drift_min_rows=100)
    _record(metrics, model, _rows(99, seed=4))
    assert _psi(metrics, "carts_30d") is None
    assert metrics.registry.get_sample_value(DRIFT_ROWS, {"model": "m-7"}) == 99


def test_the_index_is_recomputed_at_most_every_refresh_interval(model: Any) -> None:
    clock = Clock()
    metrics = Metrics(drift_refresh=10.0, drift_window=1000, drift_min_rows=500, clock=clock)
    _record(metrics, model, _rows(1000, seed=5))
    stable = _psi(metrics, "carts_30d")
    assert stable is not None and stable < 0.1
    _record(metrics, model, _rows(1000, seed=6, carts=6.0))
    clock.now += 9.0
    assert _psi(metrics, "carts_30d") == stable
    clock.now += 1.0
    drifted = _psi(metrics, "carts_30d")
    assert drifted is not None and drifted > 0.2


def test_a_new_model_version_starts_a_new_window(model: Any, stub_model: Any) -> None:
    metrics = Metrics(drift_min_rows=10)
    _record(metrics, model, _rows(40, seed=7))
    newer = stub_model(version="m-8", trained=model.trained)
    _record(metrics, newer, _rows(20, seed=8))
    assert _psi(metrics, "carts_30d", "m-7") is None
    assert _psi(metrics, "carts_30d", "m-8") is not None
    assert metrics.registry.get_sample_value(DRIFT_ROWS, {"model": "m-8"}) == 20
    assert metrics.registry.get_sample_value("nudge_predictions_total", {"model": "m-7"}) == 40

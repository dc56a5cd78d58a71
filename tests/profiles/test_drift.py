"""The population stability index and the drift window a worker keeps per model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from profiles.predictions import FEATURES, TARGETS, Distribution
from profiles.predictions.drift import (
    EPSILON,
    DriftMonitor,
    bin_shares,
    distribution,
    drift_status,
    psi,
)

CARTS = FEATURES.index("carts_30d")


def _population(rng: np.random.Generator, n: int, *, carts: float = 2.0) -> list[list[float]]:
    """Feature rows: small counts everywhere, ``carts`` on average in carts_30d."""
    rows = rng.poisson(3.0, size=(n, len(FEATURES))).astype(float)
    rows[:, CARTS] = rng.poisson(carts, size=n)
    return rows.tolist()


def _trained(model_class: Any, rows: list[list[float]]) -> Any:
    """A stub model whose training distributions are those of ``rows``."""
    columns = np.asarray(rows)
    trained = {name: distribution(columns[:, i]) for i, name in enumerate(FEATURES)}
    scores = model_class().score(rows)
    for target in TARGETS:
        trained[target] = distribution([getattr(s, target) for s in scores])
    return model_class(trained=trained)


# --- psi ---------------------------------------------------------------------------------


def test_a_sample_against_its_own_distribution_has_no_drift() -> None:
    values = np.random.default_rng(1).normal(size=5000)
    assert psi(distribution(values), values) == pytest.approx(0.0, abs=1e-12)


def test_another_sample_of_the_same_population_is_stable() -> None:
    rng = np.random.default_rng(2)
    trained = distribution(rng.normal(size=20_000))
    assert drift_status(psi(trained, rng.normal(size=5000))) == "ok"


def test_a_shifted_population_has_drifted() -> None:
    rng = np.random.default_rng(3)
    trained = distribution(rng.normal(size=20_000))
    value = psi(trained, rng.normal(loc=1.0, size=5000))
    assert value > 0.2
    assert drift_status(value) == "drifted"


def test_a_hand_checked_case() -> None:
    halves = Distribution(edges=(-math.inf, 0.0, math.inf), proportions=(0.5, 0.5))
    # 8 of 10 below the edge: shares 0.8 and 0.2 against 0.5 and 0.5
    by_hand = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(halves, [-1.0] * 8 + [1.0] * 2) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.4159, abs=1e-4)


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    trained = Distribution(edges=(-math.inf, 0.0, 1.0, math.inf), proportions=(0.5, 0.5, 0.0))
    value = psi(trained, [-1.0] * 10)
    by_hand = (1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert math.isfinite(value)
    assert value == pytest.approx(by_hand)


def test_a_value_on_an_edge_falls_in_the_bin_above() -> None:
    """Bins are left-closed; training and monitoring both bin through bin_shares."""
    assert bin_shares((-math.inf, 0.0, math.inf), [0.0, -0.5]) == [0.5, 0.5]


def test_a_mostly_zero_count_keeps_its_zeros_apart() -> None:
    values = [0.0] * 95 + [1.0] * 3 + [5.0] * 2
    trained = distribution(values)
    assert len(set(trained.edges)) == len(trained.edges)
    assert sum(trained.proportions) == pytest.approx(1.0)
    assert max(trained.proportions) == pytest.approx(0.95)
    assert psi(trained, values) == pytest.approx(0.0, abs=1e-12)
    # a fifth of users now have a non-zero count: drifted
    assert drift_status(psi(trained, [0.0] * 80 + [1.0] * 20)) == "drifted"


def test_a_mostly_one_flag_keeps_its_zeros_apart() -> None:
    values = [1.0] * 95 + [0.0] * 5
    trained = distribution(values)
    assert sorted(trained.proportions)[-2:] == pytest.approx([0.05, 0.95])
    assert drift_status(psi(trained, [1.0] * 70 + [0.0] * 30)) == "drifted"


def test_status_thresholds() -> None:
    assert [drift_status(v) for v in (0.05, 0.1, 0.15, 0.2, 0.21)] == [
        "ok",
        "watch",
        "watch",
        "watch",
        "drifted",
    ]


# --- DriftMonitor ------------------------------------------------------------------------


def test_the_monitor_watches_every_feature_and_numeric_score(stub_model: Any) -> None:
    model = _trained(stub_model, _population(np.random.default_rng(4), 2000))
    assert DriftMonitor(model).names == (*FEATURES, *TARGETS)


def test_the_monitor_says_nothing_below_its_minimum_rows(stub_model: Any) -> None:
    rng = np.random.default_rng(5)
    model = _trained(stub_model, _population(rng, 2000))
    monitor = DriftMonitor(model, window=1000, min_rows=200)
    rows = _population(rng, 199)
    monitor.observe(rows, model.score(rows))
    assert monitor.psi() == {}
    monitor.observe(rows[:1], model.score(rows[:1]))
    assert set(monitor.psi()) == set(monitor.names)


def test_the_monitor_moves_when_the_mix_changes(stub_model: Any) -> None:
    rng = np.random.default_rng(6)
    model = _trained(stub_model, _population(rng, 5000))
    monitor = DriftMonitor(model, window=2000, min_rows=500)
    same = _population(rng, 2000)
    monitor.observe(same, model.score(same))
    before = monitor.psi()
    assert max(before.values()) < 0.1
    carting = _population(rng, 2000, carts=6.0)
    for start in range(0, 2000, 250):
        batch = carting[start : start + 250]
        monitor.observe(batch, model.score(batch))
    after = monitor.psi()
    assert drift_status(after["carts_30d"]) == "drifted"
    assert drift_status(after["purchase_probability"]) == "drifted"
    assert after["views_7d"] < 0.1


def test_the_window_keeps_only_the_latest_rows(stub_model: Any) -> None:
    rng = np.random.default_rng(7)
    model = _trained(stub_model, _population(rng, 5000))
    monitor = DriftMonitor(model, window=1000, min_rows=500)
    carting = _population(rng, 1500, carts=6.0)
    monitor.observe(carting, model.score(carting))
    assert len(monitor) == 1000
    assert drift_status(monitor.psi()["carts_30d"]) == "drifted"
    for _ in range(7):  # 1050 rows like the training data, in batches that wrap the ring
        batch = _population(rng, 150)
        monitor.observe(batch, model.score(batch))
    assert len(monitor) == 1000
    assert drift_status(monitor.psi()["carts_30d"]) == "ok"


def test_rows_and_scores_must_pair_up(stub_model: Any) -> None:
    model = _trained(stub_model, _population(np.random.default_rng(8), 1000))
    rows = _population(np.random.default_rng(9), 3)
    with pytest.raises(ValueError, match="3 rows but 2 scores"):
        DriftMonitor(model).observe(rows, model.score(rows)[:2])

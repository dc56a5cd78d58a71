"""Training on a planted-truth history: the models find what was planted, honestly
validated, and nothing after ``as_of`` can reach them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from profiles.predictions.examples import Labelled
from profiles.predictions.history import parse_events
from profiles.predictions.synthetic import SyntheticHistory, Truth
from profiles.predictions.train import train
from tests.profiles.conftest import SCORING, Planted

#: how far below the Bayes-optimal AUC (which knows each user's true rates) the model may
#: be: it has to learn the rates from a few months of behaviour
AUC_TOLERANCE = 0.10


def _aligned(truth: Truth, user_ids: tuple[str, ...]) -> list[int]:
    index = {u: i for i, u in enumerate(truth.user_ids)}
    return [index[u] for u in user_ids]


def _test_cutoff(planted: Planted) -> tuple[Labelled, Truth, list[int]]:
    test = planted.result.examples.cutoffs[-1]
    truth = planted.history.truth(test.rows.at, planted.result.examples.horizon_days)
    return test, truth, _aligned(truth, test.rows.user_ids)


def _predicted(planted: Planted, target: str) -> np.ndarray:
    (kept,) = [c for c in planted.result.report.classifiers if c.result.target == target]
    return np.asarray(kept.result.predicted)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(y[which == b].mean() - p[which == b].mean()) * (which == b).mean()
            for b in range(bins)
            if (which == b).any()
        )
    )


def test_purchase_auc_is_close_to_the_planted_rates(planted: Planted) -> None:
    test, truth, order = _test_cutoff(planted)
    y = test.purchased.astype(int)
    best_possible = roc_auc_score(y, truth.purchase[order])
    model = roc_auc_score(y, _predicted(planted, "purchase_probability"))
    assert best_possible > 0.8  # the planted rates do separate buyers
    assert model >= best_possible - AUC_TOLERANCE


def test_churn_auc_is_close_to_the_planted_rates(planted: Planted) -> None:
    test, truth, order = _test_cutoff(planted)
    buyers = test.past_buyers
    y = test.churned[buyers].astype(int)
    best_possible = roc_auc_score(y, truth.churn[order][buyers])
    model = roc_auc_score(y, _predicted(planted, "churn_probability"))
    assert model >= best_possible - AUC_TOLERANCE


@pytest.mark.parametrize("target", ["purchase_probability", "churn_probability"])
def test_probabilities_are_calibrated(planted: Planted, target: str) -> None:
    test = planted.result.examples.cutoffs[-1]
    y = test.purchased if target == "purchase_probability" else test.churned[test.past_buyers]
    assert expected_calibration_error(y.astype(float), _predicted(planted, target)) < 0.05


@pytest.mark.parametrize("target", ["purchase_probability", "churn_probability"])
def test_the_model_beats_both_baselines(planted: Planted, target: str) -> None:
    scores = planted.result.report.metrics()[target]["scores"]
    for baseline in ("recency", "rfm"):
        assert scores["model"]["roc_auc"] > scores[baseline]["roc_auc"]
        assert scores["model"]["log_loss"] < scores[baseline]["log_loss"]


def test_expected_value_beats_last_period(planted: Planted) -> None:
    scores = planted.result.report.metrics()["expected_value"]["scores"]
    (model,) = [s for name, s in scores.items() if name != "last period"]
    assert model["mae"] < scores["last period"]["mae"]


def test_clusters_recover_the_planted_groups(planted: Planted) -> None:
    """Among users who have not churned and have shown some months of behaviour (a
    churned user's group no longer shows in anything it does)."""
    current = planted.result.examples.current
    truth = planted.history.truth(current.at, 30)
    order = _aligned(truth, current.user_ids)
    shown = truth.alive[order] & (truth.tenure_days[order] >= 90)
    clusters = [s.cluster for s in planted.result.model.score(current.features.tolist())]
    found = np.asarray(clusters)[shown]
    assert adjusted_rand_score(truth.group[order][shown], found) > 0.5


def test_cluster_names_are_plain_and_unique(planted: Planted) -> None:
    names = planted.result.model.manifest.clusters.names
    assert len(set(names)) == len(names)
    assert any("never bought" in n for n in names)
    assert any("buyers" in n or "spenders" in n for n in names)


def _small(seed: int = 5) -> SyntheticHistory:
    return SyntheticHistory(users=400, days=200, seed=seed)


def _train_small(events: list[dict[str, object]], history: SyntheticHistory, out: Path) -> Path:
    train(
        parse_events(events),
        as_of=history.end - timedelta(days=20),
        scoring=SCORING,
        out=out,
        horizon_days=20,
        cutoffs=4,
        k_range=(3, 4),
    )
    return out


def _same_model(a: Path, b: Path, rows: list[list[float]]) -> None:
    from profiles.predictions.bundle import load_model

    first, second = load_model(a), load_model(b)
    assert first.score(rows) == second.score(rows)
    assert first.manifest.metrics == second.manifest.metrics
    assert first.manifest.distributions == second.manifest.distributions


def test_events_after_as_of_cannot_change_the_model(tmp_path: Path) -> None:
    history = _small()
    events = list(history.events())
    later = history.end - timedelta(days=20)
    before = [e for e in events if e["ts"] <= later]
    # the future: more of everything, including purchases by users seen before
    future = [
        {**e, "event_id": f"late-{i}", "ts": later + timedelta(hours=1 + i % 200)}
        for i, e in enumerate(before[-3000:])
    ]
    a = _train_small(before, history, tmp_path / "a")
    b = _train_small(before + future, history, tmp_path / "b")
    _same_model(a, b, [[float(i % 7)] * 35 for i in range(20)])


def test_the_same_input_gives_the_same_model(tmp_path: Path) -> None:
    history = _small(seed=6)
    events = list(history.events())
    a = _train_small(events, history, tmp_path / "a")
    b = _train_small(events, history, tmp_path / "b")
    _same_model(a, b, [[float(i % 5)] * 35 for i in range(20)])

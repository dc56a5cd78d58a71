"""Training on a planted-truth history: the models find what was planted, honestly
validated, and nothing after ``as_of`` can reach them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from profiles import Profile, apply_event
from profiles.predictions import FEATURES, TARGETS
from profiles.predictions.drift import DRIFTED, WATCH, DriftMonitor
from profiles.predictions.examples import Labelled
from profiles.predictions.features import feature_vector
from profiles.predictions.history import parse_events
from profiles.predictions.synthetic import SyntheticHistory, Truth
from profiles.predictions.train import train
from tests.profiles.conftest import SCORING, Planted

#: how far below the Bayes-optimal AUC (which knows each user's true rates) the model may
#: be: it has to learn the rates from a few months of behaviour. Measured on seeds 3, 4
#: and 5 (held-out cutoff): purchase gaps 0.057-0.078 for the model, 0.114-0.132 for the
#: recency baseline and 0.099-0.106 for RFM; churn gaps 0.023-0.040 for the model,
#: 0.148-0.163 for recency and 0.200-0.229 for RFM. Each bound leaves the model some
#: margin and is missed by both baselines (asserted, so the bound keeps meaning something).
AUC_TOLERANCE = {"purchase_probability": 0.095, "churn_probability": 0.08}


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


def chance_calibration_error(p: np.ndarray, *, draws: int = 200, quantile: float = 0.99) -> float:
    """The calibration error a perfectly calibrated model with predictions ``p`` shows by
    chance (outcomes drawn from ``p`` itself), at ``quantile``: a few hundred held-out
    past buyers give an error near 0.05 even when the probabilities are exact."""
    rng = np.random.default_rng(0)
    errors = [
        expected_calibration_error((rng.random(p.size) < p).astype(float), p) for _ in range(draws)
    ]
    return float(np.quantile(errors, quantile))


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
    assert best_possible > 0.8  # the planted rates do separate buyers
    _close_to_best(planted, "purchase_probability", y, best_possible)


def test_churn_auc_is_close_to_the_planted_rates(planted: Planted) -> None:
    test, truth, order = _test_cutoff(planted)
    buyers = test.past_buyers
    y = test.churned[buyers].astype(int)
    best_possible = roc_auc_score(y, truth.churn[order][buyers])
    _close_to_best(planted, "churn_probability", y, best_possible)


def _close_to_best(planted: Planted, target: str, y: np.ndarray, best_possible: float) -> None:
    (kept,) = [c for c in planted.result.report.classifiers if c.result.target == target]
    bound = best_possible - AUC_TOLERANCE[target]
    assert roc_auc_score(y, kept.result.predicted) >= bound
    assert roc_auc_score(y, kept.result.baselines["recency"]) < bound


@pytest.mark.parametrize("target", ["purchase_probability", "churn_probability"])
def test_probabilities_are_calibrated(planted: Planted, target: str) -> None:
    test = planted.result.examples.cutoffs[-1]
    y = test.purchased if target == "purchase_probability" else test.churned[test.past_buyers]
    p = _predicted(planted, target)
    # calibrated on the cutoff before: the base rate moving between months adds a little
    assert expected_calibration_error(y.astype(float), p) < chance_calibration_error(p) + 0.02


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


def _worker_rows(events: list[dict[str, object]], since: datetime) -> list[list[float]]:
    """Rows as the live worker takes them: right after each event, as of its time."""
    profiles: dict[str, Profile | None] = {}
    rows = []
    for event in parse_events(events):
        profile = apply_event(profiles.get(event.user_id), event, SCORING, in_place=True)
        profiles[event.user_id] = profile
        if event.ts > since and profile is not None:
            rows.append(feature_vector(profile, event.ts, SCORING))
    return rows


def _drift(planted: Planted, events: list[dict[str, object]]) -> dict[str, float]:
    model = planted.result.model
    rows = _worker_rows(events, planted.result.examples.as_of - timedelta(days=30))
    monitor = DriftMonitor(model, window=len(rows))
    monitor.observe(rows, model.score(rows))
    return monitor.psi()


@pytest.fixture(scope="module")
def fresh(planted: Planted) -> list[dict[str, object]]:
    """Another shop from the same generator, over the same days."""
    history = planted.history
    return list(SyntheticHistory(users=1500, days=300, seed=13, start=history.start).events())


def test_a_fresh_shop_scored_like_the_worker_does_not_drift(
    planted: Planted, fresh: list[dict[str, object]]
) -> None:
    """The training distributions are those of the rows the worker scores, so a shop
    that behaves the same stays under the "watch" level on every feature and score."""
    psi = _drift(planted, fresh)
    assert set(psi) == {*FEATURES, *TARGETS}
    assert {name: value for name, value in psi.items() if value >= WATCH} == {}


def test_a_shop_that_behaves_otherwise_drifts(
    planted: Planted, fresh: list[dict[str, object]]
) -> None:
    no_purchases = [e for e in fresh if e["type"] != "purchase"]
    assert max(_drift(planted, no_purchases).values()) > DRIFTED
    views = [e for e in fresh if e["type"] == "product_view"]
    assert views
    doubled = fresh + [{**e, "event_id": f"{e['event_id']}-again"} for e in views]
    doubled.sort(key=lambda e: e["ts"])  # type: ignore[arg-type,return-value]
    assert _drift(planted, doubled)["views_7d"] > DRIFTED

"""The Prometheus alerting rules shipped in config/prometheus: they parse, they name only
metrics the worker exports, and (where promtool is installed) Prometheus accepts them and
the drift alert fires when, and only when, a feature stays drifted for 30 minutes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from profiles.predictions import FEATURES, TARGETS
from profiles.predictions.drift import distribution
from streams.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "config" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _exported_names(stub_model: Any) -> set[str]:
    """Every metric and sample name a worker that scored users exports."""
    rows = np.random.default_rng(1).poisson(3.0, size=(600, len(FEATURES))).astype(float)
    trained = {name: distribution(rows[:, i]) for i, name in enumerate(FEATURES)}
    scores = stub_model().score(rows.tolist())
    trained.update({t: distribution([getattr(s, t) for s in scores]) for t in TARGETS})
    model = stub_model(trained=trained)
    metrics = Metrics(drift_min_rows=10)
    metrics.record_predictions(model, rows.tolist(), model.score(rows.tolist()))
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_alert_is_complete() -> None:
    rules = _rules()
    assert rules
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert {"summary", "description"} <= set(rule["annotations"])


def test_the_drift_alert_names_the_feature_and_says_to_retrain() -> None:
    drift = next(rule for rule in _rules() if rule["alert"] == "NudgePredictionDrift")
    assert drift["expr"] == "max by (model, feature) (nudge_prediction_drift_psi) > 0.2"
    assert drift["for"] == "30m"
    assert "{{ $labels.feature }}" in drift["annotations"]["summary"]
    assert "{{ $labels.feature }}" in drift["annotations"]["description"]
    assert "nudge model train" in drift["annotations"]["description"]


def test_alerts_name_only_metrics_the_worker_exports(stub_model: Any) -> None:
    exported = _exported_names(stub_model)
    for rule in _rules():
        named = set(re.findall(r"\bnudge_[a-z0-9_]+", rule["expr"]))
        assert named, rule["alert"]
        assert named <= exported, f"{rule['alert']}: {sorted(named - exported)} not exported"


def test_prometheus_scrapes_the_worker_of_the_compose_file() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    port = compose["nudge"]["environment"]["NUDGE_WEB_PORT"]
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert f"nudge:{port}" in targets
    mounted = compose["prometheus"]["volumes"][0]
    assert mounted.startswith("./config/prometheus:/etc/prometheus")


@needs_promtool
def test_promtool_accepts_the_rules_and_the_config() -> None:
    for args in (
        ["check", "rules", str(ALERTS)],
        ["check", "config", str(PROMETHEUS / "prometheus.yml")],
    ):
        run = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


def _psi_series(feature: str, instance: str, values: str) -> dict[str, str]:
    labels = f'model="m-7",feature="{feature}",instance="{instance}",job="nudge"'
    return {"series": f"nudge_prediction_drift_psi{{{labels}}}", "values": values}


@needs_promtool
def test_the_drift_alert_fires_after_30_minutes_above_the_threshold(tmp_path: Path) -> None:
    summary = "Prediction model m-7: carts_30d has drifted (PSI 0.35)"
    description = (
        "Live users differ from the training data in carts_30d (population stability "
        "index 0.35 for 30 minutes; above 0.2 the scores of model m-7 should not be "
        "trusted). Look at `nudge model report --live` for the other features and scores, "
        "then retrain on recent history with `nudge model train` and load the new model."
    )
    firing = {
        "exp_labels": {"severity": "warning", "model": "m-7", "feature": "carts_30d"},
        "exp_annotations": {"summary": summary, "description": description},
    }
    spec = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # two workers: the alert takes the larger index, once per feature
                    _psi_series("carts_30d", "w1", "0.35x45"),
                    _psi_series("carts_30d", "w2", "0.1x45"),
                    _psi_series("views_7d", "w1", "0.15x45"),  # watch, not drifted
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "NudgePredictionDrift", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "NudgePredictionDrift",
                        "exp_alerts": [firing],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "drift_test.yml"
    path.write_text(yaml.safe_dump(spec))
    run = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr

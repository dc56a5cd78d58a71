"""The Prometheus alerting rules and config shipped in config/prometheus: every alert is
complete, Prometheus scrapes what docker-compose.yml runs, and (where promtool is
installed) Prometheus accepts the files and the alerts fire when, and only when, they
should (alerts.test.yml, and the drift alert below). That the rules name only metrics a
worker exports is checked against a live worker in test_dashboard.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "config" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
#: the port each scraped compose service serves /metrics on, by the setting that sets it
PORT_SETTINGS = ("NUDGE_WEB_PORT", "NUDGE_COLLECTOR_PORT", "NUDGE_MAILER_WEB_PORT")


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _promtool(promtool: str, *args: str) -> None:
    run = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_complete() -> None:
    rules = _rules()
    assert rules
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert {"summary", "description"} <= set(rule["annotations"])
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]


def test_the_drift_alert_names_the_feature_and_says_to_retrain() -> None:
    drift = next(rule for rule in _rules() if rule["alert"] == "NudgePredictionDrift")
    assert drift["expr"] == "max by (model, feature) (nudge_prediction_drift_psi) > 0.2"
    assert drift["for"] == "30m"
    assert "{{ $labels.feature }}" in drift["annotations"]["summary"]
    assert "{{ $labels.feature }}" in drift["annotations"]["description"]
    assert "nudge model train" in drift["annotations"]["description"]


def test_prometheus_scrapes_the_services_of_the_compose_file_on_their_ports() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets["nudge"] == "nudge:6066"  # the job the alerts and the dashboard read
    for target in targets.values():
        service, port = target.split(":")
        environment = compose[service]["environment"]
        assert port in [environment.get(name) for name in PORT_SETTINGS], target
    assert {"nudge", "collector", "mailer"} <= {t.split(":")[0] for t in targets.values()}
    mounted = compose["prometheus"]["volumes"][0]
    assert mounted.startswith("./config/prometheus:/etc/prometheus")


def test_promtool_accepts_the_rules_and_the_config(promtool: str) -> None:
    _promtool(promtool, "check", "rules", str(ALERTS))
    _promtool(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_the_lag_dead_letter_and_silence_alerts_fire_as_their_unit_tests_say(
    promtool: str,
) -> None:
    _promtool(promtool, "test", "rules", str(PROMETHEUS / "alerts.test.yml"))


def _psi_series(feature: str, instance: str, values: str) -> dict[str, str]:
    labels = f'model="m-7",feature="{feature}",instance="{instance}",job="nudge"'
    return {"series": f"nudge_prediction_drift_psi{{{labels}}}", "values": values}


def test_the_drift_alert_fires_after_30_minutes_above_the_threshold(
    promtool: str, tmp_path: Path
) -> None:
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
    _promtool(promtool, "test", "rules", str(path))

"""The Grafana dashboard (config/grafana/dashboards/nudge.json): every panel queries the
provisioned Prometheus data source with valid PromQL, and the dashboard and the alert
rules name only metrics a live worker exports."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Kafka, WorkerEnv, WorkerProcess, signup

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "config" / "grafana" / "dashboards" / "nudge.json"
DATASOURCES = REPO / "config" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
ALERTS = REPO / "config" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b(?:nudge|process)_[a-z0-9_]+")
#: the sample names a metric family of each type exposes, by suffix
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def _panel_queries() -> Iterator[tuple[str, str]]:
    for panel in _panels():
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def _alert_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def _exported(text: str) -> set[str]:
    """Every name a query may use from this /metrics page: families and their samples, a
    histogram's ``_bucket``/``_count``/``_sum`` and a counter's ``_total`` even before a
    labelled one has its first series."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_panel_queries_the_provisioned_data_source() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    panels = _panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_the_panel_queries_are_promql_prometheus_accepts(promtool: str, tmp_path: Path) -> None:
    """promtool parses them as recording rules (it has no offline query check)."""
    rules = [
        {"record": f"panel:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(_panel_queries())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    run = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


async def test_alerts_and_panels_name_only_metrics_a_live_worker_exports(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[[WorkerEnv], WorkerProcess],
    kafka: Kafka,
) -> None:
    env = worker_env(winback_wait="1h")
    worker = start_worker(env)
    await kafka.produce(env.events_topic, signup("metrics-reader"))
    assert await kafka.wait_for_sends(env.send_topic, "metrics-reader", "welcome")
    status, body = worker.get("/metrics")
    assert status == 200
    exported = _exported(body.decode())
    missing = {
        f"{source}: {name}"
        for source, expr in [*_alert_queries(), *_panel_queries()]
        for name in METRIC.findall(expr)
        if name not in exported
    }
    assert not missing, "not exported:\n" + "\n".join(sorted(missing))

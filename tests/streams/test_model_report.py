"""``nudge model report --live`` reads a running worker's drift from its /metrics."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from profiles.predictions import FEATURES, TARGETS
from profiles.predictions.drift import distribution
from streams.metrics import Metrics
from streams.model_report import DriftRow, LiveDrift, render_drift, report

CARTS = FEATURES.index("carts_30d")

Serve = Callable[[bytes], str]


def _rows(n: int, *, seed: int, carts: float = 2.0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    rows = rng.poisson(3.0, size=(n, len(FEATURES))).astype(float)
    rows[:, CARTS] = rng.poisson(carts, size=n)
    return rows.tolist()


def _worker_metrics(stub_model: Any, *, scored: int, carts: float = 6.0) -> bytes:
    """The metrics page of a worker that scored ``scored`` users who put more in their
    carts than the training population did."""
    training = _rows(5000, seed=1)
    columns = np.asarray(training)
    trained = {name: distribution(columns[:, i]) for i, name in enumerate(FEATURES)}
    scores = stub_model().score(training)
    trained.update({t: distribution([getattr(s, t) for s in scores]) for t in TARGETS})
    model = stub_model(version="m-7", trained=trained)
    metrics = Metrics(drift_min_rows=500)
    if scored:
        live = _rows(scored, seed=2, carts=carts)
        metrics.record_predictions(model, live, model.score(live))
    return generate_latest(metrics.registry)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Serve a metrics page on a loopback port; returns its /metrics address."""
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/metrics"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(report, list(args), env=env)


def test_the_table_flags_drifted_features_and_says_to_retrain(
    serve: Serve, stub_model: Any
) -> None:
    url = serve(_worker_metrics(stub_model, scored=2000))
    result = _run("--live", "--url", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "model m-7: 2000 users scored, PSI over the last 2000"
    carts = next(line for line in lines if " carts_30d " in line)
    assert carts.split()[0] == "m-7" and carts.endswith("drifted")
    views = next(line for line in lines if " views_7d " in line)
    assert not views.endswith(("drifted", "watch"))
    assert "retrain with `nudge model train`" in lines[-1]
    assert len([line for line in lines if line.startswith("m-7 ")]) == len(FEATURES) + 3


def test_the_default_address_comes_from_the_settings(serve: Serve, stub_model: Any) -> None:
    url = serve(_worker_metrics(stub_model, scored=1000))
    port = url.split(":")[2].split("/")[0]
    result = _run("--live", env={"NUDGE_WEB_HOST": "127.0.0.1", "NUDGE_WEB_PORT": port})
    assert result.exit_code == 0, result.output
    assert "carts_30d" in result.output


def test_an_unreachable_worker_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _run("--live", "--url", f"http://127.0.0.1:{port}/metrics")
    assert result.exit_code == 2
    assert f"cannot read the worker's metrics at http://127.0.0.1:{port}/metrics" in result.output


def test_a_worker_without_a_model_is_a_clear_error(serve: Serve) -> None:
    result = _run("--live", "--url", serve(generate_latest(Metrics().registry)))
    assert result.exit_code == 2
    assert "exports no prediction metrics" in result.output


def test_a_worker_that_scored_too_few_users_says_so(serve: Serve, stub_model: Any) -> None:
    result = _run("--live", "--url", serve(_worker_metrics(stub_model, scored=100)))
    assert result.exit_code == 2
    assert "no drift figures yet (model m-7: 100 scored, 100 in the window)" in result.output


def test_a_page_that_is_not_metrics_is_a_clear_error(serve: Serve) -> None:
    result = _run("--live", "--url", serve(b"<html>{not metrics}</html>"))
    assert result.exit_code == 2
    assert "not a Prometheus metrics page" in result.output


def test_only_the_live_report_exists() -> None:
    result = _run()
    assert result.exit_code == 2
    assert "--live" in result.output


def test_watch_and_drifted_are_told_apart() -> None:
    rows = [DriftRow("m", "a", 0.35), DriftRow("m", "b", 0.15), DriftRow("m", "c", 0.02)]
    lines = render_drift(LiveDrift(rows=rows, scored={"m": 10}, window={"m": 10})).splitlines()
    flags = {line.split()[1]: line.split()[3:] for line in lines[2:5]}
    assert flags == {"a": ["drifted"], "b": ["watch"], "c": []}
    assert lines[-1].startswith("1 drifted (PSI > 0.2), 1 to watch (0.1-0.2)")

"""docker-compose.yml, the Dockerfile and Grafana's provisioning cannot run here (no
Docker engine): these tests keep them honest instead. The services use the image the
Dockerfile builds, every file a service mounts exists, the image runs as a non-root user
with the shipped config, its health check passes on a ready worker only, and Grafana
finds the data source and the dashboard where the compose file puts them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "config" / "grafana"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return services


def _final_stage() -> list[tuple[str, str]]:
    """The Dockerfile's instructions after its last FROM, as (KEYWORD, arguments)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return [(keyword, rest) for keyword, rest in instructions[last_from + 1 :]]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts: container path -> host path (relative to the checkout)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out[target] = source
    return out


def test_the_services_run_the_image_the_dockerfile_builds() -> None:
    services = _services()
    worker = services["nudge"]
    assert worker["build"] == "." and (REPO / "Dockerfile").is_file()
    for name in ("collector", "mailer"):
        assert services[name]["image"] == worker["image"]
        assert services[name]["pull_policy"] == "never"  # built, never pulled
        assert services[name]["command"] == [name]
    assert "command" not in worker  # the image's CMD: worker
    assert services["mailer"]["environment"]["NUDGE_SMTP_URL"].startswith("smtp://mailpit:")


def test_kafka_runs_kraft_and_redis_keeps_an_append_only_file() -> None:
    services = _services()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"


def test_every_image_is_pinned_and_every_mounted_file_exists() -> None:
    for name, service in _services().items():
        image = service.get("image", "")
        tag = image.rpartition(":")[2]
        assert tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
        for source in _mounts(service).values():
            assert (REPO / source).exists(), f"{name} mounts {source}"


def test_the_image_runs_nudge_as_a_non_root_user_with_the_shipped_config() -> None:
    stage = _final_stage()
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("ENTRYPOINT", '["nudge"]') in stage
    assert ("CMD", '["worker"]') in stage
    assert ("COPY", "config /app/config") in stage
    assert any(k == "ENV" and "NUDGE_CONFIG_DIR=/app/config" in rest for k, rest in stage)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", "tests"} <= set(ignored)


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_image_health_check_passes_only_while_the_worker_is_ready(
    health_server: ThreadingHTTPServer,
) -> None:
    healthcheck = next(rest for keyword, rest in _final_stage() if keyword == "HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python"  # slim images have no curl
    port = str(health_server.server_address[1])

    def check() -> int:
        env = {**os.environ, "NUDGE_WEB_PORT": port}
        return subprocess.run([sys.executable, *command[1:]], env=env, timeout=30).returncode

    _Ready.status = 200
    assert check() == 0
    _Ready.status = 503
    assert check() != 0


def test_grafana_finds_the_data_source_and_the_dashboard_where_compose_mounts_them() -> None:
    grafana = _services()["grafana"]
    mounts = _mounts(grafana)
    provisioning = REPO / mounts["/etc/grafana/provisioning"]
    assert provisioning == GRAFANA / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in _services()["prometheus"]["ports"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "nudge.yml").read_text())[
        "providers"
    ]
    dashboards = REPO / mounts[provider["options"]["path"]]
    assert (dashboards / "nudge.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/nudge.json"

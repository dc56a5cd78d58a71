"""``nudge collector`` as it runs: a real process on the session's broker and Redis (events
on the topic keyed by user, a click, an unsubscribe, SIGTERM), and the app on a broker that
goes away (503, never 200)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from profiles import Keys, LinkSigner, UnsubscribeSigner
from streams.collector import create_app
from streams.collector_services import CollectorServices
from streams.embedded import free_port, start_broker
from streams.identities import InMemoryIdentities
from streams.publisher import KafkaPublisher
from streams.settings import Settings

from .conftest import NUDGE, UNSUBSCRIBE_KEY, Kafka, eventually

WRITE_KEY = "live-collector-write-key-0123456789abcdef"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
RID = "3f2a9c0d8e7b6a5f4e3d2c1b0a998877"


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    topic: str
    keys: Keys
    log: Path


@pytest.fixture(scope="module")
def collector(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    unique = os.urandom(4).hex()
    port = free_port()
    env = {
        **os.environ,
        "NUDGE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "NUDGE_REDIS_URL": redis_url,
        "NUDGE_REDIS_PREFIX": f"it-{unique}",
        "NUDGE_EVENTS_TOPIC": f"collected-{unique}",
        "NUDGE_COLLECTOR_WRITE_KEYS": WRITE_KEY,
        "NUDGE_UNSUBSCRIBE_KEY": UNSUBSCRIBE_KEY,
        "NUDGE_COLLECTOR_PORT": str(port),
        "NUDGE_LOG_LEVEL": "info",
    }
    log = tmp_path_factory.mktemp("collector") / "collector.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(NUDGE), "collector"], env=env, stdout=out, stderr=out)
    running = Running(
        proc,
        f"http://127.0.0.1:{port}",
        env["NUDGE_EVENTS_TOPIC"],
        Keys(env["NUDGE_REDIS_PREFIX"]),
        log,
    )
    deadline = time.monotonic() + 30
    while not _ready(running):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"collector did not start:\n{log.read_text()}")
        time.sleep(0.1)
    yield running
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _ready(running: Running) -> bool:
    try:
        return httpx.get(f"{running.url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
async def http(collector: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as client:
        yield client


async def on_topic(kafka: Kafka, topic: str, count: int) -> list[tuple[bytes, dict[str, Any]]]:
    async def read() -> list[tuple[bytes, dict[str, Any]]] | None:
        records = [(r.key, orjson.loads(r.value)) for r in await kafka.read_all(topic)]
        return records if len(records) >= count else None

    return await eventually(read, timeout=20)


async def test_events_arrive_on_the_topic_keyed_by_user(
    collector: Running, http: httpx.AsyncClient, kafka: Kafka, redis_client: Any
) -> None:
    batch = [
        {
            "type": "track",
            "anonymousId": "anon-live",
            "event": "Product Viewed",
            "properties": {"sku": "mug", "price": 12},
            "messageId": "live-1",
        },
        {
            "type": "identify",
            "anonymousId": "anon-live",
            "userId": "live-user",
            "traits": {"plan": "pro"},
            "messageId": "live-2",
        },
        {
            "type": "page",
            "anonymousId": "anon-live",
            "properties": {"url": "https://shop.example/"},
            "messageId": "live-3",
        },
    ]
    response = await http.post("/v1/batch", json={"batch": batch}, headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"success": True})
    own = {
        "event_id": "live-4",
        "type": "wishlist.shared",
        "user_id": "other-user",
        "ts": "2026-03-02T12:00:00Z",
        "properties": {"product_id": "mug"},
    }
    assert (await http.post("/v1/events", json=[own], headers=AUTH)).status_code == 200

    records = await on_topic(kafka, collector.topic, 4)
    assert all(key == event["user_id"].encode() for key, event in records)
    users = {event["event_id"]: event["user_id"] for _, event in records}
    assert users == {
        "live-1": "anon-live",
        "live-2": "live-user",
        "live-3": "live-user",
        "live-4": "other-user",
    }
    # the link is in Redis, for the next request
    assert await redis_client.get(collector.keys.anonymous("anon-live")) == b"live-user"


async def test_a_click_redirects_and_puts_the_click_on_the_topic(
    collector: Running, http: httpx.AsyncClient, kafka: Kafka
) -> None:
    links = LinkSigner([UNSUBSCRIBE_KEY.encode()])
    url = "https://shop.example/p/mug?utm_source=nudge"
    response = await http.get(f"/c/{links.sign_click('clicker', RID, url)}")
    assert (response.status_code, response.headers["location"]) == (302, url)

    async def clicked() -> dict[str, Any] | None:
        for key, event in await on_topic(kafka, collector.topic, 1):
            if event["type"] == "email_click" and key == b"clicker":
                return event
        return None

    click = await eventually(clicked, timeout=20)
    assert click["properties"] == {"message_id": RID, "url": url, "source": "click_link"}


async def test_a_one_click_post_puts_the_unsubscribe_on_the_topic(
    collector: Running, http: httpx.AsyncClient, kafka: Kafka
) -> None:
    signer = UnsubscribeSigner([UNSUBSCRIBE_KEY.encode()])
    token = signer.sign("leaver", None, datetime.now(UTC))
    assert "<form" in (await http.get(f"/u/{token}")).text
    response = await http.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    # confirmed only once on the broker: it is there now
    records = [e for k, e in await on_topic(kafka, collector.topic, 1) if k == b"leaver"]
    assert [(e["type"], e["properties"]["source"]) for e in records] == [
        ("unsubscribe", "unsubscribe_link")
    ]


def test_sigterm_stops_it_after_delivering_what_is_pending(collector: Running) -> None:
    collector.proc.send_signal(signal.SIGTERM)
    collector.proc.wait(timeout=30)
    assert collector.proc.returncode in (0, -signal.SIGTERM)
    log = collector.log.read_text()
    assert "nudge collector stopped; pending events delivered" in log
    assert WRITE_KEY not in log and UNSUBSCRIBE_KEY not in log
    for line in log.splitlines():  # JSON by default, uvicorn's lines too
        assert orjson.loads(line)["message"], line


async def test_a_broker_that_went_away_gets_503_never_200(unique: str, tmp_path: Path) -> None:
    # a broker of its own (started in a thread: start_broker runs its own event loop)
    proc, bootstrap = await asyncio.to_thread(start_broker, log=tmp_path / "tansu.log")
    try:
        publisher = KafkaPublisher([bootstrap], timeout=1)
        await publisher.start()
        services = CollectorServices(
            settings=Settings(events_topic=f"gone-{unique}"),
            publisher=publisher,
            identities=InMemoryIdentities(),
            unsubscribe=UnsubscribeSigner([UNSUBSCRIBE_KEY.encode()]),
            write_keys=[SecretStr(WRITE_KEY)],
        )
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            event = {"userId": "u1", "event": "Thing Done", "messageId": "gone-1"}
            assert (await client.post("/v1/track", json=event, headers=AUTH)).status_code == 200
            proc.kill()  # gone at once (tansu takes seconds to stop on SIGTERM)
            proc.wait(timeout=10)
            response = await client.post("/v1/track", json=event, headers=AUTH)
            assert response.status_code == 503
            assert (await client.get("/health/ready")).status_code == 503
        await services.close()
    finally:
        proc.kill()
        proc.wait()

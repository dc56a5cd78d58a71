"""The mailer on the session's broker and Redis, delivering to a real SMTP server.

One mailer runs in the test's event loop; another test runs ``nudge mailer`` as a
process and kills it (SIGKILL) while it delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from streams.embedded import free_port
from streams.mailer import mailer_group, serve
from streams.settings import Settings
from streams.smtp import parse_smtp_url
from streams.topics import ensure_topics

from .conftest import Kafka, eventually
from .mailer_support import SmtpSink, parse, send_request

NUDGE = Path(sys.executable).parent / "nudge"


def mailer_settings(kafka_bootstrap: str, redis_url: str, sink: SmtpSink) -> Settings:
    unique = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        redis_prefix=f"it-{unique}",
        app_id=f"nudge-{unique}",
        events_topic=f"events-{unique}",
        send_topic=f"sends-{unique}",
        send_failures_topic=f"send-failures-{unique}",
        dead_letter_topic=f"dlq-{unique}",
        decisions_topic=f"decisions-{unique}",
        catalog_topic=f"catalog-{unique}",
        topic_partitions=4,
        session_timeout=4,
        smtp_url=sink.url,
        smtp_timeout=2,
        mailer_concurrency=8,
        mailer_rate_limits="*=10000",
        mailer_retry_delay=0.05,
        mailer_retry_max_delay=0.2,
        mailer_web_port=free_port(),
    )


def environ(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``NUDGE_*`` variables of a ``nudge mailer`` process."""
    values = settings.model_dump(mode="json")
    values["smtp_url"] = settings.smtp_url.get_secret_value()
    values["redis_url"] = settings.redis_url.get_secret_value()
    values["mailer_rate_limits"] = orjson.dumps(settings.mailer_rate_limits).decode()
    names = [
        "kafka_bootstrap",
        "redis_url",
        "redis_prefix",
        "app_id",
        "events_topic",
        "send_topic",
        "send_failures_topic",
        "dead_letter_topic",
        "decisions_topic",
        "catalog_topic",
        "topic_partitions",
        "session_timeout",
        "smtp_url",
        "smtp_timeout",
        "mailer_concurrency",
        "mailer_rate_limits",
        "mailer_retry_delay",
        "mailer_retry_max_delay",
        "mailer_web_port",
    ]
    return {**os.environ, **{f"NUDGE_{n.upper()}": str(values[n]) for n in names}}


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, sink: SmtpSink) -> Settings:
    return mailer_settings(kafka_bootstrap, redis_url, sink)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """A mailer in this event loop, stopped as SIGTERM would stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, parse_smtp_url(sink_url(settings)), stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def sink_url(settings: Settings) -> str:
    return settings.smtp_url.get_secret_value()


async def publish(kafka: Kafka, topic: str, *requests: Any) -> None:
    for request in requests:
        await kafka.producer.send_and_wait(topic, request.to_json(), key=request.user_id.encode())


async def failures(kafka: Kafka, settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in await kafka.read_all(settings.send_failures_topic)]


async def committed(settings: Settings) -> dict[int, int]:
    """The mailer group's committed offset per partition of the send topic (read, not
    joined: the group's offsets are fetched from its coordinator)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=mailer_group(settings),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        found = {
            p: await consumer.committed(TopicPartition(settings.send_topic, p)) for p in range(4)
        }
    finally:
        await consumer.stop()
    return {p: offset for p, offset in found.items() if offset is not None}


async def fetch(port: int, path: str) -> tuple[int, bytes]:
    """GET from a mailer of this event loop (in a thread: the loop serves the answer)."""
    return await asyncio.to_thread(get, port, path)


def sample(metrics: bytes, name: str) -> float:
    """The value of one sample (``name{labels}``) in a ``/metrics`` body (0 if absent)."""
    for line in metrics.decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_requests_are_delivered_once_each_with_their_mime(
    settings: Settings, sink: SmtpSink, kafka: Kafka
) -> None:
    await ensure_topics(settings)
    requests = [send_request(n) for n in range(1, 13)]
    again = requests[3]
    busy = requests[5]
    sink.handler.defer[busy.request_id] = 2
    await publish(kafka, settings.send_topic, *requests, again)
    async with running(settings):
        await eventually(lambda: len(sink.handler.ids()) == len(requests))
        await publish(kafka, settings.send_topic, again)  # the engine repeats it later
        port = settings.mailer_web_port

        async def skipped_twice() -> bool:
            body = (await fetch(port, "/metrics"))[1]
            return sample(body, "nudge_mailer_duplicates_total") == 2

        await eventually(skipped_twice)
        status, body = await fetch(port, "/health/ready")
        assert (status, orjson.loads(body)["redis"]) == (200, "ok")
        assert (await fetch(port, "/health/live"))[0] == 200
        metrics = (await fetch(port, "/metrics"))[1].decode()
    assert sink.handler.ids() == Counter({r.request_id: 1 for r in requests})
    assert 'nudge_mailer_retries_total{reason="deferred"} 2.0' in metrics
    arrived = sink.handler.by_id()
    for request in requests:
        message = parse(arrived[request.request_id].data)
        assert arrived[request.request_id].recipients == [request.to]
        assert message["Message-ID"] == f"<{request.message_id}@shop.example>"
        assert message["Subject"] == request.subject
        assert message["List-Unsubscribe"] == request.headers["List-Unsubscribe"]
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert await failures(kafka, settings) == []
    ends = {tp.partition: end for tp, end in (await kafka_ends(kafka, settings)).items() if end}
    assert await committed(settings) == ends  # a clean stop commits everything settled


async def kafka_ends(kafka: Kafka, settings: Settings) -> dict[Any, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(settings.send_topic, p) for p in range(4)]
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def test_an_unknown_recipient_is_reported_and_becomes_a_bounce_event(
    settings: Settings, sink: SmtpSink, kafka: Kafka
) -> None:
    await ensure_topics(settings)
    gone, fine = send_request(1), send_request(2)
    sink.handler.refuse[gone.to] = f"550 5.1.1 <{gone.to}>: Recipient address rejected"
    await publish(kafka, settings.send_topic, gone, fine)
    not_a_request = b'{"to": "x@example.com"}'
    await kafka.producer.send_and_wait(settings.send_topic, not_a_request, key=b"u3")

    async def reported() -> list[dict[str, Any]]:
        found = await failures(kafka, settings)
        return found if len(found) == 2 else []

    async with running(settings):
        found = await eventually(reported)
        bounces = await eventually(lambda: kafka.read_all(settings.events_topic))
        await eventually(lambda: fine.request_id in sink.handler.ids())
    (failure,) = [f for f in found if f["reason"] == "hard_bounce"]
    (invalid,) = [f for f in found if f["reason"] == "invalid_request"]
    assert (invalid["request_id"], invalid["request"]) == (None, None)
    assert "x@example.com" not in invalid["detail"]
    assert {k: failure[k] for k in ("request_id", "user_id", "reason", "code", "stage")} == {
        "request_id": gone.request_id,
        "user_id": gone.user_id,
        "reason": "hard_bounce",
        "code": 550,
        "stage": "rcpt",
    }
    assert failure["domain"] == "example.com"
    assert failure["request"]["request_id"] == gone.request_id  # for a replay
    (record,) = bounces
    event = orjson.loads(record.value)
    assert record.key == gone.user_id.encode()
    assert (event["event_id"], event["type"], event["user_id"]) == (
        f"bounce-{gone.request_id}",
        "bounce",
        gone.user_id,
    )
    assert event["properties"]["email"] == gone.to
    assert (event["properties"]["kind"], event["properties"]["code"]) == ("hard", 550)
    assert "Recipient address rejected" in event["properties"]["detail"]
    assert event["properties"]["message_id"] == gone.message_id
    assert set(sink.handler.ids()) == {fine.request_id}


async def test_an_smtp_outage_commits_nothing_drops_nothing_and_ends_in_delivery(
    settings: Settings, kafka: Kafka
) -> None:
    await ensure_topics(settings)
    requests = [send_request(n) for n in range(1, 6)]
    await publish(kafka, settings.send_topic, *requests)
    port = free_port()  # where the SMTP server will be, once it is up
    down = settings.model_copy(update={"smtp_url": SecretStr(f"smtp://127.0.0.1:{port}")})
    async with running(down):

        async def retrying() -> bool:
            try:
                _, body = await fetch(settings.mailer_web_port, "/metrics")
            except OSError:  # not serving yet
                return False
            return sample(body, 'nudge_mailer_retries_total{reason="unavailable"}') >= 10

        await eventually(retrying)
        assert await committed(settings) == {}
        sink = SmtpSink(port).start()
        try:
            await eventually(lambda: len(sink.handler.ids()) == len(requests))
            ends = await kafka_ends(kafka, settings)
            await eventually(lambda: committed_all(settings, ends))
        finally:
            sink.stop()
    assert sink.handler.ids() == Counter({r.request_id: 1 for r in requests})
    assert await failures(kafka, settings) == []


async def committed_all(settings: Settings, ends: dict[Any, int]) -> bool:
    return await committed(settings) == {tp.partition: end for tp, end in ends.items() if end}


def start_mailer(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(NUDGE), "mailer"], env=environ(settings), stdout=out, stderr=subprocess.STDOUT
        )


async def test_a_mailer_killed_mid_stream_sends_nothing_twice_and_loses_nothing(
    settings: Settings, sink: SmtpSink, kafka: Kafka, tmp_path: Path
) -> None:
    await ensure_topics(settings)
    requests = [send_request(n) for n in range(1, 301)]
    published = {r.request_id for r in requests}
    sink.handler.hold = 0.02  # transactions take a while: some are in flight at the kill
    log = tmp_path / "mailer.log"
    first = start_mailer(settings, log)
    try:
        for request in requests:
            await kafka.producer.send(
                settings.send_topic, request.to_json(), key=request.user_id.encode()
            )
        await kafka.producer.flush()
        await eventually(lambda: len(sink.handler.ids()) >= 40, timeout=60, every=0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(sink.handler.ids()) < len(requests), "the kill came too late"
        second = start_mailer(settings, log)

        async def accounted() -> bool:
            interrupted = {f["request_id"] for f in await failures(kafka, settings)}
            return set(sink.handler.ids()) | interrupted == published

        await eventually(accounted, timeout=90, every=0.5)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
        print(log.read_text(errors="replace")[-4000:])
    reports = await failures(kafka, settings)
    assert {f["reason"] for f in reports} <= {"interrupted"}
    interrupted = {f["request_id"] for f in reports}
    delivered = sink.handler.ids()
    assert max(delivered.values()) == 1  # nothing twice
    assert set(delivered) | interrupted == published  # nothing lost
    # reported but delivered: only what was in the SMTP server's hands at the kill
    assert len(set(delivered) & interrupted) <= settings.mailer_concurrency
    assert "mailer stopped" in log.read_text()

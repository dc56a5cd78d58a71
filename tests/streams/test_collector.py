"""The collector's HTTP API on its in-memory twins (httpx calling the ASGI app in-process):
keys, sizes, media types, validation, what is published and when, tracking links,
one-click unsubscribe, health, metrics, logs, and the command's refusal without keys."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from profiles import UnsubscribeSigner
from streams.cli import cli
from streams.collector import create_app
from streams.collector_services import CollectorServices
from streams.identities import InMemoryIdentities
from streams.publisher import InMemoryPublisher
from streams.settings import Settings
from streams.tracking import PIXEL

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WRITE_KEY = "collector-test-write-key-0123456789abcdef"
UNSUBSCRIBE_KEY = b"collector-test-unsubscribe-key-0123456789"
TOPIC = "events-under-test"
LIMIT = 4096
RID = "3f2a9c0d8e7b6a5f4e3d2c1b0a998877"


def basic(key: str = WRITE_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def identities() -> InMemoryIdentities:
    return InMemoryIdentities()


@pytest.fixture
def services(publisher: InMemoryPublisher, identities: InMemoryIdentities) -> CollectorServices:
    settings = Settings(events_topic=TOPIC, max_body_bytes=LIMIT)
    return CollectorServices(
        settings=settings,
        publisher=publisher,
        identities=identities,
        unsubscribe=UnsubscribeSigner([UNSUBSCRIBE_KEY]),
        write_keys=[SecretStr("another-write-key-0123456789abcdefghij"), SecretStr(WRITE_KEY)],
        clock=lambda: T0,
    )


@pytest.fixture
async def client(
    services: CollectorServices, publisher: InMemoryPublisher
) -> AsyncIterator[httpx.AsyncClient]:
    await publisher.start()
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as c:
        yield c


def published(publisher: InMemoryPublisher) -> list[dict[str, Any]]:
    """The events on the topic, each checked to be keyed by its user id."""
    out = []
    for record in publisher.topics.get(TOPIC, []):
        event = orjson.loads(record.value)
        assert record.key == event["user_id"].encode()
        out.append(event)
    return out


def metric(services: CollectorServices, name: str, **labels: str) -> float:
    return services.metrics.registry.get_sample_value(name, labels) or 0.0


def track(**extra: Any) -> dict[str, Any]:
    return {
        "userId": "u1",
        "event": "Product Viewed",
        "properties": {"product_id": "p1", "price": 10},
        "timestamp": "2026-03-02T11:59:00Z",
        **extra,
    }


def nudge_event(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "type": "page_view",
        "user_id": f"u{n}",
        "ts": 1772452800000,
        "properties": {"url": "https://shop.example/"},
        **extra,
    }


# --- keys ----------------------------------------------------------------------------------


async def test_a_track_call_with_the_write_key_is_published_keyed_by_user(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    response = await client.post("/v1/track", json=track(messageId="m1"), headers=basic())
    assert (response.status_code, response.json()) == (200, {"success": True})
    (event,) = published(publisher)
    assert (event["event_id"], event["type"], event["user_id"]) == ("m1", "product_view", "u1")
    assert metric(services, "nudge_collector_events_total", type="product_view") == 1


async def test_the_write_key_may_come_in_the_body_as_segment_takes_it(
    client: httpx.AsyncClient, publisher: InMemoryPublisher
) -> None:
    response = await client.post(
        "/v1/track",
        content=orjson.dumps(track(writeKey=WRITE_KEY)),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert len(published(publisher)) == 1


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/track", track(), {}),
        ("/v1/track", track(), basic("not-the-key")),
        ("/v1/track", track(writeKey="not-the-key"), {}),
        ("/v1/track", track(writeKey=WRITE_KEY), basic("not-the-key")),
        ("/v1/track", track(), {"Authorization": "Basic !!!"}),
        ("/v1/track", track(), {"Authorization": f"Bearer {WRITE_KEY}"}),
        ("/v1/events", nudge_event(), {}),
        ("/v1/events", [nudge_event()], basic("")),
    ],
)
async def test_no_valid_key_is_401_and_publishes_nothing(
    client: httpx.AsyncClient,
    publisher: InMemoryPublisher,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="nudge"'
    assert published(publisher) == []


# --- nudge's own events --------------------------------------------------------------------


async def test_own_events_one_or_an_array_go_on_the_topic_as_sent(
    client: httpx.AsyncClient, publisher: InMemoryPublisher
) -> None:
    assert (await client.post("/v1/events", json=nudge_event(1), headers=basic())).is_success
    many = [nudge_event(2), nudge_event(3, type="wishlist.shared", properties={"n": 1})]
    assert (await client.post("/v1/events", json=many, headers=basic())).is_success
    assert published(publisher) == [nudge_event(1), *many]


@pytest.mark.parametrize(
    ("body", "error", "detail"),
    [
        (
            [nudge_event(1), nudge_event(2, ts="2026-03-02T12:00:00")],
            "schema_violation",
            "[1].ts: Value error, ts must carry a time zone (e.g. 2026-01-31T12:00:00Z)",
        ),
        (
            nudge_event(1, type="add_to_cart", properties={"product_id": "p", "price": -1}),
            "schema_violation",
            "properties.price: Input should be greater than or equal to 0",
        ),
        ([nudge_event(1), 7], "schema_violation", "[1]: event must be a JSON object"),
        (
            nudge_event(1, type="erase", properties={}),
            "forbidden_type",
            "type: erase is not accepted over HTTP (use `nudge erase`)",
        ),
        (
            nudge_event(1, type="bounce", properties={"email": "u1@example.com"}),
            "forbidden_type",
            "type: bounce is not accepted over HTTP (the mailer reports bounces)",
        ),
    ],
)
async def test_an_invalid_event_is_400_naming_the_field_and_nothing_is_published(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, body: Any, error: str, detail: str
) -> None:
    response = await client.post("/v1/events", json=body, headers=basic())
    assert response.status_code == 400
    assert response.json() == {"error": error, "detail": detail}
    assert published(publisher) == []


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    for path in ("/v1/events", "/v1/batch"):
        response = await client.post(path, content=b"{not json", headers=basic())
        assert (response.status_code, response.json()["error"]) == (400, "invalid_json")


# --- Segment calls -------------------------------------------------------------------------


async def test_a_batch_is_validated_whole_before_any_of_it_is_published(
    client: httpx.AsyncClient, publisher: InMemoryPublisher
) -> None:
    good = {"type": "track", **track()}
    bad = {"type": "track", **track(properties={"product_id": "p1", "price": -1})}
    response = await client.post(
        "/v1/batch", json={"batch": [good, good, good, bad]}, headers=basic()
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "schema_violation",
        "detail": "batch[3].properties.price: Input should be greater than or equal to 0",
    }
    assert published(publisher) == []
    ok = await client.post("/v1/batch", json={"batch": [good, good]}, headers=basic())
    assert ok.status_code == 200
    assert len(published(publisher)) == 2


async def test_an_error_names_the_field_the_client_sent(client: httpx.AsyncClient) -> None:
    opened = track(event="Email Opened", properties={"email_id": 1.5})
    response = await client.post(
        "/v1/batch", json={"batch": [{"type": "track", **opened}]}, headers=basic()
    )
    assert response.json()["detail"] == (
        "batch[0].properties.email_id: Input should be a valid string"
    )
    identify = {"userId": "u1", "traits": {"timezone": "Mars/Olympus"}}
    response = await client.post("/v1/identify", json=identify, headers=basic())
    assert response.json()["detail"] == (
        "traits: Value error, unknown IANA time zone 'Mars/Olympus'"
    )


async def test_an_alias_links_an_anonymous_visitor_for_later_requests(
    client: httpx.AsyncClient, publisher: InMemoryPublisher
) -> None:
    visit = track(userId=None, anonymousId="anon-1")
    assert (await client.post("/v1/track", json=visit, headers=basic())).is_success
    alias = await client.post(
        "/v1/alias", json={"previousId": "anon-1", "userId": "u7"}, headers=basic()
    )
    assert (alias.status_code, alias.json()) == (200, {"success": True})
    assert (await client.post("/v1/track", json=visit, headers=basic())).is_success
    assert [e["user_id"] for e in published(publisher)] == ["anon-1", "u7"]


async def test_screen_and_group_calls_in_a_batch_are_dropped_and_counted(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    batch = [{"type": "screen", "userId": "u1", "name": "Home"}, {"type": "track", **track()}]
    assert (await client.post("/v1/batch", json={"batch": batch}, headers=basic())).is_success
    assert [e["type"] for e in published(publisher)] == ["product_view"]
    assert metric(services, "nudge_collector_ignored_messages_total", type="screen") == 1


async def test_a_broker_that_does_not_acknowledge_is_503_never_200(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    publisher.failing = True
    for path, body in (("/v1/track", track()), ("/v1/events", nudge_event())):
        response = await client.post(path, json=body, headers=basic())
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
        assert response.headers["Retry-After"] == "1"
    assert metric(services, "nudge_collector_publish_failures_total", route="/v1/track") == 1
    assert metric(services, "nudge_collector_events_total", type="product_view") == 0


async def test_an_identity_store_that_does_not_answer_is_503(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, identities: InMemoryIdentities
) -> None:
    identities.failing = True
    anonymous = track(userId=None, anonymousId="anon-1")
    assert (await client.post("/v1/track", json=anonymous, headers=basic())).status_code == 503
    assert published(publisher) == []
    # a request naming its users needs no identity store
    assert (await client.post("/v1/track", json=track(), headers=basic())).status_code == 200


# --- sizes and media types -----------------------------------------------------------------


async def test_a_declared_size_past_the_limit_is_413_before_reading(
    client: httpx.AsyncClient, publisher: InMemoryPublisher
) -> None:
    big = {"batch": [{"type": "track", **track()}] * 100}
    assert len(orjson.dumps(big)) > LIMIT
    response = await client.post("/v1/batch", json=big, headers=basic())
    assert (response.status_code, response.json()["error"]) == (413, "too_large")
    assert published(publisher) == []


async def test_a_streamed_body_stops_being_read_at_the_limit(client: httpx.AsyncClient) -> None:
    pulled = []

    async def chunks() -> AsyncIterator[bytes]:
        for n in range(100):
            pulled.append(n)
            yield b" " * 1000

    response = await client.post("/v1/track", content=chunks(), headers=basic())
    assert response.status_code == 413
    assert len(pulled) == LIMIT // 1000 + 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ],
)
async def test_what_is_not_plain_json_is_415(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/track", content=orjson.dumps(track()), headers={**basic(), **headers}
    )
    assert response.status_code == 415


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/track", headers=basic())).status_code == 405
    assert (await client.post("/c/anything")).status_code == 405


# --- tracking ------------------------------------------------------------------------------


async def test_the_pixel_publishes_an_open_and_answers_an_uncached_gif(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    token = services.links.sign_open("u1", RID)
    response = await client.get(f"/o/{token}.gif")
    assert (response.status_code, response.content) == (200, PIXEL)
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    (event,) = published(publisher)
    assert (event["type"], event["user_id"]) == ("email_open", "u1")
    assert event["properties"]["message_id"] == RID


async def test_a_bad_pixel_still_gets_the_gif_and_publishes_nothing(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    click = services.links.sign_click("u1", RID, "https://shop.example/")
    for token in ("nonsense", click):
        response = await client.get(f"/o/{token}.gif")
        assert (response.status_code, response.content) == (200, PIXEL)
    assert published(publisher) == []
    invalid = "nudge_collector_invalid_tokens_total"
    assert metric(services, invalid, kind="open", reason="wrong_kind") == 1


async def test_a_click_publishes_click_and_open_then_redirects(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    url = "https://shop.example/p/tent?size=2&colour=green"
    token = services.links.sign_click("u1", RID, url)
    response = await client.get(f"/c/{token}")
    assert (response.status_code, response.headers["location"]) == (302, url)
    assert "no-store" in response.headers["cache-control"]
    click, opened = published(publisher)
    assert (click["type"], click["properties"]["url"]) == ("email_click", url)
    assert (opened["type"], opened["properties"]["message_id"]) == ("email_open", RID)
    # the same click again within the window is the same event to the worker
    await client.get(f"/c/{token}")
    assert published(publisher)[2]["event_id"] == click["event_id"]


async def test_a_link_that_does_not_verify_is_a_404_page_never_a_redirect(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    token = services.links.sign_click("u1", RID, "https://shop.example/")
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
    other_key = UnsubscribeSigner([b"x" * 32])
    foreign = CollectorServices(
        settings=services.settings,
        publisher=publisher,
        identities=services.identities,
        unsubscribe=other_key,
        write_keys=[],
    ).links.sign_click("u1", RID, "https://evil.example/")
    for bad in (tampered, foreign, services.links.sign_open("u1", RID), "x" * 5000):
        response = await client.get(f"/c/{bad}")
        assert response.status_code == 404
        assert "location" not in response.headers
        assert "evil.example" not in response.text
    assert published(publisher) == []


async def test_head_requests_publish_nothing(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    click = services.links.sign_click("u1", RID, "https://shop.example/")
    assert (await client.head(f"/c/{click}")).status_code == 302
    assert (await client.head(f"/o/{services.links.sign_open('u1', RID)}.gif")).is_success
    assert published(publisher) == []


async def test_with_the_broker_down_a_click_still_redirects_and_is_counted(
    client: httpx.AsyncClient,
    publisher: InMemoryPublisher,
    services: CollectorServices,
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher.failing = True
    click = services.links.sign_click("u1", RID, "https://shop.example/")
    pixel = services.links.sign_open("u1", RID)
    with caplog.at_level(logging.DEBUG):
        assert (await client.get(f"/c/{click}")).status_code == 302
        assert (await client.get(f"/o/{pixel}.gif")).content == PIXEL
    failures = "nudge_collector_publish_failures_total"
    assert metric(services, failures, route="/c/{token}") == 1
    assert metric(services, failures, route="/o/{token}.gif") == 1
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("streams"))
    assert "/c/{token}: 2 event(s) not published" in ours
    assert click not in ours and pixel not in ours


# --- one-click unsubscribe -----------------------------------------------------------------


@pytest.fixture
def unsubscribe_token(services: CollectorServices) -> str:
    return services.unsubscribe.sign("u1", "reminders", T0 - timedelta(days=1))


async def test_a_get_only_asks_and_its_form_posts_the_one_click_body(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, unsubscribe_token: str
) -> None:
    response = await client.get(f"/u/{unsubscribe_token}")
    assert response.status_code == 200
    assert '<form method="post">' in response.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in response.text
    assert "<strong>reminders</strong>" in response.text
    assert published(publisher) == []


async def test_the_form_posts_to_the_public_url_when_one_is_set(
    services: CollectorServices, unsubscribe_token: str
) -> None:
    services.settings = Settings(public_url="https://t.shop.example/")
    app = create_app(services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://collector"
    ) as client:
        response = await client.get(f"/u/{unsubscribe_token}")
    assert f'action="https://t.shop.example/u/{unsubscribe_token}"' in response.text


@pytest.mark.parametrize("body", [b"List-Unsubscribe=One-Click", b""])
async def test_a_post_unsubscribes(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, unsubscribe_token: str, body: bytes
) -> None:
    response = await client.post(
        f"/u/{unsubscribe_token}",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    (event,) = published(publisher)
    assert (event["type"], event["user_id"]) == ("unsubscribe", "u1")
    assert event["properties"] == {"category": "reminders", "source": "unsubscribe_link"}


async def test_a_multipart_one_click_post_unsubscribes(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, unsubscribe_token: str
) -> None:
    """RFC 8058 recommends ``multipart/form-data``; mailbox providers send either."""
    body = (
        b"--b1\r\n"
        b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
        b"\r\n"
        b"One-Click\r\n"
        b"--b1--\r\n"
    )
    response = await client.post(
        f"/u/{unsubscribe_token}",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b1"},
    )
    assert response.status_code == 200, response.text
    (event,) = published(publisher)
    assert (event["type"], event["user_id"]) == ("unsubscribe", "u1")


async def test_a_post_of_another_body_unsubscribes_nobody(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, unsubscribe_token: str
) -> None:
    response = await client.post(f"/u/{unsubscribe_token}", content=b"List-Unsubscribe=No")
    assert response.status_code == 400
    assert published(publisher) == []


async def test_an_expired_or_forged_token_is_a_400_page_saying_so(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, services: CollectorServices
) -> None:
    expired = services.unsubscribe.sign("u1", None, T0 - timedelta(days=61))
    for method in ("GET", "POST"):
        response = await client.request(method, f"/u/{expired}")
        assert response.status_code == 400
        assert "expired" in response.text
    response = await client.post(f"/u/{expired[:-3]}abc")
    assert (response.status_code, "not valid" in response.text) == (400, True)
    assert published(publisher) == []


async def test_an_unsubscribe_the_broker_did_not_take_is_not_confirmed(
    client: httpx.AsyncClient, publisher: InMemoryPublisher, unsubscribe_token: str
) -> None:
    publisher.failing = True
    response = await client.post(f"/u/{unsubscribe_token}", content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 503
    assert "not</strong> unsubscribed" in response.text


# --- health and metrics --------------------------------------------------------------------


async def test_health_and_readiness(
    client: httpx.AsyncClient, publisher: InMemoryPublisher
) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    publisher.failing = True
    assert (await client.get("/health/ready")).status_code == 503


async def test_metrics_label_routes_by_template_not_path(
    client: httpx.AsyncClient, services: CollectorServices
) -> None:
    await client.get("/c/some-token-1")
    await client.get("/c/some-token-2")
    await client.get("/nowhere")
    await client.post("/v1/track", json=track(), headers=basic())
    text = (await client.get("/metrics")).text
    assert 'nudge_collector_requests_total{route="/c/{token}",status="404"} 2.0' in text
    assert 'nudge_collector_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'nudge_collector_requests_total{route="/v1/track",status="200"} 1.0' in text
    assert 'nudge_collector_request_seconds_count{route="/v1/track"} 1.0' in text
    assert "some-token" not in text


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "NUDGE_COLLECTOR_WRITE_KEYS",
        "NUDGE_UNSUBSCRIBE_KEY",
        "NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS",
    ):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.mark.usefixtures("no_keys")
def test_the_collector_refuses_to_start_without_its_keys() -> None:
    result = CliRunner().invoke(cli, ["collector"])
    assert result.exit_code == 2
    assert "error: NUDGE_COLLECTOR_WRITE_KEYS is not set" in result.output
    assert "error: NUDGE_UNSUBSCRIBE_KEY is not set" in result.output
    result = CliRunner().invoke(cli, ["collector"], env={"NUDGE_COLLECTOR_WRITE_KEYS": WRITE_KEY})
    assert result.exit_code == 2
    assert "NUDGE_COLLECTOR_WRITE_KEYS" not in result.output
    assert "error: NUDGE_UNSUBSCRIBE_KEY is not set" in result.output
    assert WRITE_KEY not in result.output


def test_the_collector_has_help() -> None:
    result = CliRunner().invoke(cli, ["collector", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://t.shop.example", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080/nudge", True),
        ("http://t.shop.example", False),
    ],
)
def test_the_public_url_is_https_or_loopback(url: str, accepted: bool) -> None:
    if accepted:
        assert Settings(public_url=url).public_url == url
    else:
        with pytest.raises(ValidationError, match="must be an https:// URL"):
            Settings(public_url=url)

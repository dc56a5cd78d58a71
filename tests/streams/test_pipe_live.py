"""Browser to inbox over loopback: a Segment call to ``nudge collector``, the worker's
cart reminder, ``nudge mailer`` delivering it to a real SMTP server once, and the mail's
click and one-click unsubscribe links turning into events when followed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from html import unescape

import httpx
import orjson
import pytest

from streams.dev import Pipe

from .conftest import TEST_RULES, Kafka, RedisView, WorkerEnv, WorkerProcess, eventually
from .mailer_support import SmtpSink, parse

pytestmark = pytest.mark.integration


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


def mails_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    with sink.handler.lock:
        received = list(sink.handler.received)
    return [parse(r.data) for r in received if address in r.recipients]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "no HTML part"
    return str(part.get_content())


async def test_a_segment_cart_becomes_one_mail_whose_links_become_events(
    worker_env: Callable[..., WorkerEnv],
    start_worker: Callable[..., WorkerProcess],
    kafka: Kafka,
    redis_view: Callable[..., RedisView],
    sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a brand with a website: the mail's logo and footer link to it (a link to click)
    brand = 'brand: {url: "https://shop.example", address: "Test Shop, 1 Test Street"}\n'
    env = worker_env(rules=TEST_RULES.format(cart_wait="3s", winback_wait="1h") + brand)
    pipe = Pipe(env.tmp / f"pipe-{env.unique}")
    monkeypatch.setenv("NUDGE_PUBLIC_URL", pipe.public_url)  # the worker links to the collector
    start_worker(env)
    with pipe.running(env.environ(0), sink.url):
        auth = httpx.BasicAuth(pipe.write_key, "")
        async with httpx.AsyncClient(base_url=pipe.public_url, auth=auth, timeout=10) as http:
            signup = {
                "userId": "ada",
                "event": "Signed Up",
                "messageId": "m-1",
                "properties": {"email": "ada@example.com", "consent": {"email": True}},
            }
            added = {
                "userId": "ada",
                "event": "Product Added",
                "messageId": "m-2",
                "properties": {"product_id": "sku-1", "name": "Mug", "price": 14.0},
            }
            for call in (signup, added):
                answer = await http.post("/v1/track", json=call)
                assert answer.status_code == 200, answer.text

            def reminders() -> list[EmailMessage]:
                return [m for m in mails_to(sink, "ada@example.com") if "cart" in m["Subject"]]

            [mail] = await eventually(reminders, timeout=60)
            await asyncio.sleep(2)  # the mailer, the worker's sweep: room for a second copy
            assert len(reminders()) == 1

            # a proper MIME mail, identified by its send request
            assert mail.get_content_type() == "multipart/alternative"
            request_id = mail["X-Nudge-Request-Id"]
            [send] = await kafka.sends(env.send_topic, "ada", "cart_abandonment")
            assert request_id == send["request_id"]
            domain = send["from_email"].rsplit("@", 1)[1]
            assert mail["Message-ID"] == f"<{send['message_id']}@{domain}>"

            # a click link: a redirect to the product, and an email_click for this mail
            links = re.findall(r'href="([^"]+)"', html_of(mail))
            clicks = [unescape(u) for u in links if u.startswith(f"{pipe.public_url}/c/")]
            assert clicks, links
            followed = await http.get(clicks[0], auth=None)
            assert followed.status_code == 302
            assert followed.headers["location"].startswith("https://")

            async def clicked() -> bool:
                events = [orjson.loads(r.value) for r in await kafka.read_all(env.events_topic)]
                return any(
                    e["type"] == "email_click"
                    and e["user_id"] == "ada"
                    and e["properties"]["message_id"] == send["message_id"]
                    and e["properties"]["url"] == followed.headers["location"]
                    for e in events
                )

            await eventually(clicked)

            # the one-click unsubscribe of the List-Unsubscribe header (RFC 8058)
            [unsubscribe] = re.findall(r"<([^>]+)>", mail["List-Unsubscribe"])
            assert unsubscribe.startswith(f"{pipe.public_url}/u/")
            assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            answer = await http.post(
                unsubscribe,
                content=b"List-Unsubscribe=One-Click",
                auth=None,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 200, answer.text
            view = redis_view(env.keys)

            async def unsubscribed() -> bool:
                profile = (await view.profile("ada")).profile
                return profile is not None and not profile.email_consent

            await eventually(unsubscribed)

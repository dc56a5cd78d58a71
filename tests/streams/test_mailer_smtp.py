"""``NUDGE_SMTP_URL`` parsing, and the SMTP transport against a real aiosmtpd server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from streams.embedded import free_port
from streams.mime import build_message, envelope
from streams.smtp import (
    DeliveryUnknown,
    Envelope,
    SmtpTransport,
    SmtpUnavailable,
    SmtpUrl,
    SmtpUrlError,
    parse_smtp_url,
)

from .mailer_support import SmtpSink, parse, send_request


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpUrl("mail.example.com", 25)),
        ("smtp://mail.example.com:2525", SmtpUrl("mail.example.com", 2525)),
        ("smtps://mail.example.com", SmtpUrl("mail.example.com", 465, tls=True)),
        (
            "smtp://mail.example.com?starttls=true",
            SmtpUrl("mail.example.com", 587, starttls=True),
        ),
        (
            "smtp://apikey:p%40ss%3Aw%2Frd@mail.example.com:587?starttls=1",
            SmtpUrl("mail.example.com", 587, "apikey", "p@ss:w/rd", starttls=True),
        ),
        (
            "smtp://user%40example.com@[::1]:25?helo=mx.shop.example&starttls=false",
            SmtpUrl("::1", 25, "user@example.com", None, helo="mx.shop.example"),
        ),
        ("smtp://u:@localhost/", SmtpUrl("localhost", 25, "u", "")),
    ],
)
def test_smtp_urls(url: str, expected: SmtpUrl) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://u:hunter2secret@mail.example.com", "scheme"),
        ("mail.example.com:25", "scheme"),
        ("smtp://", "no host"),
        ("smtp://u:hunter2secret@mail.example.com:notaport", "port"),
        ("smtp://u:hunter2secret@mail.example.com:70000", "port"),
        ("smtp://u:hunter2secret@mail.example.com:0", "port"),
        ("smtp://:hunter2secret@mail.example.com", "user name"),
        ("smtps://u:hunter2secret@mail.example.com?starttls=true", "TLS already"),
        ("smtp://u:hunter2secret@mail.example.com?starttls=maybe", "true or false"),
        ("smtp://u:hunter2secret@mail.example.com?tls=1", "unknown SMTP URL option"),
        ("smtp://u:hunter2secret@mail.example.com/inbox", "no path"),
    ],
)
def test_bad_smtp_urls_are_refused_without_the_password(url: str, message: str) -> None:
    with pytest.raises(SmtpUrlError, match=message) as caught:
        parse_smtp_url(url)
    assert "hunter2secret" not in str(caught.value)


def test_the_password_stays_out_of_the_repr() -> None:
    assert "s3cret" not in repr(parse_smtp_url("smtp://u:s3cret@localhost"))


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


def mail(n: int, **fields: object) -> Envelope:
    request = send_request(n, **fields)
    return envelope(request, build_message(request, datetime.now(UTC)))


async def test_a_message_arrives_as_built(sink: SmtpSink) -> None:
    transport = SmtpTransport(parse_smtp_url(sink.url), timeout=5)
    sent = mail(1)
    reply = await transport.send(sent)
    await transport.close()
    assert reply.accepted
    (got,) = sink.handler.received
    assert (got.sender, got.recipients) == (sent.sender, [sent.recipient])
    assert parse(got.data)["Message-ID"] == parse(sent.data)["Message-ID"]
    assert parse(got.data).get_body(("plain",)) is not None


async def test_a_refused_recipient_is_an_answer_at_rcpt(sink: SmtpSink) -> None:
    sink.handler.refuse["u2@example.com"] = "550 5.1.1 <u2@example.com>: user unknown"
    transport = SmtpTransport(parse_smtp_url(sink.url), timeout=5)
    refused = await transport.send(mail(2))
    accepted = await transport.send(mail(3))  # the connection is reset and reused
    await transport.close()
    assert (refused.code, refused.stage, refused.permanent) == (550, "rcpt", True)
    assert "user unknown" in refused.text
    assert accepted.accepted
    assert [r.recipients for r in sink.handler.received] == [["u3@example.com"]]


async def test_a_421_to_the_message_is_a_temporary_answer(sink: SmtpSink) -> None:
    sent = mail(4)
    sink.handler.defer[parse(sent.data)["X-Nudge-Request-Id"]] = 1
    transport = SmtpTransport(parse_smtp_url(sink.url), timeout=5)
    first = await transport.send(sent)
    second = await transport.send(sent)
    await transport.close()
    assert (first.code, first.stage, first.permanent) == (421, "data", False)
    assert second.accepted


async def test_no_server_is_unavailable_not_an_answer() -> None:
    transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}"), timeout=2)
    with pytest.raises(SmtpUnavailable):
        await transport.send(mail(5))


async def test_no_reply_after_the_data_is_unknown_delivery(sink: SmtpSink) -> None:
    sent = mail(6)
    sink.handler.silent.add(parse(sent.data)["X-Nudge-Request-Id"])
    transport = SmtpTransport(parse_smtp_url(sink.url), timeout=0.5)
    with pytest.raises(DeliveryUnknown):
        await transport.send(sent)


async def test_a_non_ascii_address_goes_as_smtputf8(sink: SmtpSink) -> None:
    transport = SmtpTransport(parse_smtp_url(sink.url), timeout=5)
    reply = await transport.send(mail(7, to="jürgen@example.com"))
    await transport.close()
    assert reply.accepted
    assert sink.handler.received[0].recipients == ["jürgen@example.com"]

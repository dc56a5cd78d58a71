"""The message built from a send request, read back with the standard library."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest

from streams.mime import MessageError, build_message, envelope

from .mailer_support import parse, send_request

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def content(part: object) -> str:
    """A part's text with its line breaks as written (the wire's CRLF read as LF, the
    final line break the encoder adds dropped)."""
    text: str = part.get_content()  # type: ignore[attr-defined]
    return text.replace("\r\n", "\n").removesuffix("\n")


def built(**fields: object) -> bytes:
    request = send_request(7, **fields)
    return envelope(request, build_message(request, NOW)).data


def test_text_then_html_in_utf8() -> None:
    request = send_request(7)
    message = parse(built())
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    assert content(parts[0]) == request.text.removesuffix("\n")
    assert content(parts[1]) == request.html


def test_headers_are_those_of_the_request() -> None:
    request = send_request(7)
    message = parse(built())
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (request.from_name, request.from_email)
    recipient = message["To"].addresses[0]
    assert (recipient.display_name, recipient.addr_spec) == (request.to_name, request.to)
    assert message["Reply-To"].addresses[0].addr_spec == request.reply_to
    assert message["Subject"] == request.subject
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["X-Nudge-Request-Id"] == request.request_id
    for name, value in request.headers.items():
        assert message[name] == value


def test_message_id_is_made_from_the_request() -> None:
    request = send_request(7)
    domain = request.from_email.rpartition("@")[2]
    first, again = parse(built()), parse(built())
    assert first["Message-ID"] == f"<{request.message_id}@{domain}>"
    assert again["Message-ID"] == first["Message-ID"]


def test_non_ascii_names_and_subject_are_encoded_on_the_wire() -> None:
    data = built()
    assert data.isascii()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


def test_a_long_html_line_is_wrapped() -> None:
    html = "<p>" + "ä" * 5000 + "</p>"
    data = built(html=html)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert content(list(parse(data).iter_parts())[1]) == html


def test_a_non_ascii_address_needs_smtputf8() -> None:
    request = send_request(7, to="jürgen@example.com")
    mail = envelope(request, build_message(request, NOW))
    assert mail.utf8
    assert "jürgen@example.com".encode() in mail.data
    assert not envelope(send_request(7), build_message(send_request(7), NOW)).utf8


def test_transactional_mail_without_headers_or_names() -> None:
    message = parse(built(headers={}, to_name=None, reply_to=None, category="transactional"))
    assert message["List-Unsubscribe"] is None
    assert message["Reply-To"] is None
    assert message["To"].addresses[0].display_name == ""


@pytest.mark.parametrize(
    "headers",
    [
        {"List-Unsubscribe": "<https://x.example/u>\r\nBcc: victim@example.com"},
        {"Bcc": "someone@example.com"},
        {"message-id": "<forged@example.com>"},
    ],
)
def test_headers_that_would_change_the_message_are_refused(headers: dict[str, str]) -> None:
    request = send_request(7, headers=headers)
    with pytest.raises(MessageError):
        build_message(request, NOW)

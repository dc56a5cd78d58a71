"""A send request as an RFC 5322 message: ``multipart/alternative``, text then HTML.

Built with the standard library's :class:`email.message.EmailMessage`, which encodes
display names and subjects (RFC 2047) and folds long headers. The ``Message-ID`` is made
from the request (``<message_id@domain of from_email>``), so a message built twice has
the same id.
"""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from streams.errors import StreamsError
from streams.smtp import Envelope
from triggers import SendRequest

__all__ = [
    "REQUEST_ID_HEADER",
    "RESERVED_HEADERS",
    "MessageError",
    "build_message",
    "envelope",
    "message_id",
    "needs_utf8",
]

#: the request a message was built from (for support and for matching bounces)
REQUEST_ID_HEADER = "X-Nudge-Request-Id"
#: headers the mailer writes itself; a request's ``headers`` may not set them
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        REQUEST_ID_HEADER,
    )
)


class MessageError(StreamsError):
    """The request cannot become a message (an address or header that is not valid)."""


def build_message(request: SendRequest, now: datetime) -> EmailMessage:
    """The message of ``request``, dated ``now``."""
    message = EmailMessage(policy=policy.SMTPUTF8 if needs_utf8(request) else policy.SMTP)
    try:
        _address_headers(message, request)
        message["Subject"] = request.subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = message_id(request)
        message[REQUEST_ID_HEADER] = request.request_id
        _extra_headers(message, request.headers)
    except (ValueError, TypeError, IndexError) as exc:
        raise MessageError(f"cannot build the message: {exc}") from exc
    message.set_content(request.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(request.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in message.iter_parts():
        del part["MIME-Version"]  # the top level says it; add_alternative repeats it
    return message


def needs_utf8(request: SendRequest) -> bool:
    """A non-ASCII address (the local part; domains arrive in their IDNA form) can only
    travel as SMTPUTF8 with UTF-8 headers."""
    return not (request.to.isascii() and request.from_email.isascii())


def message_id(request: SendRequest) -> str:
    """``<message_id@domain of from_email>``."""
    domain = request.from_email.rpartition("@")[2]
    if not domain:
        raise ValueError("from_email has no domain")
    return f"<{request.message_id}@{domain}>"


def _address_headers(message: EmailMessage, request: SendRequest) -> None:
    message["From"] = _address(request.from_name, request.from_email)
    message["To"] = _address(request.to_name or "", request.to)
    if request.reply_to:
        message["Reply-To"] = _address("", request.reply_to)


def _address(name: str, address: str) -> Address | str:
    """An :class:`Address` (which refuses a non-ASCII local part), or for such an
    address the header text, which an SMTPUTF8 policy writes as it is."""
    if address.isascii():
        return Address(display_name=name, addr_spec=address)
    if not name:
        return address
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def _extra_headers(message: EmailMessage, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"the request may not set the {name} header")
        message[name] = value


def envelope(request: SendRequest, message: EmailMessage) -> Envelope:
    """The SMTP envelope for ``message``: from ``from_email`` to ``to``, an SMTPUTF8
    transaction when an address needs it (see :func:`needs_utf8`)."""
    try:
        data = message.as_bytes()
    except (ValueError, TypeError, UnicodeError) as exc:
        raise MessageError(f"cannot write the message: {exc}") from exc
    return Envelope(
        sender=request.from_email, recipient=request.to, data=data, utf8=needs_utf8(request)
    )

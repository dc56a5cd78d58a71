"""Signed click-tracking links and open pixels: who clicked what, in which mail.

A click token names a user, a message (the send request's ``request_id``) and the URL
the link goes on to; an open token (the pixel's) names the user and the message. An HMAC
makes both unforgeable, so whatever serves them (the event collector's ``/c/{token}``
and open pixel) trusts what they say with nothing but the keys: no Redis, no Kafka, no
config. It does::

    signer = LinkSigner([os.environ["NUDGE_UNSUBSCRIBE_KEY"].encode()])
    link = signer.verify_click(token)  # raises InvalidLink (.reason says why)
    event = click_event(link, datetime.now(UTC))  # publish to nudge.events, keyed by user_id
    # then redirect (302) to link.url

Redirects. A verified click link only ever leads to a URL nudge signed, so the endpoint
is not an open redirect: nobody can make a link to a page of their choosing without the
key. And only ``http://`` and ``https://`` URLs with a host, in printable ASCII (no
spaces, no control characters), of at most :data:`MAX_URL_LENGTH` characters are signed
(:func:`signable` says which; :meth:`LinkSigner.sign_click` raises ``ValueError`` for any
other), so a verified link never leads to ``javascript:`` or ``data:``, and its URL goes
into a ``Location`` header as it is. A link nudge cannot sign is left as it is in the mail.

No expiry. Mail is read, and its links followed, months or years after it was sent, and a
click link does no harm when followed late, so tokens carry no issue time and never
expire: a token verifies as long as the key that signed it is among the keys. It also
makes the token of one (user, message, URL) always the same: a send request delivered
twice carries the same links.

Format (version 1). A token is URL-safe base64 without padding (``[A-Za-z0-9_-]``) of::

    version     1 byte     1
    kind        1 byte     ``c``: a click link; ``o``: an open pixel
    msg_len     1 byte     length of message_id
    message_id  msg_len    ASCII, [A-Za-z0-9_.:-]{1,64} (a request id has 32 characters)
    user_len    2 bytes    length of user_id in bytes, big-endian
    user_id     user_len   UTF-8, 1 to 200 characters (as the event contract's user_id)
    url         the rest   ASCII, as above; empty in an open token
    mac         32 bytes   HMAC-SHA256(link key, marker + every byte above)

A 36-character user id, a request id and a 60-character URL give a 220-character token
(an open token: 140); the longest possible is :data:`MAX_TOKEN_LENGTH`. The token is
signed, not encrypted: whoever holds a link can read the user id and the URL in it (as
with the unsubscribe token).

Keys: the unsubscribe keys (``NUDGE_UNSUBSCRIBE_KEY`` and the previous ones), so click
links need no secret of their own. Each is turned into a link key, HMAC-SHA256(key,
:data:`PURPOSE`) (:meth:`UnsubscribeSigner.derive`): a click token is never an unsubscribe
token, nor the other way round. The first key signs, every key verifies; rotation is the
unsubscribe keys' rotation, with one difference: a previous key stays among the keys for
as long as the links it signed should work (they do not expire). Tokens of the public
:data:`~profiles.unsubscribe.DEVELOPMENT_KEY` start with ``dev.``, which the MAC covers.

Verification is constant-time in the MAC (:func:`hmac.compare_digest`); anything longer
than :data:`MAX_TOKEN_LENGTH` is refused (``oversize``) before it is decoded, and nothing
but the MAC is read before the MAC verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from profiles.errors import ProfileError
from profiles.unsubscribe import (
    DEVELOPMENT_KEY,
    DEVELOPMENT_MARKER,
    MIN_KEY_BYTES,
    UnsubscribeSigner,
)

__all__ = [
    "CLICK_WINDOW",
    "MAX_TOKEN_LENGTH",
    "MAX_URL_LENGTH",
    "PURPOSE",
    "ClickLink",
    "InvalidLink",
    "LinkProblem",
    "LinkSigner",
    "OpenPixel",
    "click_event",
    "development_link_signer",
    "open_event",
    "signable",
]

VERSION = 1
#: what a link key is derived for (see :meth:`UnsubscribeSigner.derive`)
PURPOSE = b"nudge click link v1"
#: the longest URL signed; a longer link stays as it is in the mail
MAX_URL_LENGTH = 2000
#: clicks of one link by one reader in one such window are one event (a double click)
CLICK_WINDOW = timedelta(minutes=10)

_CLICK, _OPEN = b"c", b"o"
_MAC_BYTES = 32
_MAX_MESSAGE_ID = 64
_MAX_USER_ID = 200  # characters, as the event contract's user_id
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_URL = re.compile(r"(?i:https?)://(?![/?#\\])[!-~]+")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_FIXED = 1 + 1 + 1 + 2  # version, kind, msg_len, user_len
_MIN_RAW = _FIXED + 1 + 1 + _MAC_BYTES
_MAX_RAW = _FIXED + _MAX_MESSAGE_ID + 4 * _MAX_USER_ID + MAX_URL_LENGTH + _MAC_BYTES
#: the longest token a signer can give; anything longer is ``oversize`` at once
MAX_TOKEN_LENGTH = len(DEVELOPMENT_MARKER) + (4 * _MAX_RAW + 2) // 3

LinkProblem = Literal["malformed", "oversize", "bad_signature", "wrong_kind"]


class InvalidLink(ProfileError):
    """A click or open token that does not verify; ``reason`` says why (a
    :data:`LinkProblem`: ``malformed``, ``oversize``, ``bad_signature``, or
    ``wrong_kind``: an open token where a click link was expected, or the other way)."""

    def __init__(self, reason: LinkProblem, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: LinkProblem = reason
        self.detail = detail


@dataclass(frozen=True)
class ClickLink:
    """What a verified click token says: ``user_id`` followed the link to ``url`` in
    message ``message_id``. ``token`` is the verified token itself."""

    user_id: str
    message_id: str
    url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class OpenPixel:
    """What a verified open token says: ``user_id`` opened message ``message_id``."""

    user_id: str
    message_id: str
    token: str = field(repr=False)


def signable(url: str) -> bool:
    """Whether ``url`` may be signed: ``http(s)://`` with a host, printable ASCII, at most
    :data:`MAX_URL_LENGTH` characters."""
    return len(url) <= MAX_URL_LENGTH and _URL.fullmatch(url) is not None


class LinkSigner:
    """Signs click and open tokens with the first of ``keys`` (the unsubscribe keys, from
    which the link keys are derived) and verifies them with any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a link signer needs at least one key")
        for key in keys:
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"link keys must be at least {MIN_KEY_BYTES} bytes long")
        derived = [hmac.new(key, PURPOSE, hashlib.sha256).digest() for key in keys]
        self._keyed(derived, development=keys[0] == DEVELOPMENT_KEY)

    @classmethod
    def derived_from(cls, unsubscribe: UnsubscribeSigner) -> LinkSigner:
        """The link signer of ``unsubscribe``'s keys: the same as ``LinkSigner(keys)``."""
        signer = cls.__new__(cls)
        signer._keyed(unsubscribe.derive(PURPOSE), development=unsubscribe.development)
        return signer

    def _keyed(self, link_keys: list[bytes], *, development: bool) -> None:
        # keyed once; each MAC copies the keyed state instead of hashing the key again
        self._macs = [hmac.new(key, digestmod=hashlib.sha256) for key in link_keys]
        self._marker = DEVELOPMENT_MARKER if development else ""

    def __repr__(self) -> str:  # never the keys
        kind = "development key" if self.development else f"{len(self._macs)} key(s)"
        return f"LinkSigner({kind})"

    @property
    def development(self) -> bool:
        """Whether it signs with the public development key."""
        return bool(self._marker)

    def sign_click(self, user_id: str, message_id: str, url: str) -> str:
        """The click token for ``user_id`` following ``url`` in ``message_id``; a
        ``ValueError`` if ``url`` is not :func:`signable` (leave such a link alone)."""
        return self.clicks(user_id, message_id)(url)

    def clicks(self, user_id: str, message_id: str) -> Callable[[str], str]:
        """:meth:`sign_click` for one user and message, prepared once: the links of one
        mail share everything but the URL, so only the URL is hashed per link."""
        head = _head(_CLICK, user_id, message_id)
        marker = self._marker
        prepared = self._macs[0].copy()
        prepared.update(marker.encode() + head)

        def sign(url: str) -> str:
            if not signable(url):
                raise ValueError(
                    "only http(s) URLs with a host, in printable ASCII, of at most "
                    f"{MAX_URL_LENGTH} characters are signed"
                )
            raw = url.encode("ascii")
            mac = prepared.copy()
            mac.update(raw)
            return marker + _encode(head + raw + mac.digest())

        return sign

    def sign_open(self, user_id: str, message_id: str) -> str:
        """The open pixel's token for ``user_id`` and ``message_id``."""
        head = _head(_OPEN, user_id, message_id)
        return self._marker + _encode(head + self._mac(self._macs[0], self._marker, head))

    def verify_click(self, token: str) -> ClickLink:
        """What click ``token`` says, if it verifies; :class:`InvalidLink` if not."""
        kind, user_id, message_id, url = self._verify(token)
        if kind != _CLICK:
            raise InvalidLink("wrong_kind", "an open pixel's token, not a click link")
        if not signable(url):  # signed, so only a token of another version gets here
            raise InvalidLink("malformed", "not a URL a link may lead to")
        return ClickLink(user_id, message_id, url, token)

    def verify_open(self, token: str) -> OpenPixel:
        """What open ``token`` says, if it verifies; :class:`InvalidLink` if not."""
        kind, user_id, message_id, url = self._verify(token)
        if kind != _OPEN:
            raise InvalidLink("wrong_kind", "a click link's token, not an open pixel's")
        if url:
            raise InvalidLink("malformed", "an open token carries no URL")
        return OpenPixel(user_id, message_id, token)

    def _verify(self, token: str) -> tuple[bytes, str, str, str]:
        marker, raw = _decode(token)
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not any(hmac.compare_digest(self._mac(m, marker, body), mac) for m in self._macs):
            raise InvalidLink("bad_signature", "no key signed this token")
        return _parse(body)

    @staticmethod
    def _mac(keyed: hmac.HMAC, marker: str, body: bytes) -> bytes:
        mac = keyed.copy()
        mac.update(marker.encode() + body)
        return mac.digest()


def development_link_signer() -> LinkSigner:
    """A signer on the public development key (its tokens start with ``dev.``): the
    links of :func:`profiles.development_signer`'s mail."""
    return LinkSigner([DEVELOPMENT_KEY])


def click_event(link: ClickLink, now: datetime) -> dict[str, Any]:
    """The ``email_click`` event a verified click becomes.

    Every click is an event (a reader coming back to a mail a week later to follow a link
    again is engagement), but a double click, a retried request or a client fetching the
    link twice is not a second one: the id derives from the user, the message, the URL
    and the :data:`CLICK_WINDOW` ``now`` falls in, so clicks of one link within a window
    are one event to the engine (two a moment apart on either side of a window's edge
    count twice: rare, and harmless to what counts clicked mails rather than clicks).
    """
    window = int(now.timestamp()) // int(CLICK_WINDOW.total_seconds())
    digest = _digest("click", link.user_id, link.message_id, link.url, str(window))
    properties = {"message_id": link.message_id, "url": link.url, "source": "click_link"}
    return _event(f"click-{digest}", "email_click", link.user_id, now, properties)


def open_event(link: ClickLink | OpenPixel, now: datetime) -> dict[str, Any]:
    """The ``email_open`` event of a verified open pixel, or of a click (a mail whose
    link was followed was opened, even where the client showed no images).

    An open is of a message, not a moment: a client loads the pixel each time the mail
    is shown, so the id derives from the user and the message only, and the engine counts
    one open per mail (while it remembers the id: the profile store's dedup window).
    """
    digest = _digest("open", link.user_id, link.message_id)
    source = "open_pixel" if isinstance(link, OpenPixel) else "click_link"
    properties = {"message_id": link.message_id, "source": source}
    return _event(f"open-{digest}", "email_open", link.user_id, now, properties)


def _event(
    event_id: str, kind: str, user_id: str, now: datetime, properties: dict[str, str]
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "user_id": user_id,
        "ts": now.astimezone(UTC).isoformat(),
        "properties": properties,
    }


def _digest(*parts: str) -> str:
    """32 hex characters of SHA-256 over ``parts``, unambiguously joined."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


# --- encoding -------------------------------------------------------------------------------


def _head(kind: bytes, user_id: str, message_id: str) -> bytes:
    """Every byte of a token before the URL."""
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"{message_id!r} is not a message id ([A-Za-z0-9_.:-]{{1,64}})")
    if not 1 <= len(user_id) <= _MAX_USER_ID:
        raise ValueError(f"a user id has 1 to {_MAX_USER_ID} characters")
    user = user_id.encode("utf-8")  # a lone surrogate raises (UnicodeEncodeError)
    message = message_id.encode("ascii")
    return b"".join(
        (bytes([VERSION]), kind, bytes([len(message)]), message, len(user).to_bytes(2, "big"), user)
    )


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> tuple[str, bytes]:
    """The marker and the raw bytes of ``token``: canonical base64url only, so that no
    two strings are the same token (unused trailing bits must be zero)."""
    if not isinstance(token, str):
        raise InvalidLink("malformed", "not a token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink("oversize", f"longer than {MAX_TOKEN_LENGTH} characters")
    marker = DEVELOPMENT_MARKER if token.startswith(DEVELOPMENT_MARKER) else ""
    text = token[len(marker) :]
    if not _BASE64URL.fullmatch(text):
        raise InvalidLink("malformed", "not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidLink("malformed", "not URL-safe base64") from exc
    if _encode(raw) != text:
        raise InvalidLink("malformed", "not canonical base64")
    if len(raw) < _MIN_RAW:
        raise InvalidLink("malformed", "too short")
    return marker, raw


def _parse(body: bytes) -> tuple[bytes, str, str, str]:
    """Kind, user id, message id and URL of a body whose MAC verified (so only a format
    from another version can fail here)."""
    if body[0] != VERSION:
        raise InvalidLink("malformed", f"unknown token version {body[0]}")
    kind, length = body[1:2], body[2]
    message = body[3 : 3 + length]
    at = 3 + length
    user_length = int.from_bytes(body[at : at + 2], "big")
    user = body[at + 2 : at + 2 + user_length]
    url = body[at + 2 + user_length :]
    if len(message) != length or len(user) != user_length or not user or not message:
        raise InvalidLink("malformed", "lengths do not add up")
    try:
        return kind, user.decode("utf-8"), message.decode("ascii"), url.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidLink("malformed", "not UTF-8") from exc

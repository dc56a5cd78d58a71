"""Signed one-click unsubscribe tokens: who, from what, since when, checkable with a key.

A token names a user and, optionally, a subscription (category) and carries the moment
it was issued; an HMAC makes it unforgeable. Verifying needs nothing but the keys: no
Redis, no Kafka, no config. A mailer or a web app does::

    signer = UnsubscribeSigner([os.environ["UNSUBSCRIBE_KEY"].encode()], timedelta(days=60))
    now = datetime.now(UTC)
    request = signer.verify(token, now)  # raises InvalidToken (.reason says why)
    event = unsubscribe_event(request, now)  # publish to nudge.events, keyed by user_id

Format (version 1). A token is URL-safe base64 without padding (``[A-Za-z0-9_-]``, no
percent-encoding needed anywhere in a URL) of these bytes::

    version    1 byte     1
    issued     5 bytes    epoch seconds (UTC), big-endian, unsigned
    cat_len    1 byte     length of category; 0: no category (every marketing mail)
    category   cat_len    ASCII, [a-z0-9_]{1,40}
    user_id    the rest   UTF-8, 1 to 200 characters (as the event contract's user_id)
    mac        32 bytes   HMAC-SHA256(key, marker + every byte above)

The user id is last, so it needs no length: the MAC is the final 32 bytes. A 36-character
user id with a 9-character category gives a 112-character token; the longest possible
(200 four-byte characters, a 40-character category) is :data:`MAX_TOKEN_LENGTH`.

Tokens signed with :data:`DEVELOPMENT_KEY` (a fixed key, public, for tests, ``nudge
simulate`` and in-process benchmarks) start with the marker ``dev.``, which the MAC covers:
such a link says it will not unsubscribe anyone in production, and the marker cannot be
removed or added without breaking the MAC.

Keys: the first key signs, every key verifies (rotation: put the new key first and keep
the old one among the others until the links it signed have expired). Keys are at least
:data:`MIN_KEY_BYTES` bytes. A token is ``expired`` more than ``ttl`` after it was issued,
and ``from_future`` when issued more than ``skew`` (default :data:`CLOCK_SKEW`) after the
verifier's ``now`` (clocks disagree a little between machines). The click links of
:mod:`profiles.links` sign with keys derived from these (:meth:`UnsubscribeSigner.derive`).

Verification is constant-time in the MAC (:func:`hmac.compare_digest`); anything longer
than :data:`MAX_TOKEN_LENGTH` is refused before it is decoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from profiles.errors import ProfileError

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_TTL",
    "DEVELOPMENT_KEY",
    "MAX_TOKEN_LENGTH",
    "MIN_KEY_BYTES",
    "InvalidToken",
    "TokenProblem",
    "UnsubscribeRequest",
    "UnsubscribeSigner",
    "development_signer",
    "unsubscribe_event",
]

VERSION = 1
#: keys shorter than this are refused (HMAC-SHA256 keys should carry 256 bits)
MIN_KEY_BYTES = 32
#: how long a link stays valid unless the signer is told otherwise
DEFAULT_TTL = timedelta(days=60)
#: how far in the future a token's issue time may be and still verify
CLOCK_SKEW = timedelta(minutes=5)
#: a fixed, public key: links signed with it unsubscribe nobody in production
DEVELOPMENT_KEY = hashlib.sha256(b"nudge-development-key-not-secret").digest()
#: the prefix of tokens signed with :data:`DEVELOPMENT_KEY`
DEVELOPMENT_MARKER = "dev."

_MAC_BYTES = 32
_ISSUED_BYTES = 5
_HEADER_BYTES = 1 + _ISSUED_BYTES + 1
_MAX_USER_ID = 200  # characters, as the event contract's user_id
_MAX_CATEGORY = 40
_CATEGORY = re.compile(r"[a-z0-9_]{1,40}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_RAW = _HEADER_BYTES + _MAX_CATEGORY + 4 * _MAX_USER_ID + _MAC_BYTES
#: the longest token a signer can give; anything longer is ``malformed`` at once
MAX_TOKEN_LENGTH = len(DEVELOPMENT_MARKER) + (4 * _MAX_RAW + 2) // 3

TokenProblem = Literal["malformed", "bad_signature", "expired", "from_future"]


class InvalidToken(ProfileError):
    """An unsubscribe token that does not verify; ``reason`` says why (a
    :data:`TokenProblem`: ``malformed``, ``bad_signature``, ``expired``, ``from_future``)."""

    def __init__(self, reason: TokenProblem, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: TokenProblem = reason
        self.detail = detail


@dataclass(frozen=True)
class UnsubscribeRequest:
    """What a verified token says: ``user_id`` unsubscribes from ``category`` (``None``:
    every marketing mail), by a link issued at ``issued``. ``token`` is the verified token
    itself (the unsubscribe event's id derives from it)."""

    user_id: str
    category: str | None
    issued: datetime
    token: str = field(repr=False)


class UnsubscribeSigner:
    """Signs tokens with the first of ``keys`` and verifies them with any of them."""

    def __init__(
        self, keys: Sequence[bytes], ttl: timedelta = DEFAULT_TTL, *, skew: timedelta = CLOCK_SKEW
    ) -> None:
        if not keys:
            raise ValueError("an unsubscribe signer needs at least one key")
        for key in keys:
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"unsubscribe keys must be at least {MIN_KEY_BYTES} bytes long")
        if ttl <= timedelta(0) or skew < timedelta(0):
            raise ValueError("the token lifetime must be positive and the skew not negative")
        # keyed once; each MAC copies the keyed state instead of hashing the key again
        self._macs = [hmac.new(key, digestmod=hashlib.sha256) for key in keys]
        self._marker = DEVELOPMENT_MARKER if keys[0] == DEVELOPMENT_KEY else ""
        self.ttl = ttl
        self.skew = skew

    def __repr__(self) -> str:  # never the keys
        kind = "development key" if self.development else f"{len(self._macs)} key(s)"
        return f"UnsubscribeSigner({kind}, ttl={self.ttl})"

    @property
    def development(self) -> bool:
        """Whether it signs with the public :data:`DEVELOPMENT_KEY`."""
        return bool(self._marker)

    def sign(self, user_id: str, category: str | None, issued: datetime) -> str:
        """The token for ``user_id`` leaving ``category`` (``None``: every marketing
        mail), issued at ``issued`` (aware; counted in whole seconds)."""
        body = _header(category, issued) + _user_bytes(user_id)
        mac = self._mac(self._macs[0], self._marker, body)
        return self._marker + _encode(body + mac)

    def verify(self, token: str, now: datetime) -> UnsubscribeRequest:
        """What ``token`` says, if it verifies at ``now``; :class:`InvalidToken` if not."""
        marker, raw = _decode(token)
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not any(hmac.compare_digest(self._mac(m, marker, body), mac) for m in self._macs):
            raise InvalidToken("bad_signature", "no key signed this token")
        request = _parse(body, token)
        if now - request.issued > self.ttl:
            raise InvalidToken("expired", f"issued {request.issued.isoformat()}")
        if request.issued - now > self.skew:
            raise InvalidToken("from_future", f"issued {request.issued.isoformat()}")
        return request

    def derive(self, purpose: bytes) -> list[bytes]:
        """HMAC-SHA256(key, ``purpose``) of every key, the signing key's first: keys for
        another purpose (click links, :mod:`profiles.links`) from the same secrets, so
        they rotate with them. One derived key reveals neither the key nor another
        purpose's. ``purpose`` must start with neither the version byte nor the
        development marker: every token's MAC covers bytes starting with one of them, so
        no token's MAC can be a derived key."""
        marker = DEVELOPMENT_MARKER.encode()
        if purpose[:1] in (b"", bytes([VERSION])) or purpose.startswith(marker):
            raise ValueError("a purpose label must not look like the start of a token")
        return [self._mac(keyed, "", purpose) for keyed in self._macs]

    @staticmethod
    def _mac(keyed: hmac.HMAC, marker: str, body: bytes) -> bytes:
        mac = keyed.copy()
        mac.update(marker.encode() + body)
        return mac.digest()


def development_signer(ttl: timedelta = DEFAULT_TTL) -> UnsubscribeSigner:
    """A signer on the public :data:`DEVELOPMENT_KEY` (its tokens start with ``dev.``)."""
    return UnsubscribeSigner([DEVELOPMENT_KEY], ttl)


def unsubscribe_event(request: UnsubscribeRequest, now: datetime) -> dict[str, Any]:
    """The ``unsubscribe`` event a verified one-click request becomes. Its id derives from
    the token, so a link followed twice (a double POST) is one event to the engine."""
    digest = hashlib.sha256(request.token.encode()).hexdigest()[:32]
    properties = {"source": "unsubscribe_link"}
    if request.category is not None:
        properties = {"category": request.category, **properties}
    return {
        "event_id": f"unsubscribe-{digest}",
        "type": "unsubscribe",
        "user_id": request.user_id,
        "ts": now.astimezone(UTC).isoformat(),
        "properties": properties,
    }


# --- encoding -------------------------------------------------------------------------------


def _header(category: str | None, issued: datetime) -> bytes:
    if category is not None and not _CATEGORY.fullmatch(category):
        raise ValueError(f"{category!r} is not a subscription name ([a-z0-9_]{{1,40}})")
    if issued.tzinfo is None:
        raise ValueError("the issue time must carry a time zone")
    seconds = int(issued.timestamp())
    if not 0 <= seconds < 1 << (8 * _ISSUED_BYTES):
        raise ValueError(f"issue time {issued.isoformat()} is out of range")
    name = (category or "").encode("ascii")
    return bytes([VERSION]) + seconds.to_bytes(_ISSUED_BYTES, "big") + bytes([len(name)]) + name


def _user_bytes(user_id: str) -> bytes:
    if not 1 <= len(user_id) <= _MAX_USER_ID:
        raise ValueError(f"a user id has 1 to {_MAX_USER_ID} characters")
    return user_id.encode("utf-8")  # a lone surrogate raises (UnicodeEncodeError: ValueError)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> tuple[str, bytes]:
    """The marker and the raw bytes of ``token``: canonical base64url only, so that no
    two strings are the same token (unused trailing bits must be zero)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed", "not a token of a sensible length")
    marker = DEVELOPMENT_MARKER if token.startswith(DEVELOPMENT_MARKER) else ""
    text = token[len(marker) :]
    if not _BASE64URL.fullmatch(text):
        raise InvalidToken("malformed", "not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("malformed", "not URL-safe base64") from exc
    if _encode(raw) != text:
        raise InvalidToken("malformed", "not canonical base64")
    if len(raw) < _HEADER_BYTES + 1 + _MAC_BYTES:
        raise InvalidToken("malformed", "too short")
    return marker, raw


def _parse(body: bytes, token: str) -> UnsubscribeRequest:
    """The request in a body whose MAC verified (so only a format from another version
    can fail here)."""
    if body[0] != VERSION:
        raise InvalidToken("malformed", f"unknown token version {body[0]}")
    issued = int.from_bytes(body[1 : 1 + _ISSUED_BYTES], "big")
    length = body[1 + _ISSUED_BYTES]
    category = body[_HEADER_BYTES : _HEADER_BYTES + length]
    try:
        user_id = body[_HEADER_BYTES + length :].decode("utf-8")
        name = category.decode("ascii") or None
    except UnicodeDecodeError as exc:
        raise InvalidToken("malformed", "not UTF-8") from exc
    if not user_id or len(category) != length:
        raise InvalidToken("malformed", "no user id")
    return UnsubscribeRequest(user_id, name, datetime.fromtimestamp(issued, UTC), token)

"""SMTP delivery: the ``NUDGE_SMTP_URL`` parser and the transport the mailer sends through.

A transaction ends one of three ways, and the mailer's at-most-once promise rests on
telling them apart:

- the server **answered** (:class:`SmtpReply`): 2xx accepted, 4xx deferred, 5xx refused;
  whatever it said, it said it about this message;
- nothing was sent (:class:`SmtpUnavailable`): no connection, a greeting, EHLO, STARTTLS
  or login that failed, or a connection lost or timed out before DATA; safe to try again;
- the message may have gone (:class:`DeliveryUnknown`): the connection was lost or timed
  out once DATA had begun, before the server's final reply. Sending it again could
  deliver it twice, so the mailer reports it instead.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from aiosmtplib import SMTP, SMTPException, SMTPHeloError, SMTPResponseException

from streams.errors import StreamsError

__all__ = [
    "DeliveryUnknown",
    "Envelope",
    "InMemoryTransport",
    "SmtpReply",
    "SmtpTransport",
    "SmtpUnavailable",
    "SmtpUnsupported",
    "SmtpUrl",
    "SmtpUrlError",
    "Stage",
    "Transport",
    "parse_smtp_url",
]

#: where in the transaction the server answered
Stage = Literal["mail", "rcpt", "data"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class SmtpUrlError(StreamsError, ValueError):
    """``NUDGE_SMTP_URL`` is not a usable SMTP URL (the message never repeats it)."""


class SmtpUnavailable(StreamsError):
    """Nothing was sent: the server could not be reached or refused the session."""


class SmtpUnsupported(StreamsError):
    """The server lacks what the message needs (SMTPUTF8 for a non-ASCII address):
    trying again would not help, and nothing was sent."""


class DeliveryUnknown(StreamsError):
    """The connection failed after DATA began: the message may or may not have gone."""


@dataclass(frozen=True)
class SmtpUrl:
    """Where and how to connect; ``password`` stays out of the repr."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: ``smtps://``: TLS from the first byte (port 465)
    tls: bool = False
    #: ``?starttls=true``: upgrade with STARTTLS, and refuse a server that cannot
    starttls: bool = False
    #: ``?helo=NAME``: the name given in EHLO (default: this host's FQDN)
    helo: str | None = None


def parse_smtp_url(url: str) -> SmtpUrl:
    """``smtp://[user[:password]@]host[:port][?starttls=true][&helo=NAME]``, or
    ``smtps://`` for implicit TLS. User and password are percent-decoded."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise SmtpUrlError("the scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise SmtpUrlError("the URL names no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise SmtpUrlError("an SMTP URL has no path or fragment")
    if parts.password is not None and not parts.username:
        raise SmtpUrlError("a password needs a user name")
    options = _options(parts.query)
    tls = parts.scheme == "smtps"
    starttls = options.get("starttls", False) is True
    if tls and starttls:
        raise SmtpUrlError("smtps:// is TLS already; starttls=true is for smtp://")
    helo = options.get("helo")
    return SmtpUrl(
        host=parts.hostname,
        port=_port(parts, 465 if tls else 587 if starttls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        starttls=starttls,
        helo=helo if isinstance(helo, str) else None,
    )


def _port(parts: SplitResult, default: int) -> int:
    try:
        port = parts.port
    except ValueError:
        raise SmtpUrlError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise SmtpUrlError("the port must be a number from 1 to 65535")
    return int(port) if port is not None else default


def _options(query: str) -> dict[str, str | bool]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise SmtpUrlError("the query must be name=value pairs") from None
    options: dict[str, str | bool] = {}
    for name, value in pairs:
        if name == "starttls":
            if value.lower() not in _TRUE | _FALSE:
                raise SmtpUrlError("starttls must be true or false")
            options[name] = value.lower() in _TRUE
        elif name == "helo" and value:
            options[name] = value
        else:
            raise SmtpUrlError(f"unknown SMTP URL option {name!r} (known: starttls, helo)")
    return options


@dataclass(frozen=True)
class Envelope:
    """One message for one recipient; ``utf8``: the addresses need SMTPUTF8."""

    sender: str
    recipient: str
    data: bytes
    utf8: bool = False


@dataclass(frozen=True)
class SmtpReply:
    """The server's answer to a transaction: 2xx to the data, or a refusal at ``stage``."""

    code: int
    text: str
    stage: Stage

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class Transport(Protocol):
    async def send(self, envelope: Envelope) -> SmtpReply:
        """Run one transaction; raise :class:`SmtpUnavailable` or
        :class:`DeliveryUnknown` when the server gave no answer about the message."""

    async def close(self) -> None: ...


class SmtpTransport:
    """aiosmtplib with reused connections: an idle one is taken for each transaction
    (at most as many are open as transactions run at once)."""

    def __init__(self, url: SmtpUrl, *, timeout: float) -> None:
        """``timeout``: seconds a whole transaction may take, connecting included (the
        lease of the mailer's claim is counted from it)."""
        self._url = url
        self._timeout = timeout
        self._idle: list[SMTP] = []
        self._helo = url.helo

    async def send(self, envelope: Envelope) -> SmtpReply:
        """One transaction, within ``timeout`` seconds all told."""
        deadline = asyncio.get_running_loop().time() + self._timeout
        if self._idle:
            client = self._idle.pop()
            try:
                return await self._bounded(client, envelope, deadline)
            except SmtpUnavailable:
                pass  # the server dropped the idle connection: one try on a fresh one
        return await self._bounded(None, envelope, deadline)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await asyncio.wait_for(client.quit(), 2)
            except (SMTPException, OSError, TimeoutError):
                client.close()

    async def _bounded(self, client: SMTP | None, envelope: Envelope, deadline: float) -> SmtpReply:
        progress = _Progress()
        try:
            async with asyncio.timeout_at(deadline):
                if client is None:
                    client = await self._connect()
                progress.client = client
                reply = await _transaction(client, envelope, progress)
        except SmtpUnsupported:
            if progress.client is not None:  # connected, and still in a clean state
                self._idle.append(progress.client)
            raise
        except (SMTPResponseException, SMTPException, OSError, TimeoutError) as exc:
            if progress.client is not None:
                progress.client.close()
            if progress.data_started:
                raise DeliveryUnknown(f"connection lost during DATA: {_describe(exc)}") from exc
            raise SmtpUnavailable(_describe(exc)) from exc
        await self._keep(client, reply)
        return reply

    async def _connect(self) -> SMTP:
        if self._helo is None:
            self._helo = await asyncio.get_running_loop().run_in_executor(None, socket.getfqdn)
        url = self._url
        client = SMTP(
            hostname=url.host,
            port=url.port,
            username=url.username,
            password=url.password,
            use_tls=url.tls,
            start_tls=url.starttls,
            timeout=self._timeout,
            local_hostname=self._helo,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:  # now, to know the extensions before MAIL
            try:
                await client.ehlo()
            except SMTPHeloError:
                await client.helo()
        return client

    async def _keep(self, client: SMTP, reply: SmtpReply) -> None:
        """Back to the idle list after a mail the server accepted; closed after any other
        answer. (A reset would be one more exchange after the transaction's deadline,
        which the claim's lease must outlast; refusals are rare, a new connection cheap.)"""
        if reply.accepted and reply.code != 421 and client.is_connected:
            self._idle.append(client)
        else:
            client.close()


@dataclass
class _Progress:
    client: SMTP | None = None
    data_started: bool = False


async def _transaction(client: SMTP, envelope: Envelope, progress: _Progress) -> SmtpReply:
    options = ["SMTPUTF8"] if envelope.utf8 else []
    encoding = "utf-8" if envelope.utf8 else "ascii"
    if envelope.utf8 and not client.supports_extension("smtputf8"):
        raise SmtpUnsupported("the server does not offer SMTPUTF8, which the address needs")
    stage: Stage = "mail"
    try:
        await client.mail(envelope.sender, options=options, encoding=encoding)
        stage = "rcpt"
        await client.rcpt(envelope.recipient, encoding=encoding)
        stage = "data"
        progress.data_started = True
        response = await client.data(envelope.data)
    except SMTPResponseException as exc:
        if exc.code < 400:  # a reply out of sequence: not an answer about this message
            raise
        return SmtpReply(exc.code, exc.message, stage)
    return SmtpReply(response.code, response.message, "data")


def _describe(exc: BaseException) -> str:
    """What went wrong, in the server's or the socket's words (no credentials in them)."""
    if isinstance(exc, SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


Script = Callable[[Envelope], SmtpReply | Exception | None]


class InMemoryTransport:
    """The in-memory twin: records what is sent; ``script`` may answer a transaction
    instead (a reply, or an exception to raise; ``None`` lets it through). A
    :class:`DeliveryUnknown` from the script is raised after the message is recorded,
    as a connection lost after the final dot would leave it."""

    def __init__(self, script: Script | None = None) -> None:
        self.sent: list[Envelope] = []
        self.script = script
        self.closed = False

    async def send(self, envelope: Envelope) -> SmtpReply:
        answer = self.script(envelope) if self.script is not None else None
        if isinstance(answer, DeliveryUnknown):
            self.sent.append(envelope)
            raise answer
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        self.sent.append(envelope)
        return SmtpReply(250, "OK", "data")

    async def close(self) -> None:
        self.closed = True

"""The collector's event API: ``POST /v1/events`` (nudge's own events) and Segment's HTTP
API calls (``/v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/alias``, ``/v1/batch``).

One request is checked whole before anything is published: its media type (415), its size
(413, from ``Content-Length`` and again while the body streams in, never reading past the
limit), its write key (401), then every event (400, naming the field). Only then are its
identity links stored and its events published, and ``{"success": true}`` (Segment's
answer) comes back only once the broker acknowledged every one (503 otherwise).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streams.collector_services import CollectorServices
from streams.identities import IdentityStoreUnavailable
from streams.publisher import PublishFailed, Record
from streams.segment import InvalidMessage, anonymous_ids, convert, read_messages

__all__ = [
    "JSON_TYPES",
    "SUCCESS",
    "BodyTooLarge",
    "events_endpoint",
    "read_body",
    "segment_endpoint",
]

#: media types a body may have: JSON, and text/plain, which Segment's browser library
#: sends (a "simple" request needs no CORS preflight); no Content-Type is taken as JSON
JSON_TYPES = ("application/json", "text/plain")

#: Segment's answer to a call it took (made once: every accepted request sends it)
SUCCESS = b'{"success":true}'

Endpoint = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("streams.collector")


class BodyTooLarge(Exception):
    """The request body is larger than the collector reads."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, if it is at most ``limit`` bytes: refused from ``Content-Length`` before
    anything is read, and as soon as what arrived passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def events_endpoint(services: CollectorServices) -> Endpoint:
    """``POST /v1/events``: one nudge event (a JSON object) or an array of them, each
    checked by the worker's own contract, keyed by its ``user_id``."""

    async def endpoint(request: Request) -> Response:
        body = await _body_or_response(request, services)
        if isinstance(body, Response):
            return body
        if not services.authorised(_basic_user(request)):
            return _unauthorised()
        try:
            data = orjson.loads(body)
            many = isinstance(data, list)
            items = data if many else [data]
            typed = [
                services.record(item, where=f"[{i}]" if many else "")
                for i, item in enumerate(items)
            ]
        except orjson.JSONDecodeError as exc:
            return _bad("invalid_json", f"not valid JSON: {exc}")
        except InvalidMessage as exc:
            return _bad(exc.reason, exc.detail)
        return await _publish(services, "/v1/events", typed)

    return endpoint


def segment_endpoint(services: CollectorServices, call: str) -> Endpoint:
    """``POST /v1/<call>``: a Segment call (``track``, ``identify``, ``page``, ``alias``)
    or a ``batch`` of them; the write key is the Basic user name or ``writeKey``."""

    async def endpoint(request: Request) -> Response:
        body = await _body_or_response(request, services)
        if isinstance(body, Response):
            return body
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            data = exc
        if not services.authorised(_write_key(request, data)):
            return _unauthorised()
        if isinstance(data, orjson.JSONDecodeError):
            return _bad("invalid_json", f"not valid JSON: {data}")
        return await _segment(services, f"/v1/{call}", data, call)

    return endpoint


async def _segment(services: CollectorServices, route: str, data: Any, call: str) -> Response:
    try:
        messages = read_messages(data, call)
        resolved = await services.identities.resolve(anonymous_ids(messages))
        conversion = convert(messages, resolved, services.clock())
        typed = [services.mapped(item) for item in conversion.events]
        await services.identities.link(conversion.links)
    except InvalidMessage as exc:
        return _bad(exc.reason, exc.detail)
    except IdentityStoreUnavailable as exc:
        log.warning("%s: %s", route, exc)
        return _unavailable("the identity store did not answer")
    for kind, count in conversion.ignored.items():
        services.metrics.ignored.labels(kind).inc(count)
    return await _publish(services, route, typed)


async def _publish(
    services: CollectorServices, route: str, typed: list[tuple[str, Record]]
) -> Response:
    try:
        await services.publish(route, typed)
    except PublishFailed:
        return _unavailable("the broker did not acknowledge the events")
    return Response(SUCCESS, media_type="application/json")


async def _body_or_response(request: Request, services: CollectorServices) -> bytes | Response:
    """The body, or the response refusing it (415, 413)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES:
        return _error(415, "unsupported_media_type", f"send {' or '.join(JSON_TYPES)}")
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        return _error(415, "unsupported_encoding", "send the body uncompressed")
    limit = services.settings.max_body_bytes
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        return _error(413, "too_large", f"the body must be at most {limit} bytes")


def _basic_user(request: Request) -> str | None:
    """The user name of an ``Authorization: Basic`` header (Segment's write key)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def _write_key(request: Request, data: Any) -> str | None:
    """The Basic user name, else the body's ``writeKey`` (as Segment's API takes it)."""
    if "authorization" in request.headers:
        return _basic_user(request)
    key = data.get("writeKey") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


def _bad(reason: str, detail: str) -> Response:
    return _error(400, reason, detail)


def _unauthorised() -> Response:
    detail = "a valid write key is required (the HTTP Basic user name, or writeKey)"
    headers = {"WWW-Authenticate": 'Basic realm="nudge"'}
    return _error(401, "unauthorized", detail, headers)


def _unavailable(detail: str) -> Response:
    # a retry is safe: the worker drops an event id it has already applied
    return _error(503, "unavailable", f"{detail}; retry", {"Retry-After": "1"})


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)

"""The links in nudge's mail: the open pixel, click links and one-click unsubscribe.

- ``GET /o/{token}.gif``: a verified open token publishes ``email_open``; every request
  (a bad token too) gets the 1x1 transparent GIF, never cached.
- ``GET /c/{token}``: a verified click token publishes ``email_click`` and ``email_open``
  (a followed link says the mail was opened) and redirects (302) to the URL it signs; a
  token that does not verify gets a 404 page, never a redirect.
- ``GET /u/{token}``: a page asking to confirm, whose form posts back; a GET never
  unsubscribes (mail scanners follow links). ``POST /u/{token}`` (RFC 8058's
  ``List-Unsubscribe=One-Click``, or the form's empty body) publishes ``unsubscribe``.

The reader never waits on the broker for a pixel or a click: the answer goes first and the
events are published after it (a failure is counted in
``nudge_collector_publish_failures_total`` and logged, without the token, and that open or
click is lost). An unsubscribe is confirmed only once the broker has it (503 page
otherwise). A ``HEAD`` request (a link checker) publishes nothing.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from profiles import InvalidLink, InvalidToken, click_event, open_event, unsubscribe_event
from streams.collector_services import CollectorServices
from streams.ingest import BodyTooLarge, read_body
from streams.publisher import PublishFailed
from streams.segment import InvalidMessage

__all__ = ["PIXEL", "click_endpoint", "pixel_endpoint", "unsubscribe_endpoint"]

log = logging.getLogger("streams.collector")

#: a 1x1 transparent GIF (43 bytes)
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
#: the most an unsubscribe POST body may hold (``List-Unsubscribe=One-Click`` is 26 bytes)
UNSUBSCRIBE_BODY = 1024
#: headers of every tracking answer: never cached (each load should reach us), never
#: indexed, and no Referer carrying the token onwards
NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def pixel_endpoint(services: CollectorServices) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        background = None
        try:
            pixel = services.links.verify_open(request.path_params["token"])
        except InvalidLink as exc:
            services.metrics.invalid_tokens.labels("open", exc.reason).inc()
        else:
            if request.method != "HEAD":
                now = services.clock()
                background = _later(services, "/o/{token}.gif", open_event(pixel, now))
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE, background=background)

    return endpoint


def click_endpoint(services: CollectorServices) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            link = services.links.verify_click(request.path_params["token"])
        except InvalidLink as exc:
            services.metrics.invalid_tokens.labels("click", exc.reason).inc()
            return _page(404, "This link does not work", _NOT_A_LINK)
        background = None
        if request.method != "HEAD":
            now = services.clock()
            events = (click_event(link, now), open_event(link, now))
            background = _later(services, "/c/{token}", *events)
        return RedirectResponse(link.url, status_code=302, headers=NO_STORE, background=background)

    return endpoint


def unsubscribe_endpoint(services: CollectorServices) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            unsubscribe = services.unsubscribe.verify(token, services.clock())
        except InvalidToken as exc:
            services.metrics.invalid_tokens.labels("unsubscribe", exc.reason).inc()
            return _page(400, "This link does not work", _bad_token(exc.reason))
        what = _subscription(unsubscribe.category)
        if request.method != "POST":
            return _page(200, "Unsubscribe?", _confirm(services, token, what))
        if not await _one_click_body(request):
            return _page(400, "Not an unsubscribe request", _NOT_ONE_CLICK)
        typed = services.record(unsubscribe_event(unsubscribe, services.clock()))
        try:
            await services.publish("/u/{token}", [typed])
        except PublishFailed:
            return _page(503, "Please try again", _TRY_AGAIN, {"Retry-After": "30"})
        return _page(200, "You are unsubscribed", f"<p>You will no longer receive {what}.</p>")

    return endpoint


def _later(services: CollectorServices, route: str, *events: dict[str, Any]) -> BackgroundTask:
    """Publish ``events`` after the answer went out; a failure is counted and logged (by
    :meth:`CollectorServices.publish`), and the events are lost."""

    async def publish() -> None:
        try:
            typed = [services.record(event) for event in events]
        except InvalidMessage as exc:  # made from a verified token: not expected
            log.error("%s: the event of a verified token is invalid (%s)", route, exc.reason)
            return
        with contextlib.suppress(PublishFailed):
            await services.publish(route, typed)

    return BackgroundTask(publish)


async def _one_click_body(request: Request) -> bool:
    """Whether the POST body is RFC 8058's ``List-Unsubscribe=One-Click`` (form-encoded,
    or the ``multipart/form-data`` the RFC recommends), or empty (the confirmation form)."""
    try:
        body = await read_body(request, UNSUBSCRIBE_BODY)
    except BodyTooLarge:
        return False
    if not body.strip():
        return True
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return _MULTIPART_ONE_CLICK.search(body) is not None
    fields = parse_qs(body.decode("ascii", "replace"), keep_blank_values=True)
    return fields.get("List-Unsubscribe") == ["One-Click"]


#: the one part of a multipart one-click body: its name, a blank line, ``One-Click``
_MULTIPART_ONE_CLICK = re.compile(
    rb'Content-Disposition:\s*form-data;\s*name="?List-Unsubscribe"?\r?\n(?:[^\r\n]+\r?\n)*'
    rb"\r?\nOne-Click\r?\n",
    re.IGNORECASE,
)


# --- pages ---------------------------------------------------------------------------------

_NOT_A_LINK = (
    "<p>This link is not one we can follow: it may have been cut short or changed. "
    "Copy the whole link from the mail, or visit the shop directly.</p>"
)
_NOT_ONE_CLICK = "<p>Use the button on the unsubscribe page.</p>"
_TRY_AGAIN = (
    "<p>We could not record your request just now, so you are <strong>not</strong> "
    "unsubscribed yet. Please try again in a minute.</p>"
)
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1.25rem;cursor:pointer}}</style>
</head><body><h1>{title}</h1>
{body}
</body></html>
"""


def _page(
    status: int, title: str, body: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    text = _PAGE.format(title=html.escape(title), body=body)
    return HTMLResponse(text, status_code=status, headers={**NO_STORE, **(headers or {})})


def _subscription(category: str | None) -> str:
    if category is None:
        return "our marketing mail"
    return f"mail about <strong>{html.escape(category)}</strong>"


def _confirm(services: CollectorServices, token: str, what: str) -> str:
    """The confirmation form: it posts what a one-click client posts."""
    base = services.settings.public_url
    action = f' action="{html.escape(base.rstrip("/"))}/u/{html.escape(token)}"' if base else ""
    return (
        f"<p>Stop receiving {what}? Mail about your orders and account still reaches you.</p>"
        f'<form method="post"{action}>'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )


def _bad_token(reason: str) -> str:
    if reason == "expired":
        return (
            "<p>This unsubscribe link has expired. Use the link in a more recent mail from "
            "us, or reply to one and ask to be unsubscribed.</p>"
        )
    return "<p>This unsubscribe link is not valid: copy the whole link from the mail.</p>"

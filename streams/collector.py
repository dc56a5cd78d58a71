"""``nudge collector``: the HTTP service that puts events on Kafka.

:func:`create_app` wires the routes (:mod:`streams.ingest`: the event API;
:mod:`streams.tracking`: pixel, clicks, unsubscribe), health and metrics into a Starlette
app around one :class:`~streams.collector_services.CollectorServices`; :func:`serve` runs
it on uvicorn with the real ports. Starlette rather than FastAPI: every event is checked
by nudge's own contract models, so request models would only restate them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from profiles import Keys
from streams.collector_services import CollectorMetrics, CollectorServices
from streams.identities import RedisIdentities
from streams.ingest import events_endpoint, segment_endpoint
from streams.kafka_security import kafka_security_options
from streams.publisher import KafkaPublisher, PublishFailed
from streams.redis_client import redis_client
from streams.settings import MAKE_A_KEY, Settings
from streams.signing import missing_secrets, missing_secrets_message, unsubscribe_signer
from streams.tracking import click_endpoint, pixel_endpoint, unsubscribe_endpoint

__all__ = ["build_services", "create_app", "refusal", "serve"]

log = logging.getLogger("streams.collector")

#: the Segment calls, each its own route (and its own metric label)
SEGMENT_CALLS = ("track", "identify", "page", "alias", "batch")


def refusal(settings: Settings) -> str | None:
    """Why ``nudge collector`` will not start with ``settings`` (``None``: it will)."""
    lines = []
    if not settings.collector_write_keys:
        lines.append(
            "NUDGE_COLLECTOR_WRITE_KEYS is not set: clients authenticate with one of these "
            "keys (the HTTP Basic user name, as Segment's write key; comma-separated). "
            f"Make one with: {MAKE_A_KEY}"
        )
    missing = missing_secrets(settings, "unsubscribe_key")
    if missing:
        lines.append(missing_secrets_message(missing))
    return "\n".join(lines) or None


def create_app(services: CollectorServices) -> Starlette:
    """The collector's ASGI app. It does not start the publisher (:func:`serve` does,
    before it listens); its shutdown stops it, after the server stopped taking requests."""
    routes = [
        Route("/v1/events", events_endpoint(services), methods=["POST"]),
        *(
            Route(f"/v1/{call}", segment_endpoint(services, call), methods=["POST"])
            for call in SEGMENT_CALLS
        ),
        Route("/o/{token}.gif", pixel_endpoint(services), methods=["GET"]),
        Route("/c/{token}", click_endpoint(services), methods=["GET"]),
        Route("/u/{token}", unsubscribe_endpoint(services), methods=["GET", "POST"]),
        Route("/health/live", _live, methods=["GET"]),
        Route("/health/ready", partial(_ready, services), methods=["GET"]),
        Route("/metrics", partial(_metrics, services.metrics), methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await services.close()  # uvicorn re-raises SIGTERM once this returns
        log.info("nudge collector stopped; pending events delivered")

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(_Measured, metrics=services.metrics)
    return app


def build_services(settings: Settings) -> CollectorServices:
    """The real ports: aiokafka's producer and Redis identity links."""
    client = redis_client(settings)
    publisher = KafkaPublisher(
        settings.bootstrap_servers,
        timeout=settings.collector_publish_timeout,
        security=kafka_security_options(settings),
    )
    return CollectorServices(
        settings=settings,
        publisher=publisher,
        identities=RedisIdentities(client, keys=Keys(settings.redis_prefix)),
        unsubscribe=unsubscribe_signer(settings),
        write_keys=settings.collector_write_keys,
        on_close=[client.aclose],
    )


async def serve(settings: Settings) -> None:
    """Start the publisher (:class:`~streams.publisher.PublishFailed` if the broker cannot
    be reached), then serve until SIGTERM or SIGINT; uvicorn finishes the requests in
    flight, then the app's shutdown delivers what is pending and disconnects."""
    services = build_services(settings)
    try:
        await services.publisher.start()
    except PublishFailed:
        await services.close()
        raise
    config = uvicorn.Config(
        create_app(services),
        host=settings.collector_host,
        port=settings.collector_port,
        log_level=settings.log_level,
        access_log=False,  # an access log line would hold the tokens of /c, /o and /u
        server_header=False,
        log_config=None,  # its loggers write through the root logger, as ours do
    )
    _announce(settings)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await services.close()


def _announce(settings: Settings) -> None:
    log.info("publishing to %s at %s", settings.events_topic, settings.kafka_bootstrap)
    if settings.public_url:
        base = settings.public_url.rstrip("/")
        log.info(
            "workers with the same NUDGE_PUBLIC_URL link here: clicks %s/c/{token}, "
            "the open pixel %s/o/{token}.gif, unsubscribe %s/u/{token}",
            base,
            base,
            base,
        )


async def _live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _ready(services: CollectorServices, request: Request) -> Response:
    kafka = await services.publisher.ready()
    return JSONResponse({"ready": kafka, "kafka": kafka}, status_code=200 if kafka else 503)


async def _metrics(metrics: CollectorMetrics, request: Request) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


class _Measured:
    """Counts every answer by route template and status, and times it by route: from the
    request to the end of the answer (what a tracking route publishes after it is left
    out)."""

    def __init__(self, app: ASGIApp, metrics: CollectorMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, answered = 500, None

        async def sending(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                answered = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = (answered or time.perf_counter()) - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)

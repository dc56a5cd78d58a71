"""``nudge mailer``: deliver the send-requests topic over SMTP, each request id at most once.

A plain aiokafka consumer in the group ``{app_id}-mailer`` (auto-commit off) takes up to
``4 x NUDGE_MAILER_CONCURRENCY`` records at a time and settles them with that many SMTP
transactions in flight (:class:`streams.deliver.Deliverer`). Per partition, the offset
committed is the one after the last record of an unbroken run of settled records: a
record still being retried holds back the commit of everything after it, so an outage
loses nothing. A record settled but not committed when the mailer dies is read again
and skipped (its ledger record says so).

SIGTERM or Ctrl-C: no new transaction starts, those in flight finish (each is bounded by
``NUDGE_SMTP_TIMEOUT``), what is settled is committed, the consumer leaves its group. A
second signal stops at once (a transaction cut off there is reported ``interrupted`` by
the next mailer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from profiles import Keys
from streams.deliver import Abandoned, Deliverer, RetryPolicy
from streams.deliveries import DeliveryLedger, LedgerError, RedisDeliveryLedger
from streams.errors import StreamsError
from streams.kafka_security import kafka_client_options
from streams.mailer_metrics import MailerMetrics
from streams.ratelimit import DomainRateLimiter
from streams.redis_client import redis_client
from streams.send_failures import KafkaReporter, Source
from streams.settings import Settings
from streams.smtp import SmtpTransport, SmtpUrl
from streams.topics import ensure_topics
from triggers import SendRequest

__all__ = ["LEASE_MARGIN", "MailerLoop", "mailer_group", "run_mailer", "serve", "web_app"]

log = logging.getLogger(__name__)

#: seconds a claim's lease outlives the transaction timeout (the outcome's write)
LEASE_MARGIN = 5.0
#: records taken per fetch, per transaction in flight
_PER_SLOT = 4


def mailer_group(settings: Settings) -> str:
    return f"{settings.app_id}-mailer"


class MailerLoop:
    """Fetch, settle with bounded concurrency, commit the settled prefix; until ``stop``."""

    def __init__(
        self,
        consumer: Any,
        deliverer: Deliverer,
        metrics: MailerMetrics,
        *,
        concurrency: int,
        stop: asyncio.Event,
    ) -> None:
        self._consumer = consumer
        self._deliverer = deliverer
        self._metrics = metrics
        self._concurrency = concurrency
        self._stop = stop
        #: the first error no retry could pass (the loop stops on it)
        self.failure: Exception | None = None

    async def run(self) -> None:
        """Until ``stop``; :class:`StreamsError` if a record could not be settled."""
        while not self._stop.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=500, max_records=self._concurrency * _PER_SLOT
            )
            if batches:
                await self._handle(batches)
        if self.failure is not None:
            raise StreamsError(f"stopped: a record could not be settled ({self.failure})")

    async def _handle(self, batches: dict[Any, list[Any]]) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        settled: set[tuple[str, int, int]] = set()
        try:
            async with asyncio.TaskGroup() as group:
                for records in batches.values():
                    for record in records:
                        group.create_task(self._one(slots, record, settled))
        finally:
            await self._commit(batches, settled)

    async def _one(
        self, slots: asyncio.Semaphore, record: Any, settled: set[tuple[str, int, int]]
    ) -> None:
        async with slots:
            self._metrics.in_flight.inc()
            try:
                await self._settle(record)
                settled.add((record.topic, record.partition, record.offset))
            except Abandoned:
                pass
            except Exception as exc:  # no outage: a bug, or an error that would repeat
                # stop, and let the transactions in flight finish (a task group would cancel
                # them, leaving claims that read as interrupted): this record stays
                # uncommitted, so the next mailer takes it up
                log.exception(
                    "a record of %s[%d] could not be settled", record.topic, record.partition
                )
                self.failure = self.failure or exc
                self._stop.set()
            finally:
                self._metrics.in_flight.dec()

    async def _settle(self, record: Any) -> None:
        source = Source(record.topic, record.partition, record.offset)
        try:
            request = SendRequest.model_validate_json(record.value or b"")
        except ValidationError as exc:
            await self._deliverer.report_invalid(record.key, _errors(exc), source)
            return
        await self._deliverer.deliver(request, source)

    async def _commit(
        self, batches: dict[Any, list[Any]], settled: set[tuple[str, int, int]]
    ) -> None:
        """Per partition, the offset after the unbroken run of settled records."""
        offsets = {}
        for tp, records in batches.items():
            done = None
            for record in records:
                if (record.topic, record.partition, record.offset) not in settled:
                    break
                done = record.offset + 1
            if done is not None:
                offsets[tp] = done
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance: the records are read again, and skipped
            log.warning("offset commit failed (%s); settled records will be skipped", exc)


def _errors(exc: ValidationError) -> str:
    """Where the record breaks the contract, without its values (they hold addresses)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    )


def web_app(ledger: DeliveryLedger, consumer: Any, metrics: MailerMetrics) -> Starlette:
    """``/health/live``; ``/health/ready`` (Redis answers and partitions are assigned,
    else 503); ``/metrics``."""

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        partitions = len(consumer.assignment())
        try:
            await ledger.ping()
        except LedgerError as exc:
            return JSONResponse({"redis": str(exc), "partitions": partitions}, status_code=503)
        status = 200 if partitions else 503
        return JSONResponse({"redis": "ok", "partitions": partitions}, status_code=status)

    async def scrape(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/health/live", live),
            Route("/health/ready", ready),
            Route("/metrics", scrape),
        ]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the mailer handles SIGTERM and SIGINT itself


async def run_mailer(settings: Settings, url: SmtpUrl) -> None:
    """Run until SIGTERM or SIGINT; return once everything is closed."""
    created = await ensure_topics(settings)
    if created:
        log.info("created topics %s", ", ".join(created))
    stop = asyncio.Event()
    work = asyncio.create_task(serve(settings, url, stop))
    _stop_on_signals(stop, work)
    try:
        await work
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        log.warning("stopped at once: transactions cut off are reported as interrupted")


def _stop_on_signals(stop: asyncio.Event, work: asyncio.Task[None]) -> None:
    def on_signal() -> None:
        if stop.is_set():
            work.cancel()
            return
        log.info("stopping: finishing the transactions in flight (again to stop at once)")
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


async def serve(settings: Settings, url: SmtpUrl, stop: asyncio.Event) -> None:
    """Deliver until ``stop`` is set, then commit what is settled and close everything."""
    async with contextlib.AsyncExitStack() as stack:
        redis = redis_client(settings)
        stack.push_async_callback(redis.aclose)
        ledger = RedisDeliveryLedger(
            redis,
            keys=Keys(settings.redis_prefix),
            ttl=settings.mailer_dedup_ttl,
            lease=settings.smtp_timeout + LEASE_MARGIN,
        )
        transport = SmtpTransport(url, timeout=settings.smtp_timeout)
        stack.push_async_callback(transport.close)
        producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
        await producer.start()
        stack.push_async_callback(producer.stop)
        consumer = _consumer(settings)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        metrics = MailerMetrics()
        if settings.mailer_web_port:
            await _start_web(stack, settings, web_app(ledger, consumer, metrics))
        deliverer = Deliverer(
            ledger=ledger,
            transport=transport,
            reporter=KafkaReporter(
                producer,
                failures_topic=settings.send_failures_topic,
                events_topic=settings.events_topic,
            ),
            limiter=DomainRateLimiter(settings.mailer_rate_limits),
            metrics=metrics,
            policy=RetryPolicy(
                settings.mailer_retry_delay,
                settings.mailer_retry_max_delay,
                settings.mailer_max_attempts,
            ),
            stop=stop,
        )
        log.info(
            "mailer: %s -> %s:%d (group %s)",
            settings.send_topic,
            url.host,
            url.port,
            mailer_group(settings),
        )
        loop = MailerLoop(
            consumer, deliverer, metrics, concurrency=settings.mailer_concurrency, stop=stop
        )
        await loop.run()
    log.info("mailer stopped")


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    session_ms = round(settings.session_timeout * 1000)
    return AIOKafkaConsumer(
        settings.send_topic,
        **kafka_client_options(settings),
        group_id=mailer_group(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=session_ms // 5,
    )


async def _start_web(stack: contextlib.AsyncExitStack, settings: Settings, app: Starlette) -> None:
    config = uvicorn.Config(
        app,
        host=settings.web_host,
        port=settings.mailer_web_port,
        log_level="warning",
        lifespan="off",
        log_config=None,  # its loggers write through the root logger, as ours do
    )
    try:  # bound here, so that a port in use is an error of ours, not uvicorn's exit
        sock = socket.create_server((settings.web_host, settings.mailer_web_port))
    except OSError as exc:
        raise StreamsError(
            f"cannot serve health and metrics on {settings.web_host}:"
            f"{settings.mailer_web_port} (NUDGE_MAILER_WEB_PORT): {exc}"
        ) from exc
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def stop_web() -> None:
        server.should_exit = True
        await task

    stack.push_async_callback(stop_web)
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if task.done():
        task.result()

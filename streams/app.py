"""The Faust app: wiring only. Kafka in, :class:`triggers.Engine` in the middle, Kafka out.

- one agent reads ``events_topic`` in batches (``stream.take_events``) and hands each
  batch to the engine; a batch's offsets are acked only after the engine returns, which is
  after its send requests are on the broker and its Redis writes are done;
- one agent reads the compacted ``catalog_topic`` into the Redis catalog and publishes the
  ``price.alert`` events a lowered price raises (see :mod:`streams.catalog`); at start an
  empty Redis catalog is loaded from ``catalog_file``;
- one task sweeps, just after every whole ``timer_interval`` seconds, the durable timers
  of the partitions this worker owns, and goes again at once while claims come back full;
- the web server answers ``/health/live``, ``/health/ready`` and ``/metrics``.

The agent and the sweep share one lock, so a user's events and timers never interleave
inside a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from profiles import (
    CatalogError,
    Keys,
    LookupCache,
    RedisCatalog,
    RedisProfileStore,
    RedisStatistics,
    RedisSuppressionList,
    RedisTimerStore,
    StoreUnavailable,
)
from streams.catalog import CatalogFeed, FeedResult, load_if_empty
from streams.failures import is_retryable, process_safely, retry_forever
from streams.kafka_security import faust_credentials
from streams.metrics import Metrics
from streams.outbox import KafkaOutbox
from streams.redis_client import redis_client
from streams.settings import Settings
from streams.watch import ConfigWatch, config_hash
from triggers import BatchResult, ConfigError, DeadLetter, Engine, Incoming, RuleSet, load_rules
from triggers.contracts import DEAD_LETTER_KEEP
from triggers.firing import FUTURE_SKEW_MS, end_of_previous_moment

__all__ = ["Gathered", "Nudge", "create_app"]

log = logging.getLogger(__name__)

#: most rounds of one sweep while claims come back full (the lock is free between claims)
SWEEP_ROUNDS = 100
#: how long after each whole timer interval a sweep starts (seconds)
SWEEP_PHASE = 0.005

#: most catalog records applied at once, and how long to gather them (seconds)
CATALOG_BATCH, CATALOG_WITHIN = 500, 0.05

#: how late after the fetch wait a broker's answer may come before the partition
#: clocks stop (ms): the network and a busy event loop (see ``PartitionClock.now``)
ANSWER_MARGIN_MS = 250

#: library loggers held to the configured level (see ``Nudge._quiet_libraries``)
QUIET_LOGGERS = ("aiokafka", "faust", "mode")


class PartitionClock:
    """Event time per partition while catching up; wall-clock time once caught up.

    Timers are due by event time. While a partition has a backlog, its clock is the
    newest event time processed, so a purchase still in the backlog cancels a cart
    timer before the timer may fire. A caught-up partition follows the wall clock while
    the broker answers its fetches.

    A partition just assigned (after a start or a rebalance) has no clock until the
    worker knows where it stands: its committed offset and its high watermark, or a
    batch of it processed. Until then its timers wait, or a worker taking over a backlog
    would fire, on the wall clock, timers that events in that backlog cancel or move.
    """

    def __init__(self, answer_within_ms: int = 2**62) -> None:
        #: how long after a fetch's answer the next one is due (the fetch wait, and a
        #: margin for the network and a busy event loop); by default, no bound
        self.answer_within_ms = answer_within_ms
        self.watermark_ms: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}
        self.unsettled: set[int] = set()

    def assigned(self, partitions: Iterable[int]) -> None:
        """Forget what is known of ``partitions``: the consumer goes back to their
        committed offsets, or another worker moved them on meanwhile."""
        for partition in partitions:
            self.watermark_ms.pop(partition, None)
            self.next_offset.pop(partition, None)
            self.unsettled.add(partition)

    def committed(self, partition: int, offset: int) -> None:
        """The consumer resumes ``partition`` at ``offset``: everything before is done."""
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset)
        self.unsettled.discard(partition)

    def processed(self, partition: int, offset: int) -> None:
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)
        self.unsettled.discard(partition)

    def saw_event_time(self, partition: int, event_ms: int) -> None:
        """An event time seen; one ahead of the wall clock counts only up to
        :data:`FUTURE_SKEW_MS` ahead, so a client with a wrong clock (or a hostile one)
        cannot move its partition's clock into the future and fire every timer there."""
        event_ms = min(event_ms, int(time.time() * 1000) + FUTURE_SKEW_MS)
        self.watermark_ms[partition] = max(self.watermark_ms.get(partition, 0), event_ms)

    def now(
        self, partition: int, highwater: int | None, polled_ms: int | None = None
    ) -> datetime | None:
        """The partition's time; ``None`` while nothing may fire in it yet.

        ``polled_ms``: when the broker last answered a fetch of the partition (epoch
        ms). Every event the broker had then is processed, and a broker that works
        answers the next fetch as soon as it has another, or after the fetch wait with
        none: so a caught-up partition follows the wall clock up to ``answer_within_ms``
        after the last answer, and no further. A broker that stops answering stops the
        clock there, so the events it holds back still come before the timers due after
        their time, instead of being overtaken on the wall clock.
        """
        if partition in self.unsettled:
            return None
        if highwater is not None and self.next_offset.get(partition, 0) < highwater:
            if partition not in self.watermark_ms:  # a backlog, no event of it seen yet
                return None
            return datetime.fromtimestamp(self.watermark_ms[partition] / 1000, tz=UTC)
        known_ms = int(time.time() * 1000)
        if polled_ms is not None:
            known_ms = min(known_ms, polled_ms + self.answer_within_ms)
        return datetime.fromtimestamp(
            max(known_ms, self.watermark_ms.get(partition, 0)) / 1000, tz=UTC
        )


class Nudge:
    """The running engine inside one Faust app."""

    def __init__(
        self,
        settings: Settings,
        rules: RuleSet,
        *,
        adapt_rules: Callable[[RuleSet], RuleSet] | None = None,
    ) -> None:
        self.settings = settings
        self.adapt_rules = adapt_rules or (lambda rules: rules)
        self.metrics = Metrics()
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{host}" for host in settings.bootstrap_servers],
            broker_credentials=faust_credentials(settings),
            store="memory://",
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.commit_interval,
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=settings.session_timeout / 5,
            producer_acks=-1,
            # room for a dead letter of any event within the limit, with its headers
            producer_max_request_size=settings.max_event_bytes + DEAD_LETTER_KEEP,
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_bind=settings.web_host,
            datadir=str(settings.data_dir),
            autodiscover=False,
        )
        self.redis = redis_client(settings)
        keys = Keys(settings.redis_prefix)
        self.catalog = RedisCatalog(self.redis, keys=keys)
        self.statistics = RedisStatistics(
            self.redis,
            keys=keys,
            config=rules.config.recommendations,
        )
        self.lookups = LookupCache(
            self.statistics, ttl=settings.lookups_ttl, max_products=settings.lookups_cache_size
        )
        self.catalog_feed = CatalogFeed(self.catalog, self.statistics)
        self.engine = Engine(
            rules=rules,
            profiles=RedisProfileStore(
                self.redis,
                keys=keys,
                dedup_window=settings.dedup_window,
                dedup_max_age_ms=int(settings.dedup_max_age * 1000),
                cluster=settings.redis_cluster,
                pseudonyms=settings.pseudonyms,
                tombstone_ms=int(settings.erasure_tombstone_ttl * 1000),
            ),
            suppression=RedisSuppressionList(
                self.redis,
                keys=keys,
                pseudonyms=settings.pseudonyms,
            ),
            timers=RedisTimerStore(self.redis, keys=keys),
            outbox=KafkaOutbox(self.app, settings),
            lookups=self.lookups,
            statistics=self.statistics,
            max_event_bytes=settings.max_event_bytes,
        )
        fetch_wait_ms = int(settings.fetch_max_wait * 1000)
        self.clock = PartitionClock(answer_within_ms=fetch_wait_ms + ANSWER_MARGIN_MS)
        #: the partitions ``nudge_pending_timers`` has a value for
        self._gauged: set[int] = set()
        #: the group has assigned this worker its partitions (perhaps none) at least once
        self._assigned = False
        self.lock = asyncio.Lock()
        self.events_topic = self.app.topic(
            settings.events_topic,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.topic_partitions,
        )
        self.catalog_topic = self.app.topic(
            settings.catalog_topic,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.topic_partitions,
        )
        self._wire()

    def _wire(self) -> None:
        self.app.agent(self.events_topic, name="nudge.process")(self._consume)
        self.app.agent(self.catalog_topic, name="nudge.catalog")(self._consume_catalog)
        self.app.task(self._load_catalog)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.task(self._sweeper)
        self._config_watch = ConfigWatch(self.settings.config_dir, self.settings.model_dir)
        self._loaded(self.engine.rules)
        if self.settings.config_poll_interval > 0:
            poll = self.settings.config_poll_interval
            self.app.timer(poll, name="nudge.config")(self._watch_config)
        self.app.task(self._on_sighup)
        self.app.task(self._quiet_libraries)

        # faust calls page handlers as handler(view, request)
        async def live(view: Any, request: Any) -> Any:
            return view.json({"status": "ok"})

        async def ready(view: Any, request: Any) -> Any:
            checks = await self.readiness()
            return view.json(checks, status=200 if checks["ready"] else 503)

        async def metrics(view: Any, request: Any) -> Any:
            body = generate_latest(self.metrics.registry)
            return view.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        self.app.page("/health/live")(live)
        self.app.page("/health/ready")(ready)
        self.app.page("/metrics")(metrics)

    async def readiness(self) -> dict[str, Any]:
        """``/health/ready``: ready once the group has given this worker its partitions
        (none is an answer too) while Redis answers. The rules need no check: a worker
        does not start without valid rules, and a reload keeps them when the new ones
        are invalid."""
        checks: dict[str, Any] = {
            "redis": await self._redis_ok(),
            "assigned": self._assigned,
            "partitions": len(self._owned()),
        }
        return {"ready": checks["redis"] and checks["assigned"], **checks}

    async def reload_rules(self, why: str) -> bool:
        """Swap in the rules on disk if they are valid; keep the running ones if not."""
        try:
            settings = self.settings
            loaded = load_rules(
                settings.config_dir,
                model_dir=settings.model_dir,
                retention=settings.retention,
                unsubscribe=self.engine.rules.unsubscribe,  # the keys stay those started with
                public_url=settings.public_url,
            )
            rules = self.adapt_rules(loaded)
        except ConfigError as exc:
            self.metrics.reloads.labels("rejected").inc()
            for issue in exc.issues:
                log.error(
                    "config reload (%s) rejected, keeping the running rules and model: %s",
                    why,
                    issue,
                )
            return False
        async with self.lock:
            previous, self.engine.rules = self.engine.rules, rules
            self.statistics.config = rules.config.recommendations
        self.metrics.reloads.labels("applied").inc()
        self._loaded(rules)
        model = f"model {rules.model_version}" if rules.model is not None else "no model"
        log.warning("config reloaded (%s): %d rules active, %s", why, len(rules.rules), model)
        await self._replan(previous)
        return True

    def _loaded(self, rules: RuleSet) -> None:
        """``nudge_config_info``: the hash of the config files now in force."""
        digest = config_hash(self.settings.config_dir, self._config_watch.model_dir())
        self.metrics.loaded(digest, len(rules.rules))

    async def _replan(self, previous: RuleSet) -> None:
        """Cancel or move the owned partitions' timers that the new rules changed."""
        for tp in sorted(self._owned()):
            now = self.clock.now(tp.partition, self._highwater(tp)) or datetime.now(UTC)
            try:
                async with self.lock:
                    result = await self.engine.replan(tp.partition, previous, now)
            except Exception:
                # not fatal: a timer the new rules no longer know is suppressed when due
                self.metrics.timer_failures.inc()
                log.exception("re-planning the timers of partition %d failed", tp.partition)
                continue
            self.metrics.record(result)

    async def _watch_config(self) -> None:
        if self._config_watch.changed():
            await self.reload_rules("config changed")

    async def _on_sighup(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(
            signal.SIGHUP, lambda: loop.create_task(self.reload_rules("SIGHUP"))
        )

    async def _quiet_libraries(self) -> None:
        """Let the libraries' loggers drop what the log level drops, before it is built.

        Below ``warning`` nothing changes. At ``warning`` and above faust sets the root
        logger to DEBUG for its console spinner, so aiokafka built a debug record for every
        message produced (~6% of a timer sweep) only for the handler to drop it.
        """
        level = self.settings.log_level.upper()
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(level)

    def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Bound how long a fetch waits on the broker: faust fixes it at 1.5 s.

        A broker that holds a fetch for the whole wait when little is there (tansu does)
        would otherwise hand the worker its events in bursts, up to that wait late.
        """
        self._assigned = True
        self.clock.assigned(tp.partition for tp in self._owned())
        try:
            consumer: Any = self.app.consumer
            fetcher = consumer._thread._consumer._fetcher
        except AttributeError:  # another faust transport: leave it be
            log.warning("cannot bound the consumer's fetch wait on this transport")
            return
        fetcher._fetch_max_wait_ms = int(self.settings.fetch_max_wait * 1000)

    async def _consume(self, stream: Any) -> None:
        size, within = self.settings.batch_size, self.settings.batch_within
        gathered = Gathered(size, self.settings.batch_max_wait)
        async for events in stream.take_events(size, within=within):
            # take_events acks a batch when the loop moves on, even if this body raised;
            # hold one more reference so only our own ack, after durable work, counts.
            for event in events:
                event.message.incref()
            gathered.add(events)
            if not gathered.ready(more_on_broker=self._more_on_broker(events)):
                continue
            batch = gathered.take()
            await self.handle([_incoming(event.message) for event in batch])
            for event in batch:
                await stream.ack(event)

    async def _consume_catalog(self, stream: Any) -> None:
        async for events in stream.take_events(CATALOG_BATCH, within=CATALOG_WITHIN):
            await self.handle_catalog([(e.message.key, e.message.value) for e in events])

    async def handle_catalog(self, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """Apply catalog records and publish their price alerts, retried while Redis or
        the broker is unavailable (the records are acked only after)."""

        async def attempt() -> FeedResult:
            result = await self.catalog_feed.apply(records)
            producer, topic = self.app.producer, self.settings.events_topic
            pending = [
                await producer.send(topic, key, value, None, None, None)
                for key, value in result.alerts
            ]
            await asyncio.gather(*pending)
            return result

        result = await retry_forever(attempt, stage="catalog", metrics=self.metrics)
        for outcome, count in (
            ("stored", result.stored),
            ("deleted", result.deleted),
            ("invalid", result.invalid),
        ):
            self.metrics.catalog_records.labels(outcome).inc(count)
        self.metrics.price_alerts.inc(len(result.alerts))

    async def _load_catalog(self) -> None:
        """Fill an empty Redis catalog from the catalog file (another worker may be doing
        the same: the file's products are the same either way)."""
        try:
            loaded = await load_if_empty(self.catalog, self.settings.catalog_path)
        except CatalogError as exc:
            for issue in exc.issues:
                log.error("catalog file not loaded: %s", issue)
            return
        except Exception:
            log.exception("loading the catalog file failed; the catalog topic still fills it")
            return
        if loaded:
            log.warning("catalog: loaded %d products from %s", loaded, self.settings.catalog_path)

    def _more_on_broker(self, events: Sequence[Any]) -> bool:
        """Whether the partitions of ``events`` have more after them (a backlog)."""
        last: dict[Any, int] = {}
        for event in events:
            last[event.message.tp] = event.message.offset
        for tp, offset in last.items():
            highwater = self._highwater(tp)
            if highwater is not None and highwater > offset + 1:
                return True
        return False

    async def _process(self, batch: Sequence[Incoming]) -> BatchResult:
        async with self.lock:
            return await self.engine.process(batch)

    async def _dead_letter(self, letter: DeadLetter) -> None:
        await self.engine.outbox.publish([], [letter])

    async def handle(self, batch: Sequence[Incoming]) -> None:
        started = time.perf_counter()
        with self.metrics.in_flight.track_inprogress():
            result = await process_safely(self._process, self._dead_letter, batch, self.metrics)
        for message in batch:
            self.clock.processed(message.partition, message.offset)
        for partition, event_ms in result.watermarks.items():
            self.clock.saw_event_time(partition, event_ms)
        self.metrics.record(result)
        log_render_errors(result)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))

    async def _sweeper(self) -> None:
        """Sweep just after each whole ``timer_interval`` of the wall clock.

        A sweep fires whole seconds; one started at a fixed phase after the second ends
        fires that second at once, instead of up to an interval later.
        """
        interval = self.settings.timer_interval
        while not self.app.should_stop:
            await self.app.sleep(interval - time.time() % interval + SWEEP_PHASE)
            if not self.app.should_stop:
                await self._sweep()

    async def _sweep(self) -> None:
        """Fire the owned partitions' due timers; go round again at once while any
        partition had a full claim (a backlog of due timers), instead of a tick later."""
        for _ in range(SWEEP_ROUNDS):
            if not await self._sweep_round():
                return

    async def _sweep_round(self) -> bool:
        """One claim per owned partition; whether any claim was full."""
        full = False
        owned = sorted(self._owned())
        for tp in owned:
            highwater = self._highwater(tp)
            if highwater is not None:
                lag = max(highwater - self.clock.next_offset.get(tp.partition, 0), 0)
                self.metrics.lag.labels(str(tp.partition)).set(lag)
            self._settle(tp, highwater)
            now = self.clock.now(tp.partition, highwater, self._polled_ms(tp))
            if now is None:  # where the partition stands is not known yet
                continue
            self.metrics.partition_clock.labels(str(tp.partition)).set(now.timestamp())
            # fire only whole moments (seconds), so timers of one user falling due in the
            # same second arbitrate together, here as in `nudge simulate`
            horizon = end_of_previous_moment(now)
            limit = self.settings.timer_batch
            try:
                async with self.lock:
                    result = await self.engine.fire_due(
                        tp.partition, now, horizon=horizon, limit=limit
                    )
            except Exception as exc:
                # timers are durable: whatever failed is still there for the next sweep
                if is_retryable(exc):
                    self.metrics.retries.labels("timers").inc()
                    self.metrics.failed("timers", exc)
                    log.warning("timer sweep failed (%s); next sweep retries", exc)
                    return False
                self.metrics.timer_failures.inc()
                log.exception("timers of partition %d failed; other partitions go on", tp.partition)
                continue
            self.metrics.record(result)
            log_render_errors(result)
            full = full or result.timers_fired >= limit
        await self._count_pending(owned)
        return full

    async def _count_pending(self, owned: Sequence[Any]) -> None:
        """``nudge_pending_timers`` for the partitions owned now; neither it, the lag nor
        the clock for those gone (another worker reports them now)."""
        partitions, m = {tp.partition for tp in owned}, self.metrics
        for gone in self._gauged - partitions:
            for gauge in (m.pending_timers, m.lag, m.partition_clock):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(gone))
        self._gauged = partitions
        try:
            for partition in sorted(partitions):
                count = await self.engine.timers.count(partition)
                self.metrics.pending_timers.labels(str(partition)).set(count)
        except StoreUnavailable as exc:
            self.metrics.failed("timers", exc)

    def _owned(self) -> set[Any]:
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # consumer not started yet
            return set()
        return {tp for tp in assignment if tp.topic == self.settings.events_topic}

    def _settle(self, tp: Any, highwater: int | None) -> None:
        """Give a just-assigned partition its committed offset once the consumer has
        fetched it (faust keeps it from the seek it does on every assignment)."""
        if tp.partition not in self.clock.unsettled or highwater is None:
            return
        committed = getattr(self.app.consumer, "_committed_offset", {}).get(tp)
        if committed is not None:
            self.clock.committed(tp.partition, int(committed))

    def _highwater(self, tp: Any) -> int | None:
        try:
            value = self.app.consumer.highwater(tp)
        except Exception:  # not fetched yet
            return None
        return int(value) if value is not None else None

    def _polled_ms(self, tp: Any) -> int | None:
        """When the broker last answered a fetch of ``tp`` (epoch ms), if known."""
        try:
            consumer: Any = self.app.consumer
            value = consumer._thread._consumer.last_poll_timestamp(tp)
        except Exception:  # not fetched yet, or another faust transport
            return None
        return int(value) if value is not None else None

    async def _redis_ok(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False


class Gathered:
    """Events taken from the stream and not yet handed to the engine.

    Faust's ``take_events`` stops filling its buffer while a batch is processed, so the
    short window that keeps a caught-up worker's latency low gives small batches in a
    backlog, each paying a batch's round trips. While the broker has more after the
    events taken, they wait for a whole batch, at most ``max_wait`` seconds; a caught-up
    worker hands over what it has at once. (More on the broker always comes through the
    stream, so held events are never left waiting for an event that is not coming.)
    """

    def __init__(
        self, size: int, max_wait: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.max_wait = max_wait
        self.clock = clock
        self.events: list[Any] = []
        self.since = 0.0

    def add(self, events: Sequence[Any]) -> None:
        if not self.events:
            self.since = self.clock()
        self.events += events

    def ready(self, *, more_on_broker: bool) -> bool:
        if len(self.events) >= self.size or not more_on_broker:
            return True
        return self.clock() - self.since >= self.max_wait

    def take(self) -> list[Any]:
        events, self.events = self.events, []
        return events


def log_render_errors(result: BatchResult) -> None:
    """A template that failed is a bug to fix: one line per mail it cost, naming the rule
    and the user (the decision's detail quotes no value of the profile). Missing data is
    the user's, not a bug: the decisions and ``nudge_render_failures_total`` count it."""
    for decision in result.decisions:
        if decision.reason == "render_error":
            where = {"user_id": decision.user_id, "rule_id": decision.rule_id}
            log.warning("a mail did not render: %s", decision.detail, extra=where)


def _incoming(message: Any) -> Incoming:
    return Incoming(
        value=message.value,
        key=message.key,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )


def create_app(
    settings: Settings,
    rules: RuleSet,
    *,
    adapt_rules: Callable[[RuleSet], RuleSet] | None = None,
) -> Nudge:
    return Nudge(settings, rules, adapt_rules=adapt_rules)

"""Prometheus metrics: names in one place, recorded from engine results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

from aiokafka.errors import KafkaError
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from profiles import StoreUnavailable
from profiles.predictions import FeatureRow, Model, Scores
from profiles.predictions.drift import DriftMonitor
from triggers import BatchResult

__all__ = [
    "DRIFT_PSI",
    "DRIFT_ROWS",
    "PREDICTIONS",
    "PREDICTION_SCORE",
    "PREDICTION_VALUE",
    "Metrics",
]

#: gauge ``{model, feature}``: PSI of a feature or numeric score (``feature`` is its name)
DRIFT_PSI = "nudge_prediction_drift_psi"
#: gauge ``{model}``: scored rows the PSI is computed over (the drift window)
DRIFT_ROWS = "nudge_prediction_drift_window_rows"
#: counter ``{model}``: users scored (a user scored twice counts twice)
PREDICTIONS = "nudge_predictions"
#: histogram ``{model, score}``: purchase_probability and churn_probability
PREDICTION_SCORE = "nudge_prediction_score"
#: histogram ``{model}``: expected_value, in the shop's currency
PREDICTION_VALUE = "nudge_prediction_expected_value"

#: the decision reasons of a send that rendered nothing
RENDER_FAILURES = ("render_error", "missing_data")

#: what the worker was doing when Redis or the broker failed: a batch of events, one
#: message retried alone, a dead letter, a timer sweep, the catalog feed
OPERATIONS = ("batch", "message", "dead_letter", "timers", "catalog")
#: ``nudge_send_latency_seconds{kind}``
SEND_KINDS = ("immediate", "timer")

#: 10 ms to 10 minutes: a caught-up worker sends within tens of ms, a backlog in minutes
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
_MONEY_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Metrics:
    """Every metric nudge exports, on one registry (a fresh one per app, for tests)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        drift_refresh: float = 10.0,
        drift_window: int = 10_000,
        drift_min_rows: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``drift_refresh``: seconds a computed PSI is reused by later scrapes;
        ``drift_window`` / ``drift_min_rows``: see :class:`DriftMonitor`."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "nudge_events_total", "Events applied to profiles, by type", ["type"], registry=r
        )
        self.duplicates = Counter(
            "nudge_duplicate_events_total", "Events skipped as already applied", registry=r
        )
        self.dead_letters = Counter(
            "nudge_dead_letters_total",
            "Messages sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.decisions = Counter(
            "nudge_decisions_total",
            "Rule decisions by outcome and reason",
            ["rule", "outcome", "reason"],
            registry=r,
        )
        self.render_failures = Counter(
            "nudge_render_failures_total",
            "Sends not rendered: a template error (render_error) or data a template "
            "requires missing (missing_data)",
            ["rule", "reason"],
            registry=r,
        )
        self.sends = Counter(
            "nudge_send_requests_total",
            "Send requests published",
            ["rule", "category"],
            registry=r,
        )
        self.timers_fired = Counter(
            "nudge_timers_fired_total", "Timers claimed and evaluated", registry=r
        )
        self.timer_failures = Counter(
            "nudge_timer_failures_total",
            "Timer sweeps of a partition that failed for a reason other than an outage",
            registry=r,
        )
        self.retries = Counter(
            "nudge_retries_total",
            "Batches retried after a store or broker failure",
            ["stage"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "nudge_batch_seconds",
            "Time to make one batch durable",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "nudge_batch_events",
            "Messages per batch",
            registry=r,
            buckets=(1, 10, 50, 100, 250, 500, 1000),
        )
        self.reloads = Counter(
            "nudge_config_reloads_total",
            "Rule config reloads by result (applied|rejected)",
            ["result"],
            registry=r,
        )
        for result in ("applied", "rejected"):
            self.reloads.labels(result)
        self.catalog_records = Counter(
            "nudge_catalog_records_total",
            "Catalog topic records by result (stored|deleted|invalid)",
            ["result"],
            registry=r,
        )
        self.price_alerts = Counter(
            "nudge_price_alerts_total", "price.alert events published for price drops", registry=r
        )
        self.prediction_errors = Counter(
            "nudge_prediction_errors_total",
            "Scoring calls of the prediction model that failed (the users kept their scores)",
            registry=r,
        )
        self.lag = Gauge(
            "nudge_partition_lag",
            "Messages not yet processed, per events partition",
            ["partition"],
            registry=r,
        )
        self.partition_clock = Gauge(
            "nudge_partition_clock_seconds",
            "The time timers of each events partition fire by (epoch seconds): the newest "
            "event time in a backlog, else the wall clock while the broker answers",
            ["partition"],
            registry=r,
        )
        self._init_operations(r)
        self._init_predictions(r)
        self.drift = _DriftCollector(
            refresh=drift_refresh, window=drift_window, min_rows=drift_min_rows, clock=clock
        )
        r.register(self.drift)

    def _init_operations(self, r: CollectorRegistry) -> None:
        """What ops page on: latency, timers, errors, work in flight, the loaded config,
        and the process itself."""
        self.send_latency = Histogram(
            "nudge_send_latency_seconds",
            "Send requests: publish time minus the moment the send became due (the event's "
            "time for immediate sends, the timer's due time for timer sends)",
            ["kind"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.timer_lateness = Histogram(
            "nudge_timer_lateness_seconds",
            "Timers fired: fire time minus due time",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.pending_timers = Gauge(
            "nudge_pending_timers",
            "Timers waiting (due or not), per owned events partition",
            ["partition"],
            registry=r,
        )
        self.redis_errors = Counter(
            "nudge_redis_errors_total",
            "Redis calls that failed (and were retried), by what the worker was doing",
            ["operation"],
            registry=r,
        )
        self.kafka_errors = Counter(
            "nudge_kafka_errors_total",
            "Broker calls that failed (and were retried), by what the worker was doing",
            ["operation"],
            registry=r,
        )
        for operation in OPERATIONS:
            self.redis_errors.labels(operation)
            self.kafka_errors.labels(operation)
        for kind in SEND_KINDS:
            self.send_latency.labels(kind)
        self.in_flight = Gauge(
            "nudge_batches_in_flight",
            "Batches of events taken and not yet durable (retries included)",
            registry=r,
        )
        self.config = Info(
            "nudge_config", "The rule config in force: its content hash and rule count", registry=r
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def loaded(self, config_hash: str, rules: int) -> None:
        """The rule config now in force (at start and after every applied reload)."""
        self.config.info({"hash": config_hash, "rules": str(rules)})

    def failed(self, operation: str, exc: BaseException) -> None:
        """Count a retried failure against Redis or the broker, by what it interrupted."""
        system = failing_system(exc)
        if system == "redis":
            self.redis_errors.labels(operation).inc()
        elif system == "kafka":
            self.kafka_errors.labels(operation).inc()

    def _init_predictions(self, r: CollectorRegistry) -> None:
        self.predictions = Counter(
            PREDICTIONS, "Users scored by the prediction model", ["model"], registry=r
        )
        self.prediction_scores = Histogram(
            PREDICTION_SCORE,
            "Live purchase and churn probabilities",
            ["model", "score"],
            registry=r,
            buckets=_PROBABILITY_BUCKETS,
        )
        self.prediction_values = Histogram(
            PREDICTION_VALUE,
            "Live expected value per user, in the shop's currency",
            ["model"],
            registry=r,
            buckets=_MONEY_BUCKETS,
        )

    def record_predictions(
        self, model: Model, rows: Sequence[FeatureRow], scores: Sequence[Scores]
    ) -> None:
        """After scoring a batch: count the users, observe their scores, and add the rows
        to the drift window (whose PSI is computed when scraped, at most every
        ``drift_refresh`` seconds). A new model version starts a new window. O(rows)."""
        version = model.version
        self.predictions.labels(version).inc(len(scores))
        purchase = self.prediction_scores.labels(version, "purchase_probability")
        churn = self.prediction_scores.labels(version, "churn_probability")
        value = self.prediction_values.labels(version)
        for s in scores:
            purchase.observe(s.purchase_probability)
            churn.observe(s.churn_probability)
            value.observe(s.expected_value)
        self.drift.observe(model, rows, scores)

    def record(self, result: BatchResult, *, now: float | None = None) -> None:
        """Count what a durable batch or sweep did; ``now`` (epoch seconds, default the
        wall clock) is when its sends were published."""
        for event_type, count in result.by_type.items():
            self.events.labels(event_type).inc(count)
        if result.duplicates:
            self.duplicates.inc(result.duplicates)
        for letter in result.dead_letters:
            self.dead_letters.labels(letter.reason).inc()
        for decision in result.decisions:
            self.decisions.labels(decision.rule_id, decision.outcome, decision.reason).inc()
            if decision.reason in RENDER_FAILURES:
                self.render_failures.labels(decision.rule_id, decision.reason).inc()
        for send in result.sends:
            self.sends.labels(send.rule_id, send.category).inc()
        scored = result.scored
        if scored.errors:
            self.prediction_errors.inc(scored.errors)
        if scored.model is not None and scored.scores:
            self.record_predictions(scored.model, scored.rows, scored.scores)
        if result.timers_fired:
            self.timers_fired.inc(result.timers_fired)
        self._record_latency(result, now=time.time() if now is None else now)

    def _record_latency(self, result: BatchResult, *, now: float) -> None:
        now_ms = now * 1000
        for kind, due_ms in result.sends_due:
            self.send_latency.labels(kind).observe(max(now_ms - due_ms, 0) / 1000)
        for late_ms in result.timer_lateness_ms:
            self.timer_lateness.observe(max(late_ms, 0) / 1000)


def failing_system(exc: BaseException) -> str | None:
    """``redis`` or ``kafka``: which one an error (or the error it wraps) came from."""
    for error in (exc, exc.__cause__):
        if isinstance(error, StoreUnavailable):
            return "redis"
        if isinstance(error, KafkaError):
            return "kafka"
    return None


class _DriftCollector:
    """Exports the drift window's PSI per quantity, computing it when scraped, at most
    once every ``refresh`` seconds and only when rows arrived since."""

    def __init__(
        self, *, refresh: float, window: int, min_rows: int, clock: Callable[[], float]
    ) -> None:
        self._refresh, self._window, self._min_rows = refresh, window, min_rows
        self._clock = clock
        self._monitor: DriftMonitor | None = None
        self._values: dict[str, float] = {}
        self._computed_at: float | None = None
        self._fresh_rows = False
        self._lock = threading.Lock()

    def observe(self, model: Model, rows: Sequence[FeatureRow], scores: Sequence[Scores]) -> None:
        with self._lock:
            if self._monitor is None or self._monitor.version != model.version:
                self._monitor = DriftMonitor(model, window=self._window, min_rows=self._min_rows)
                self._values, self._computed_at = {}, None
            monitor = self._monitor
        monitor.observe(rows, scores)
        with self._lock:
            self._fresh_rows = True

    def _current(self) -> tuple[str, int, dict[str, float]] | None:
        with self._lock:
            monitor = self._monitor
            if monitor is None:
                return None
            now = self._clock()
            due = self._computed_at is None or now - self._computed_at >= self._refresh
            if self._fresh_rows and due:
                self._values, self._computed_at = monitor.psi(), now
                self._fresh_rows = False
            return monitor.version, len(monitor), self._values

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        current = self._current()
        psi, rows = self._families()
        if current is not None:
            version, count, values = current
            rows.add_metric([version], count)
            for name, value in values.items():
                psi.add_metric([version, name], value)
        yield psi
        yield rows

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        psi = GaugeMetricFamily(
            DRIFT_PSI,
            "Population stability index of a feature or score: recent scored users "
            "against the model's training data (>0.2: drifted, retrain)",
            labels=["model", "feature"],
        )
        rows = GaugeMetricFamily(
            DRIFT_ROWS, "Recent scored users the drift index is computed over", labels=["model"]
        )
        return psi, rows

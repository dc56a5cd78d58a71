"""Prometheus metrics: names in one place, recorded from engine results."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from triggers import BatchResult

__all__ = ["Metrics"]


class Metrics:
    """Every metric nudge exports, on one registry (a fresh one per app, for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
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

    def record(self, result: BatchResult) -> None:
        for event_type, count in result.by_type.items():
            self.events.labels(event_type).inc(count)
        if result.duplicates:
            self.duplicates.inc(result.duplicates)
        for letter in result.dead_letters:
            self.dead_letters.labels(letter.reason).inc()
        for decision in result.decisions:
            self.decisions.labels(decision.rule_id, decision.outcome, decision.reason).inc()
        for send in result.sends:
            self.sends.labels(send.rule_id, send.category).inc()
        if result.prediction_errors:
            self.prediction_errors.inc(result.prediction_errors)
        if result.timers_fired:
            self.timers_fired.inc(result.timers_fired)

"""The mailer's Prometheus metrics (``nudge_mailer_*``), on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MailerMetrics"]

_SMTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class MailerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "nudge_mailer_deliveries_total",
            "Send requests settled, by outcome (delivered|failed)",
            ["outcome"],
            registry=r,
        )
        self.send_failures = Counter(
            "nudge_mailer_send_failures_total",
            "Reports published to the send-failures topic, by reason",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "nudge_mailer_duplicates_total",
            "Send requests skipped: their request id was settled before",
            registry=r,
        )
        self.retries = Counter(
            "nudge_mailer_retries_total",
            "Waits before trying again: a 4xx answer (deferred), no SMTP server "
            "(unavailable), Redis or Kafka down (store)",
            ["reason"],
            registry=r,
        )
        self.smtp_seconds = Histogram(
            "nudge_mailer_smtp_seconds",
            "Time of one SMTP transaction, connecting included, whatever its end",
            registry=r,
            buckets=_SMTP_BUCKETS,
        )
        self.in_flight = Gauge(
            "nudge_mailer_in_flight", "Send requests being handled now", registry=r
        )

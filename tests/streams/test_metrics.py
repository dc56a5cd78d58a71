"""Metrics recorded from engine results."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.errors import KafkaConnectionError
from prometheus_client import generate_latest

from profiles import StoreUnavailable
from streams.metrics import Metrics, failing_system
from triggers import BatchResult, Decision

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_render_failures_count_template_errors_and_missing_data() -> None:
    metrics = Metrics()
    decisions = [
        Decision("cart", "u1", "suppressed", "render_error", "e1", AT),
        Decision("cart", "u2", "suppressed", "missing_data", "e2", AT),
        Decision("cart", "u3", "suppressed", "missing_data", "e3", AT),
        Decision("cart", "u4", "suppressed", "no_consent", "e4", AT),
        Decision("cart", "u5", "fired", "ok", "e5", AT),
    ]
    metrics.record(BatchResult(decisions=decisions))
    scraped = generate_latest(metrics.registry).decode()
    assert 'nudge_render_failures_total{reason="render_error",rule="cart"} 1.0' in scraped
    assert 'nudge_render_failures_total{reason="missing_data",rule="cart"} 2.0' in scraped
    assert 'reason="no_consent",rule="cart"} 1.0' in scraped  # in the decisions only
    assert 'nudge_render_failures_total{reason="no_consent"' not in scraped


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_send_latency_is_by_kind_from_when_each_send_became_due() -> None:
    metrics = Metrics()
    now = AT.timestamp()
    due_ms = int(now * 1000)
    result = BatchResult(
        sends_due=[("immediate", due_ms - 40), ("immediate", due_ms - 3_000), ("timer", due_ms)],
        timer_lateness_ms=[1_500, -20],
    )
    metrics.record(result, now=now)
    latency = "nudge_send_latency_seconds_bucket"
    assert _value(metrics, latency, kind="immediate", le="0.05") == 1
    assert _value(metrics, latency, kind="immediate", le="5.0") == 2
    assert _value(metrics, "nudge_send_latency_seconds_sum", kind="immediate") == 3.04
    assert _value(metrics, latency, kind="timer", le="0.01") == 1
    lateness = "nudge_timer_lateness_seconds_bucket"
    # a timer fired early by the clock's skew counts as on time, not as negative lateness
    assert _value(metrics, lateness, le="0.01") == 1
    assert _value(metrics, lateness, le="2.5") == 2


def test_errors_are_counted_against_the_system_that_failed() -> None:
    metrics = Metrics()
    assert _value(metrics, "nudge_redis_errors_total", operation="batch") == 0
    metrics.failed("batch", StoreUnavailable("Redis unavailable"))
    wrapped = RuntimeError("send failed")
    wrapped.__cause__ = KafkaConnectionError()
    metrics.failed("timers", wrapped)
    metrics.failed("batch", ValueError("a bug, neither system's"))
    assert _value(metrics, "nudge_redis_errors_total", operation="batch") == 1
    assert _value(metrics, "nudge_kafka_errors_total", operation="timers") == 1
    assert _value(metrics, "nudge_kafka_errors_total", operation="batch") == 0
    assert failing_system(ValueError()) is None


def test_the_config_in_force_is_an_info_metric_replaced_on_reload() -> None:
    metrics = Metrics()
    metrics.loaded("abc123", 10)
    metrics.loaded("def456", 9)
    scraped = generate_latest(metrics.registry).decode()
    assert 'nudge_config_info{hash="def456",rules="9"} 1.0' in scraped
    assert "abc123" not in scraped
    assert "process_resident_memory_bytes" in scraped

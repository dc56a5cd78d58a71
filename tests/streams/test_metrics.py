"""Metrics recorded from engine results."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest

from streams.metrics import Metrics
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

"""``nudge explain``'s verdict names the guard a deferred send waits for."""

from __future__ import annotations

from typing import Any

from streams.explain import verdict


def _report(reason: str | None) -> dict[str, Any]:
    timer = {"rule_id": "news", "key": "", "step": None, "deferred": reason}
    return {
        "pending_timers": [{**timer, "due": "2026-11-25T19:00:00+00:00", "partition": 0}],
        "recent_decisions": [],
    }


def test_a_send_deferred_to_the_best_hour_says_so() -> None:
    line = verdict(_report("best_hour"), "news")
    assert line == "pending, due 2026-11-25 19:00 UTC (deferred to the best hour)"


def test_a_send_deferred_by_quiet_hours_says_so() -> None:
    line = verdict(_report("quiet_hours"), "news")
    assert line == "pending, due 2026-11-25 19:00 UTC (deferred by quiet_hours)"


def test_a_timer_that_was_not_deferred_has_no_note() -> None:
    assert verdict(_report(None), "news") == "pending, due 2026-11-25 19:00 UTC"

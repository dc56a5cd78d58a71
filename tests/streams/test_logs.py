"""The JSON log lines: one object per line, the named fields, the traceback."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson
import pytest

from streams.app import log_render_errors
from streams.logs import JsonFormatter, log_format, logging_config
from streams.settings import Settings
from triggers import BatchResult, Decision


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("streams.app", logging.WARNING, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_holds_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(record("hello %s", "world"))
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed.keys() == {"ts", "level", "logger", "message"}
    assert parsed["ts"].endswith("+00:00")
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "warning",
        "streams.app",
        "hello world",
    )


def test_the_fields_passed_with_extra_and_no_others() -> None:
    line = JsonFormatter().format(
        record(topic="t", partition=3, offset=42, user_id="ada", rule_id=None, other="x")
    )
    parsed = orjson.loads(line)
    assert {k: parsed[k] for k in ("topic", "partition", "offset", "user_id")} == {
        "topic": "t",
        "partition": 3,
        "offset": 42,
        "user_id": "ada",
    }
    assert "rule_id" not in parsed and "other" not in parsed


def test_an_exception_is_one_field_of_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record()
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    assert "ValueError: boom" in orjson.loads(line)["exc"]


def test_the_setting_overrides_the_verbs_default() -> None:
    assert log_format(Settings(), "json") == "json"
    assert log_format(Settings(), "text") == "text"
    assert log_format(Settings(log_format="text"), "json") == "text"
    config = logging_config(Settings(log_level="warning"), default_format="text")
    assert config["root"]["level"] == "WARNING"
    assert "format" in config["formatters"]["nudge"]


def test_a_mail_that_did_not_render_is_logged_with_its_rule_and_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    decisions = [
        Decision("cart", "ada", "suppressed", "render_error", "e1", at, detail="'x' is undefined"),
        Decision("cart", "bob", "suppressed", "missing_data", "e2", at, detail="cart.items"),
    ]
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        log_render_errors(BatchResult(decisions=decisions))
    [logged] = caplog.records
    parsed = orjson.loads(JsonFormatter().format(logged))
    assert (parsed["rule_id"], parsed["user_id"]) == ("cart", "ada")
    assert "'x' is undefined" in parsed["message"]

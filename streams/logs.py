"""Log lines for the long-running verbs: one JSON object per line, or plain text.

``nudge worker``, ``nudge collector`` and ``nudge mailer`` log JSON unless
``NUDGE_LOG_FORMAT=text``; ``nudge dev`` logs text unless told otherwise. A JSON line
holds ``ts`` (ISO-8601, UTC), ``level``, ``logger`` and ``message``, then whichever of
:data:`FIELDS` the call passed with ``extra=``, and ``exc`` (the traceback) for an
exception.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from streams.settings import Settings

__all__ = ["FIELDS", "JsonFormatter", "configure_logging", "log_format", "logging_config"]

#: the ``extra=`` keys a JSON line carries, when a call passes them
FIELDS = ("topic", "partition", "offset", "user_id", "rule_id")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Format = Literal["json", "text"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def log_format(settings: Settings, default: Format) -> Format:
    """The format asked for with ``NUDGE_LOG_FORMAT``, else the verb's ``default``."""
    return settings.log_format or default


def logging_config(settings: Settings, *, default_format: Format) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document: the root logger, at the log level,
    writing to stderr in the format. Faust's worker takes it as ``logging_config``."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if log_format(settings, default_format) == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nudge": formatter},
        "handlers": {
            "nudge": {
                "class": "logging.StreamHandler",
                "formatter": "nudge",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["nudge"]},
    }


def configure_logging(settings: Settings, *, default_format: Format) -> None:
    """Send every logger's records to stderr in the configured format."""
    logging.config.dictConfig(logging_config(settings, default_format=default_format))

"""Exceptions raised by the triggers package (one root: :class:`TriggerError`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue", "TriggerError"]


class TriggerError(Exception):
    """Root of every error raised by :mod:`triggers`."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the rule config, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(TriggerError):
    """The rule config is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues

"""Event history from a JSON-lines file, one event of the contract per line.

:class:`EventFile` streams the file (plain or ``.gz``) line by line, so training memory
does not grow with the file. A line that is not a valid event stops the read with a
:class:`HistoryError` naming ``file:line`` and the reason, because a model silently
trained on part of a history is worse than no model; ``skip_invalid`` (the CLI's
``--skip-invalid``) skips such lines instead and counts them in :attr:`EventFile.skipped`.
Blank lines are ignored.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from profiles.errors import InvalidEvent, ProfileError
from profiles.events import Event, parse_event

__all__ = ["EventFile", "HistoryError"]


class HistoryError(ProfileError):
    """An event history cannot be read: missing file, or a line that is not an event."""


class EventFile:
    """The events of one JSON-lines file, in file order; iterate it once per pass."""

    def __init__(self, path: Path, *, skip_invalid: bool = False) -> None:
        self.path = path
        self.skip_invalid = skip_invalid
        #: valid events yielded by the last pass
        self.read = 0
        #: invalid lines skipped by the last pass (``skip_invalid`` only)
        self.skipped = 0

    def __iter__(self) -> Iterator[Event]:
        self.read = self.skipped = 0
        number = 0
        try:
            with self._open() as lines:
                for number, line in enumerate(lines, start=1):
                    event = self._parse(line, number)
                    if event is not None:
                        self.read += 1
                        yield event
        except (OSError, EOFError) as exc:  # unreadable or truncated (gzip) file
            raise HistoryError(f"{self.path}:{number + 1}: cannot read: {exc}") from exc

    def _parse(self, line: bytes, number: int) -> Event | None:
        if not line.strip():
            return None
        try:
            return parse_event(line)
        except InvalidEvent as exc:
            if not self.skip_invalid:
                raise HistoryError(f"{self.path}:{number}: {exc}") from exc
            self.skipped += 1
            return None

    def _open(self) -> BinaryIO:
        try:
            if self.path.suffix == ".gz":
                return cast(BinaryIO, gzip.open(self.path, "rb"))
            return self.path.open("rb")
        except OSError as exc:
            raise HistoryError(f"cannot read events from {self.path}: {exc}") from exc

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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from profiles.errors import InvalidEvent, ProfileError
from profiles.events import Event, parse_event

__all__ = ["EventFile", "HistoryError", "parse_events", "write_events"]


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


def parse_events(events: Iterable[Mapping[str, Any]]) -> Iterator[Event]:
    """Events given as plain data (e.g. a test's list of dicts), validated like a file's
    lines; an invalid one raises :class:`HistoryError` naming its position."""
    for number, data in enumerate(events, start=1):
        try:
            yield parse_event(orjson.dumps(data))
        except InvalidEvent as exc:
            raise HistoryError(f"event {number}: {exc}") from exc


def write_events(events: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write ``events`` as JSON lines (gzip when ``path`` ends in ``.gz``, with a fixed
    header so the same events give the same bytes); returns how many were written."""
    count = 0
    with path.open("wb") as raw:
        out: BinaryIO = raw
        if path.suffix == ".gz":
            out = cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=5, mtime=0))
        with out:
            for event in events:
                out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
    return count

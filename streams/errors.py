"""Exceptions raised by the streams package (one root: :class:`StreamsError`)."""

from __future__ import annotations

__all__ = ["StreamsError"]


class StreamsError(Exception):
    """Root of every error raised by :mod:`streams`."""

"""Exceptions raised by the render package (one root: :class:`RenderError`)."""

from __future__ import annotations

__all__ = ["RenderError", "TemplateMissing"]


class RenderError(Exception):
    """A template could not be rendered (syntax error, undefined variable, sandbox breach)."""


class TemplateMissing(RenderError):
    """A rule names a template whose files are not there."""

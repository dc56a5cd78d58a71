"""Exceptions raised by the render package (one root: :class:`RenderError`)."""

from __future__ import annotations

__all__ = ["MissingData", "RenderError", "TemplateMissing"]


class RenderError(Exception):
    """A template could not be rendered (syntax error, undefined variable, sandbox breach)."""


class TemplateMissing(RenderError):
    """A rule names a template whose files are not there."""


class MissingData(RenderError):
    """A field the template requires (``template.yaml``) has no value for this send;
    nothing of the mail was rendered."""

    def __init__(self, template: str, field: str, why: str = "not set") -> None:
        super().__init__(f"template {template!r} requires {field}, which is {why}")
        self.template = template
        #: the dotted name, as ``requires`` lists it
        self.field = field

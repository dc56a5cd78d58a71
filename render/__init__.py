"""Render emails with one sandboxed Jinja2 environment."""

from render.environment import build_environment, build_expression_environment
from render.errors import MissingData, RenderError, TemplateMissing
from render.locales import normalise_locale
from render.renderer import REQUIRED_FILES, TEMPLATE_FILES, RenderedEmail, Renderer
from render.spec import TemplateSpec

__all__ = [
    "REQUIRED_FILES",
    "TEMPLATE_FILES",
    "MissingData",
    "RenderError",
    "RenderedEmail",
    "Renderer",
    "TemplateMissing",
    "TemplateSpec",
    "build_environment",
    "build_expression_environment",
    "normalise_locale",
]

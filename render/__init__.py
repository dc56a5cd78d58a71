"""Render emails with one sandboxed Jinja2 environment."""

from render.environment import build_environment, build_expression_environment
from render.errors import RenderError, TemplateMissing
from render.renderer import TEMPLATE_FILES, RenderedEmail, Renderer

__all__ = [
    "TEMPLATE_FILES",
    "RenderError",
    "RenderedEmail",
    "Renderer",
    "TemplateMissing",
    "build_environment",
    "build_expression_environment",
]

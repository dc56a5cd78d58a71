"""Render one email (subject, HTML, text) from a template directory.

A template named ``welcome`` is three files under the template root:
``welcome/subject.txt``, ``welcome/body.html`` and ``welcome/body.txt``. Event data only
ever enters as values in the context, never as template source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateNotFound, nodes
from jinja2.exceptions import SecurityError

from render.environment import build_environment
from render.errors import RenderError, TemplateMissing

__all__ = ["TEMPLATE_FILES", "RenderedEmail", "Renderer"]

#: the files that make up one template, by part
TEMPLATE_FILES = {"subject": "subject.txt", "html": "body.html", "text": "body.txt"}


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class Renderer:
    def __init__(self, template_dir: Path) -> None:
        self.template_dir = template_dir
        self._env = build_environment(template_dir)

    def missing_files(self, name: str) -> list[Path]:
        """The files of template ``name`` that do not exist (empty when complete)."""
        return [
            self.template_dir / name / filename
            for filename in TEMPLATE_FILES.values()
            if not (self.template_dir / name / filename).is_file()
        ]

    def check(self, name: str) -> None:
        """Compile every part of ``name``; raise :class:`RenderError` on the first problem."""
        for filename in TEMPLATE_FILES.values():
            self._get(name, filename)

    def parsed(self, name: str) -> dict[str, nodes.Template]:
        """The syntax tree of every part of ``name``, by file name, for static checks."""
        trees = {}
        for filename in TEMPLATE_FILES.values():
            path = f"{name}/{filename}"
            with self._translated(name, filename):
                loader = self._env.loader
                if loader is None:
                    raise TemplateNotFound(path)
                source, _, _ = loader.get_source(self._env, path)
                trees[filename] = self._env.parse(source, path, path)
        return trees

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        parts = {}
        for part, filename in TEMPLATE_FILES.items():
            template = self._get(name, filename)
            try:
                parts[part] = template.render(context)
            except (TemplateError, SecurityError) as exc:
                raise RenderError(f"{name}/{filename}: {exc}") from exc
            except Exception as exc:  # a filter or function given what it cannot take
                kind = type(exc).__name__
                raise RenderError(f"{name}/{filename}: {kind}: {exc}") from exc
        subject = " ".join(parts["subject"].split())
        return RenderedEmail(subject=subject, html=parts["html"], text=parts["text"].strip() + "\n")

    def _get(self, name: str, filename: str) -> Any:
        with self._translated(name, filename):
            return self._env.get_template(f"{name}/{filename}")

    @contextmanager
    def _translated(self, name: str, filename: str) -> Iterator[None]:
        """Jinja2's loading and syntax errors as :class:`RenderError`."""
        try:
            yield
        except TemplateNotFound as exc:
            raise TemplateMissing(f"template {name!r} has no {filename}") from exc
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f"{name}/{filename}" + (f":{line}" if line else "")
            raise RenderError(f"{where}: {exc}") from exc

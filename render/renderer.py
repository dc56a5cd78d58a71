"""Render one email (subject, preheader, HTML, text) from a template directory.

A template named ``welcome`` is a directory under the template root (see
:mod:`render.tree` for layouts, partials and locale variants):

- ``subject.txt`` (required), rendered and folded onto one line;
- ``preheader.txt`` (optional, empty when absent): the line inboxes show after the
  subject; the HTML sees it as ``preheader``;
- ``body.html`` (required); CSS in its ``<style>`` elements is inlined into ``style``
  attributes after rendering (``@media`` rules stay in a ``<style>`` element);
- ``body.txt`` (optional): the text part; without one in the directory ``body.html``
  came from, the text part is made from the rendered HTML (:mod:`render.text`);
- ``template.yaml`` (optional): ``requires`` (:mod:`render.spec`).

Every file is compiled once per template and reader locale chain, on first use. Event
data only ever enters as values in the context, never as template source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import yaml
from jinja2 import Template, TemplateError, TemplateNotFound, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from render.environment import build_environment
from render.errors import MissingData, RenderError, TemplateMissing
from render.locales import normalise_locale
from render.spec import SPEC_FILE, TemplateSpec, first_missing
from render.text import html_to_text
from render.tree import LocaleLoader, TemplateTree

__all__ = ["REQUIRED_FILES", "TEMPLATE_FILES", "RenderedEmail", "Renderer"]

#: the files that make up one template, by part
TEMPLATE_FILES = {
    "subject": "subject.txt",
    "preheader": "preheader.txt",
    "html": "body.html",
    "text": "body.txt",
}
#: the files every template has (at its root: the last fallback of every locale)
REQUIRED_FILES = ("subject.txt", "body.html")

_STYLE = re.compile(r"<style", re.IGNORECASE)
_BLANKS = re.compile(r"[ \t\r\n\f\v]+")
#: (template, reader locale) pairs remembered (each maps to one of few variant chains)
_CHAIN_CACHE = 4096


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True)
class _Compiled:
    """One template, compiled for one locale chain."""

    subject: Template
    preheader: Template | None
    html: Template
    #: ``None``: the text part is made from the HTML
    text: Template | None
    requires: tuple[str, ...]


class Renderer:
    def __init__(
        self,
        template_dir: Path,
        *,
        locale: str = "en_US",
        currency: str = "USD",
        timezone: str = "UTC",
    ) -> None:
        """``locale``, ``currency`` and ``timezone``: what the filters format in when a
        render names no locale (or one Babel does not know) and the context no zone."""
        self.template_dir = template_dir
        self.locale = normalise_locale(locale) or "en_US"
        self._defaults = {"locale": self.locale, "currency": currency, "timezone": timezone}
        self._tree: TemplateTree | None = None
        self._envs: dict[tuple[str, ...], ImmutableSandboxedEnvironment] = {}
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._chains: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._subjects: dict[str, Template] = {}
        # built once: remote stylesheets are never fetched on the send path
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    @property
    def tree(self) -> TemplateTree:
        if self._tree is None:
            self._tree = TemplateTree.scan(self.template_dir)
        return self._tree

    # --- rendering ------------------------------------------------------------------------

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = None,
        subject: str | None = None,
    ) -> RenderedEmail:
        """Template ``name`` for a reader of ``locale``; ``subject``, when given, is the
        Jinja source of the subject instead of ``subject.txt`` (an experiment's variant).

        Raises :class:`MissingData` (before rendering anything) when a required field is
        missing, :class:`RenderError` for anything else that fails.
        """
        chain = self._chain(name, locale)
        compiled = self._compiled.get((name, chain)) or self._compile(name, chain)
        missing = first_missing(context, compiled.requires)
        if missing is not None:
            raise MissingData(name, *missing)
        reader = normalise_locale(locale) or self.locale
        if subject is None:
            title = _run(compiled.subject, f"{name}/subject.txt", context, locale=reader)
        else:
            title = _run(self._subject(subject), f"{name}: subject", context, locale=reader)
        preheader = ""
        if compiled.preheader is not None:
            where = f"{name}/preheader.txt"
            preheader = _one_line(_run(compiled.preheader, where, context, locale=reader))
        where = f"{name}/body.html"
        html = _run(compiled.html, where, context, locale=reader, preheader=preheader)
        if compiled.text is None:
            text = html_to_text(html)
        else:
            text = _run(compiled.text, f"{name}/body.txt", context, locale=reader).strip()
        return RenderedEmail(_one_line(title), preheader, self._inline(name, html), text + "\n")

    def _inline(self, name: str, html: str) -> str:
        if _STYLE.search(html) is None:
            return html  # nothing to inline: the HTML stays as rendered
        try:
            return self._inliner.inline(html)
        except (css_inline.InlineError, ValueError) as exc:
            raise RenderError(f"{name}/body.html: cannot inline its CSS: {exc}") from exc

    def _chain(self, name: str, locale: str | None) -> tuple[str, ...]:
        key = (name, locale)
        chain = self._chains.get(key)
        if chain is None:
            if len(self._chains) >= _CHAIN_CACHE:
                self._chains.clear()
            chain = self._chains[key] = self.tree.chain(name, locale)
        return chain

    def _env(self, chain: tuple[str, ...]) -> ImmutableSandboxedEnvironment:
        env = self._envs.get(chain)
        if env is None:
            loader = LocaleLoader(self.tree, chain)
            env = self._envs[chain] = build_environment(loader, **self._defaults)
        return env

    def check_subject(self, source: str) -> None:
        """Compile a subject line given as Jinja source; :class:`RenderError` if it is not
        one (``nudge validate`` on experiment variants)."""
        self._subject(source)

    def _subject(self, source: str) -> Template:
        template = self._subjects.get(source)
        if template is None:
            try:
                template = self._env(()).from_string(source)
            except TemplateError as exc:
                raise RenderError(f"subject {source!r}: {exc}") from exc
            self._subjects[source] = template
        return template

    def _compile(self, name: str, chain: tuple[str, ...]) -> _Compiled:
        env, tree = self._env(chain), self.tree
        html_path = tree.resolve(f"{name}/body.html", chain)
        if html_path is None or tree.resolve(f"{name}/subject.txt", chain) is None:
            missing = "body.html" if html_path is None else "subject.txt"
            raise TemplateMissing(f"template {name!r} has no {missing}")
        text_path = f"{html_path.rpartition('/')[0]}/body.txt"
        has_preheader = tree.resolve(f"{name}/preheader.txt", chain) is not None
        compiled = _Compiled(
            subject=self._get(env, name, "subject.txt"),
            preheader=self._get(env, name, "preheader.txt") if has_preheader else None,
            html=self._get(env, name, "body.html"),
            text=self._get(env, text_path, "") if (tree.root / text_path).is_file() else None,
            requires=self.spec(name).requires,
        )
        self._compiled[(name, chain)] = compiled
        return compiled

    def _get(self, env: ImmutableSandboxedEnvironment, name: str, filename: str) -> Template:
        path = f"{name}/{filename}" if filename else name
        with _translated(path, self.template_dir):
            return env.get_template(path)

    # --- what ``nudge validate`` checks ---------------------------------------------------

    def templates(self) -> list[str]:
        """The names of the templates (directories not starting with ``_``)."""
        return self.tree.templates

    def missing_files(self, name: str) -> list[Path]:
        """The required files of template ``name`` that do not exist (empty when complete)."""
        return [
            self.template_dir / name / filename
            for filename in REQUIRED_FILES
            if not (self.template_dir / name / filename).is_file()
        ]

    def locales(self, name: str) -> dict[str, str]:
        """The locale variants of template ``name``: normalised locale -> directory."""
        return dict(self.tree.variants_of(name))

    def problems(self, name: str) -> list[tuple[Path, str]]:
        """What is wrong with the directories of ``name`` (not a locale, a locale spelt
        twice, a ``template.yaml`` in a variant)."""
        found = [
            (self.template_dir / rel, message)
            for rel, message in self.tree.problems
            if rel.split("/", 1)[0] == name
        ]
        for directory in self.locales(name).values():
            misplaced = self.template_dir / name / directory / SPEC_FILE
            if misplaced.is_file():
                found.append((misplaced, "template.yaml belongs in the template's own directory"))
        return found

    def check(self, name: str) -> None:
        """Compile every file of ``name`` in every locale variant, and its
        ``template.yaml``; raise :class:`RenderError` on the first problem."""
        for chain in {(), *(self.tree.chain(name, locale) for locale in self.locales(name))}:
            self._compiled.pop((name, chain), None)
            self._compile(name, chain)

    def spec_path(self, name: str) -> Path:
        return self.template_dir / name / SPEC_FILE

    def spec(self, name: str) -> TemplateSpec:
        """What ``<name>/template.yaml`` says (an empty spec without one)."""
        path = self.spec_path(name)
        if not path.is_file():
            return TemplateSpec()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return TemplateSpec.model_validate({} if data is None else data)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise RenderError(f"{name}/{SPEC_FILE}: {exc}") from exc

    def parsed(self, name: str) -> dict[str, nodes.Template]:
        """The syntax tree of every file of ``name`` (variants too), by path within it
        (``body.html``, ``de/subject.txt``), for static checks."""
        directories = ["", *(f"{d}/" for d in self.locales(name).values())]
        return {
            f"{directory}{filename}": self.parse(f"{name}/{directory}{filename}")
            for directory in directories
            for filename in TEMPLATE_FILES.values()
            if (self.template_dir / name / f"{directory}{filename}").is_file()
        }

    def shared_files(self) -> list[str]:
        """The layouts and partials, variants included (paths under the root)."""
        return self.tree.shared_files

    def parse(self, path: str) -> nodes.Template:
        """The syntax tree of the file at ``path`` under the root (no locale lookup)."""
        env = self._env(())
        with _translated(path, self.template_dir):
            source = (self.template_dir / path).read_text(encoding="utf-8")
            return env.parse(source, path, path)


def _relative(filename: str | None, root: Path) -> str | None:
    if not filename:
        return None
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return None


def _one_line(text: str) -> str:
    """``text`` on one line; no-break spaces (``1.234,50\xa0€``) stay."""
    return _BLANKS.sub(" ", text).strip(" ")


def _run(template: Template, where: str, context: Mapping[str, Any], **extra: Any) -> str:
    """``template`` rendered; whatever fails in it is a :class:`RenderError`."""
    try:
        return template.render(context, **extra)
    except (TemplateError, SecurityError) as exc:
        raise RenderError(f"{where}: {exc}") from exc
    except Exception as exc:  # a filter or function given what it cannot take
        raise RenderError(f"{where}: {type(exc).__name__}: {exc}") from exc


@contextmanager
def _translated(path: str, root: Path) -> Iterator[None]:
    """Jinja2's loading and syntax errors as :class:`RenderError`, naming the file that
    has the error (a locale variant's, a layout's) where Jinja2 knows it."""
    try:
        yield
    except TemplateNotFound as exc:
        raise TemplateMissing(f"no template file {exc.name or path!r}") from exc
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = _relative(getattr(exc, "filename", None), root) or path
        raise RenderError(f"{where}{f':{line}' if line else ''}: {exc}") from exc
    except OSError as exc:
        raise TemplateMissing(f"cannot read {path}: {exc.strerror}") from exc

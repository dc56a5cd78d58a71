"""The template directory: templates, shared layouts and partials, and locale variants.

```
templates/
  _layouts/base.html          shared: {% extends "_layouts/base.html" %}
  _partials/footer.html       shared: {% include "_partials/footer.html" %}
  _partials/de/footer.html    ... its German variant
  welcome/subject.txt         the template "welcome"
  welcome/de/subject.txt      ... its German subject
```

A directory directly under the root is a template, unless its name starts with ``_``
(shared files). A directory below those whose name is a locale (``de``, ``de_AT`` or
``de-AT``) holds variants of its parent's files. A file is looked up per file: in the
variant of the reader's locale (``de_AT``), then of its language (``de``), then in the
parent itself, so a variant holds only what it translates. Layouts and partials are
looked up the same way, in the locales the template itself has a variant for: a
template without a German variant is English throughout, its footer included.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import BaseLoader, Environment, TemplateNotFound
from jinja2.loaders import split_template_path

from render.locales import fallbacks, is_locale, normalise_locale

__all__ = ["LocaleLoader", "TemplateTree"]

#: names under the root that are not templates start with this
SHARED_PREFIX = "_"


@dataclass
class TemplateTree:
    root: Path
    #: parent directory (relative, ``/``-separated) -> normalised locale -> directory name
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    #: problems found while scanning: (relative path, message)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def scan(cls, root: Path) -> TemplateTree:
        tree = cls(root)
        if not root.is_dir():
            return tree
        for top in sorted(p for p in root.iterdir() if p.is_dir()):
            tree._scan(top, shared=top.name.startswith(SHARED_PREFIX))
        return tree

    def _scan(self, directory: Path, *, shared: bool) -> None:
        parent = directory.relative_to(self.root).as_posix()
        for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
            rel = sub.relative_to(self.root).as_posix()
            normal = normalise_locale(sub.name) if is_locale(sub.name) else None
            if normal is None:
                if shared:
                    self._scan(sub, shared=True)  # a folder of partials
                else:
                    self.problems.append((rel, f"{sub.name!r} is not a locale (de, de_AT, ...)"))
                continue
            found = self.variants.setdefault(parent, {})
            if normal in found:
                self.problems.append((rel, f"the same locale as {parent}/{found[normal]}"))
                continue
            found[normal] = sub.name

    @property
    def templates(self) -> list[str]:
        """The template names (directories under the root not starting with ``_``)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(SHARED_PREFIX)
        )

    @property
    def shared_files(self) -> list[str]:
        """Every file of the shared directories, variants included (relative paths)."""
        if not self.root.is_dir():
            return []
        found = []
        for top in sorted(self.root.iterdir()):
            if top.is_dir() and top.name.startswith(SHARED_PREFIX):
                for here, _, files in os.walk(top):
                    found += [(Path(here) / f).relative_to(self.root).as_posix() for f in files]
        return sorted(found)

    def variants_of(self, parent: str) -> dict[str, str]:
        """The variant directories of ``parent`` (a template name): locale -> name."""
        return self.variants.get(parent, {})

    def chain(self, name: str, locale: str | None) -> tuple[str, ...]:
        """The variant locales template ``name`` serves a reader of ``locale`` from, most
        specific first: those it has a variant for (the chain is a cache key)."""
        normal = normalise_locale(locale)
        if normal is None:
            return ()
        known = self.variants.get(name, {})
        return tuple(locale for locale in fallbacks(normal) if locale in known)

    def resolve(self, name: str, chain: tuple[str, ...]) -> str | None:
        """The relative path of the file serving ``name`` (``welcome/body.html``) to a
        reader of ``chain``; ``None`` when there is none."""
        parts = split_template_path(name)  # refuses '..'
        parent, filename = "/".join(parts[:-1]), parts[-1]
        variants = self.variants.get(parent, {})
        for locale in chain:
            directory = variants.get(locale)
            if directory is not None:
                rel = f"{parent}/{directory}/{filename}"
                if (self.root / rel).is_file():
                    return rel
        rel = "/".join(parts)
        return rel if (self.root / rel).is_file() else None


class LocaleLoader(BaseLoader):
    """Loads ``welcome/body.html`` from the variant of the reader's locale chain, else
    from the template itself; for ``{% extends %}`` and ``{% include %}`` too."""

    def __init__(self, tree: TemplateTree, chain: tuple[str, ...]) -> None:
        self.tree, self.chain = tree, chain

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        rel = self.tree.resolve(template, self.chain)
        if rel is None:
            raise TemplateNotFound(template)
        path = self.tree.root / rel
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateNotFound(template) from exc
        return source, str(path), lambda: True  # compiled once: a reload builds a new renderer

    def list_templates(self) -> list[str]:
        return sorted(self._files())

    def _files(self) -> Iterator[str]:
        for here, _, files in os.walk(self.tree.root):
            for filename in files:
                yield (Path(here) / filename).relative_to(self.tree.root).as_posix()

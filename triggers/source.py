"""``rules.yaml`` as read: the raw data, the line of every node, and issues located in it.

Both the schema check (pydantic) and the semantic checks (:mod:`triggers.checks`) report
through :meth:`ConfigSource.issue`, so every problem reads the same:
``config/rules.yaml:12: rules[1] (cart_abandonment).wait: invalid duration 'soon'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from triggers.errors import ConfigError, ConfigIssue

__all__ = ["ConfigSource", "YamlPath", "read_config"]

#: where a value sits in the document: ``("rules", 1, "wait")``
YamlPath = tuple[str | int, ...]


@dataclass
class ConfigSource:
    """One parsed config file; collects the issues found in it."""

    shown: str
    data: Any
    lines: dict[YamlPath, int]
    issues: list[ConfigIssue] = field(default_factory=list)

    def line(self, path: YamlPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        return next(
            (self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines),
            None,
        )

    def field_name(self, path: YamlPath) -> str:
        """``rules[1] (cart_abandonment).wait`` for ``("rules", 1, "wait")``."""
        text = ""
        data = self.data
        for part in path:
            if isinstance(part, int):
                text += f"[{part}]"
                data = data[part] if isinstance(data, list) and part < len(data) else None
                if isinstance(data, dict) and isinstance(data.get("id"), str):
                    text += f" ({data['id']})"
                continue
            text += f".{part}" if text else part
            data = data.get(part) if isinstance(data, dict) else None
        return text

    def issue(self, path: YamlPath, message: str, *, field: YamlPath | None = None) -> None:
        """Record a problem at ``path`` (named by ``field`` when that reads better)."""
        name = self.field_name(path if field is None else field)
        self.issues.append(ConfigIssue(self.shown, self.line(path), name, message))

    def schema_issues(self, exc: ValidationError) -> None:
        """Record every error of a pydantic validation of :attr:`data`."""
        for err in exc.errors(include_url=False):
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            self.issue(_strip_tags(tuple(err["loc"]), self.data), message)


def read_config(path: Path) -> ConfigSource:
    """Read and parse ``path``; unreadable files and YAML syntax errors raise at once."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(shown, None, "", f"cannot read: {exc.strerror}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(shown, line, "", f"invalid YAML: {problem}")]) from exc
    lines: dict[YamlPath, int] = {}
    if node is not None:
        _map_lines(node, (), lines)
    return ConfigSource(shown, {} if data is None else data, lines)


def _map_lines(node: yaml.Node, path: YamlPath, out: dict[YamlPath, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            out[child] = key_node.start_mark.line + 1
            _map_lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, (*path, index), out)


def _strip_tags(loc: YamlPath, data: Any) -> YamlPath:
    """Drop the discriminator tags pydantic puts in error locations (``absence`` etc.)."""
    path: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and part == data.get("kind"):
            continue
        path.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return tuple(path)

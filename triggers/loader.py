"""Load and validate ``rules.yaml`` and its templates, reporting file, line and field.

:func:`load_rules` returns a :class:`RuleSet` (validated config, compiled conditions and
a renderer) or raises :class:`ConfigError` listing *every* problem found, each located
as ``config/rules.yaml:12: rules[1] (cart_abandonment).wait: invalid duration 'soon'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from render import Renderer, RenderError, build_expression_environment
from triggers.errors import ConfigError, ConfigIssue
from triggers.rules import Rule, RulesConfig

__all__ = ["RULES_FILE", "TEMPLATES_DIR", "Condition", "RuleSet", "load_rules"]

RULES_FILE = "rules.yaml"
TEMPLATES_DIR = "templates"

Path_ = tuple[str | int, ...]
#: a compiled condition: called with the evaluation context, returns its value
Condition = Callable[..., Any]


@dataclass(frozen=True)
class RuleSet:
    """Everything the engine needs from ``config/``, validated once."""

    config: RulesConfig
    renderer: Renderer
    conditions: dict[str, Condition]
    source: Path

    @property
    def rules(self) -> list[Rule]:
        return [rule for rule in self.config.rules if rule.enabled]

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


def load_rules(config_dir: Path) -> RuleSet:
    path = config_dir / RULES_FILE
    shown = str(path)
    data, lines = _read_yaml(path, shown)
    try:
        config = RulesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_issues(exc, data, lines, shown)) from exc
    renderer = Renderer(config_dir / TEMPLATES_DIR)
    issues: list[ConfigIssue] = []
    conditions: dict[str, Condition] = {}
    for index, rule in enumerate(config.rules):
        issues += _template_issues(renderer, rule, index, lines, shown)
        if rule.condition is not None:
            compiled = _compile_condition(rule.condition, rule.id, index, lines, shown, issues)
            if compiled is not None:
                conditions[rule.id] = compiled
    if issues:
        raise ConfigError(issues)
    return RuleSet(config=config, renderer=renderer, conditions=conditions, source=path)


def _read_yaml(path: Path, shown: str) -> tuple[Any, dict[Path_, int]]:
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
    lines: dict[Path_, int] = {}
    if node is not None:
        _map_lines(node, (), lines)
    return ({} if data is None else data), lines


def _map_lines(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            out[child] = key_node.start_mark.line + 1
            _map_lines(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, (*path, index), out)


def _field_name(path: Path_, data: Any) -> str:
    """``rules[1] (cart_abandonment).wait`` for ``("rules", 1, "wait")``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            if isinstance(data, list) and part < len(data):
                data = data[part]
                if isinstance(data, dict) and isinstance(data.get("id"), str):
                    text += f" ({data['id']})"
                continue
        else:
            text += f".{part}" if text else part
        data = data.get(part) if isinstance(data, dict) else None
    return text


def _validation_issues(
    exc: ValidationError, data: Any, lines: dict[Path_, int], shown: str
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        path = _strip_tags(tuple(err["loc"]), data)
        line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), None)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        issues.append(ConfigIssue(shown, line, _field_name(path, data), message))
    return issues


def _strip_tags(loc: Path_, data: Any) -> Path_:
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


def _template_issues(
    renderer: Renderer, rule: Rule, index: int, lines: dict[Path_, int], shown: str
) -> list[ConfigIssue]:
    path = ("rules", index, "template")
    field = f"rules[{index}] ({rule.id}).template"
    missing = renderer.missing_files(rule.template)
    if missing:
        names = ", ".join(str(m) for m in missing)
        return [ConfigIssue(shown, lines.get(path), field, f"missing template files: {names}")]
    try:
        renderer.check(rule.template)
    except RenderError as exc:
        return [ConfigIssue(shown, lines.get(path), field, str(exc))]
    return []


_EXPRESSIONS = build_expression_environment()


def _compile_condition(
    expression: str,
    rule_id: str,
    index: int,
    lines: dict[Path_, int],
    shown: str,
    issues: list[ConfigIssue],
) -> Condition | None:
    try:
        return _EXPRESSIONS.compile_expression(expression)
    except TemplateSyntaxError as exc:
        path = ("rules", index, "condition")
        field = f"rules[{index}] ({rule_id}).condition"
        issues.append(ConfigIssue(shown, lines.get(path), field, f"invalid expression: {exc}"))
        return None

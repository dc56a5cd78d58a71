"""Load and validate ``rules.yaml`` and its templates, reporting file, line and field.

:func:`load_rules` returns a :class:`RuleSet` (validated config, compiled conditions and
a renderer) or raises :class:`ConfigError` listing *every* problem found, each located
as ``config/rules.yaml:12: rules[1] (cart_abandonment).wait: invalid duration 'soon'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from profiles import KNOWN_EVENT_TYPES, Profile
from render import Renderer, RenderError
from triggers.conditions import (
    CompiledCondition,
    ConditionSyntaxError,
    Probe,
    compile_condition,
    compile_probe,
    expressions,
    profile_fields_used,
)
from triggers.errors import ConfigError, ConfigIssue
from triggers.rules import (
    Condition,
    Rule,
    RulesConfig,
    SequenceRule,
    ThresholdRule,
)
from triggers.source import ConfigSource, YamlPath, read_config

__all__ = ["RULES_FILE", "TEMPLATES_DIR", "RuleSet", "load_rules"]

RULES_FILE = "rules.yaml"
TEMPLATES_DIR = "templates"

Path_ = YamlPath


@dataclass(frozen=True)
class RuleSet:
    """Everything the engine needs from ``config/``, validated and compiled once."""

    config: RulesConfig
    renderer: Renderer
    source: Path
    #: rule conditions by rule id, and sequence step conditions by ``"<rule id>#<step>"``
    conditions: dict[str, CompiledCondition] = field(default_factory=dict)
    #: every segment (``segment:<name>``) and threshold rule (``threshold:<rule id>``),
    #: evaluated in one call
    probe: Probe = field(default=lambda ctx: [])

    @property
    def rules(self) -> list[Rule]:
        return [rule for rule in self.config.rules if rule.enabled]

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def rank(self, rule: Rule) -> tuple[int, int]:
        """Arbitration order: higher priority first, then earlier in the file."""
        return (-rule.priority, self.config.rules.index(rule))


def load_rules(config_dir: Path) -> RuleSet:
    path = config_dir / RULES_FILE
    source = read_config(path)
    try:
        config = RulesConfig.model_validate(source.data)
    except ValidationError as exc:
        for at, message in _validation_issues(exc, source.data):
            source.issue(at, message)
        raise ConfigError(source.issues) from exc
    checker = _Checker(config, Renderer(config_dir / TEMPLATES_DIR), source)
    ruleset = checker.compile(path)
    if checker.issues:
        raise ConfigError(sorted(checker.issues, key=lambda issue: issue.line or 0))
    return ruleset


#: profile fields a condition may name (besides the model's own)
_DERIVED_PROFILE_FIELDS = frozenset({"score"})


class _Checker:
    """Compiles what the models cannot check alone, collecting every issue with its line."""

    def __init__(self, config: RulesConfig, renderer: Renderer, source: ConfigSource) -> None:
        self.config = config
        self.renderer = renderer
        self.source = source
        self.issues: list[ConfigIssue] = source.issues
        self.known_events = set(KNOWN_EVENT_TYPES) | set(config.custom_events)
        self.profile_fields = set(Profile.model_fields) | _DERIVED_PROFILE_FIELDS

    def issue(self, path: Path_, field: str, message: str) -> None:
        line = self.source.line(path)
        self.issues.append(ConfigIssue(self.source.shown, line, field, message))

    def compile(self, source: Path) -> RuleSet:
        probed: dict[str, Condition] = {}
        for name, condition in self.config.segments.items():
            if self.condition(condition, ("segments", name), f"segments.{name}"):
                probed[f"segment:{name}"] = condition
        conditions: dict[str, CompiledCondition] = {}
        for index, rule in enumerate(self.config.rules):
            self.rule(rule, index, conditions)
            if isinstance(rule, ThresholdRule):
                label = f"rules[{index}] ({rule.id}).value"
                if self.condition(rule.expression(), ("rules", index, "value"), label):
                    probed[f"threshold:{rule.id}"] = rule.expression()
        probe = compile_probe(probed) if not self.issues else (lambda ctx: [])
        return RuleSet(self.config, self.renderer, source, conditions, probe)

    def rule(self, rule: Rule, index: int, conditions: dict[str, CompiledCondition]) -> None:
        at: Path_ = ("rules", index)
        name = f"rules[{index}] ({rule.id})"
        self.event_types(rule, at, name)
        if rule.condition is not None:
            compiled = self.condition(rule.condition, (*at, "condition"), f"{name}.condition")
            if compiled:
                conditions[rule.id] = compiled
        if isinstance(rule, SequenceRule):
            for step, spec in enumerate(rule.steps):
                where = (*at, "steps", step)
                self.template(spec.template, (*where, "template"), f"{name}.steps[{step}].template")
                if spec.condition is not None:
                    label = f"{name}.steps[{step}].condition"
                    compiled = self.condition(spec.condition, (*where, "condition"), label)
                    if compiled:
                        conditions[f"{rule.id}#{step}"] = compiled
            return
        self.template(rule.template, (*at, "template"), f"{name}.template")

    def event_types(self, rule: Rule, at: Path_, name: str) -> None:
        for attr in ("events", "start", "cancel", "exit"):
            for position, event_type in enumerate(getattr(rule, attr, None) or []):
                if event_type not in self.known_events:
                    self.issue(
                        (*at, attr, position),
                        f"{name}.{attr}",
                        f"unknown event type {event_type!r}: not a known type and not "
                        "declared under custom_events",
                    )

    def template(self, template: str, path: Path_, field: str) -> None:
        missing = self.renderer.missing_files(template)
        if missing:
            names = ", ".join(str(m) for m in missing)
            self.issue(path, field, f"missing template files: {names}")
            return
        try:
            self.renderer.check(template)
        except RenderError as exc:
            self.issue(path, field, str(exc))

    def condition(self, condition: Condition, path: Path_, field: str) -> CompiledCondition | None:
        try:
            compiled = compile_condition(condition)
        except ConditionSyntaxError as exc:
            self.issue(path, field, str(exc))
            return None
        for expression in expressions(condition):
            for unknown in sorted(profile_fields_used(expression) - self.profile_fields):
                self.issue(path, field, f"unknown profile field {unknown!r} in {expression!r}")
        return compiled


def _validation_issues(exc: ValidationError, data: Any) -> list[tuple[YamlPath, str]]:
    issues = []
    for err in exc.errors(include_url=False):
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        issues.append((_strip_tags(tuple(err["loc"]), data), message))
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

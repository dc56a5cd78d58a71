"""Load and validate ``rules.yaml`` and its templates, reporting file, line and field.

:func:`load_rules` returns a :class:`RuleSet` (validated config, compiled conditions and
a renderer) or raises :class:`ConfigError` listing *every* problem found, each located
as ``config/rules.yaml:12: rules[1] (cart_abandonment).wait: invalid duration 'soon'``:
the schema's (pydantic) and, beside them, the semantic ones (:mod:`triggers.checks`).
The rule set is built only from a config without a single issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import ValidationError

from profiles import LinkSigner, UnsubscribeSigner, development_signer
from profiles.predictions import Model, ModelError
from render import Renderer
from triggers.checks import check_semantics
from triggers.conditions import CompiledCondition, Probe, compile_condition, compile_probe
from triggers.errors import ConfigError, ConfigIssue
from triggers.fields import clusters_named, reads_predictions
from triggers.rules import (
    AbsenceRule,
    Condition,
    DateRule,
    InactivityRule,
    OnEventRule,
    Rule,
    RulesConfig,
    SegmentEntryRule,
    Sender,
    SequenceRule,
    ThresholdRule,
    Tracking,
)
from triggers.source import ConfigSource, YamlPath, read_config

__all__ = [
    "RULES_FILE",
    "TEMPLATES_DIR",
    "RuleSet",
    "load_rules",
    "model_dir_named",
    "served_at",
]

RULES_FILE = "rules.yaml"
TEMPLATES_DIR = "templates"


@dataclass(frozen=True)
class RuleSet:
    """Everything the engine needs from ``config/``, validated and compiled once."""

    config: RulesConfig
    renderer: Renderer
    source: Path
    #: rule conditions by rule id, sequence step conditions by ``"<rule id>#<step>"``
    conditions: dict[str, CompiledCondition] = field(default_factory=dict)
    #: every segment (``segment:<name>``), threshold rule (``threshold:<rule id>``) and
    #: absence ``cancel_when`` condition (``cancel:<rule id>@<name>``), evaluated in one call
    probe: Probe = field(default=lambda ctx: [])
    #: the prediction model the engine scores users with (``None``: no predictions)
    model: Model | None = None
    #: the directory it was loaded from
    model_dir: Path | None = None
    #: signs the unsubscribe link of every send; the default signs with the public
    #: development key (tests, ``simulate``), the worker's with its configured keys
    unsubscribe: UnsubscribeSigner = field(default_factory=development_signer)
    #: how long a profile without events is kept (``None``: for good)
    retention: timedelta | None = None

    @cached_property
    def links(self) -> LinkSigner:
        """Signs the click links and open pixels of every send, with keys derived from the
        unsubscribe signer's (so the development key's when it has that one)."""
        return LinkSigner.derived_from(self.unsubscribe)

    @cached_property
    def model_version(self) -> str | None:
        """The loaded model's version (``None`` without a model)."""
        return None if self.model is None else self.model.version

    @cached_property
    def samples_arms(self) -> bool:
        """Whether a rule or step assigns variants by ``strategy: thompson``: then the
        engine reads the experiment counters now and then (``Lookups.counters``)."""
        for rule in self.config.rules:
            for part in [rule, *getattr(rule, "steps", ())]:
                if getattr(part, "strategy", "fixed") == "thompson":
                    return True
        return False

    @cached_property
    def _reading_scores(self) -> dict[str, Condition]:
        """The probe's conditions that read ``profile.predicted``, by probe key."""
        probed = _probed(self.config)
        return {key: c for key, c in probed.items() if reads_predictions([c])}

    @cached_property
    def reads_predictions(self) -> bool:
        """Whether a segment, threshold or ``cancel_when`` condition reads
        ``profile.predicted``: then new scores are followed by a re-evaluation, and
        scores are refreshed as time passes (see :mod:`triggers.predict`)."""
        return bool(self._reading_scores)

    @cached_property
    def scored_thresholds(self) -> frozenset[str]:
        """The threshold rules whose value reads the model's scores: a user's first
        scores are their first value (no crossing from "not scored yet")."""
        return self._scored("threshold:")

    @cached_property
    def scored_segments(self) -> frozenset[str]:
        """The segments whose condition reads the model's scores."""
        return self._scored("segment:")

    @cached_property
    def score_probe(self) -> Probe:
        """The segments and thresholds that read the model's scores, in one call: after
        scoring, a user whose result here did not change needs no full re-evaluation."""
        reading = self._reading_scores
        return compile_probe({k: c for k, c in reading.items() if not k.startswith("cancel:")})

    def _scored(self, prefix: str) -> frozenset[str]:
        return frozenset(
            k.removeprefix(prefix) for k in self._reading_scores if k.startswith(prefix)
        )

    def reads_scores(self, rule: Rule) -> bool:
        """Whether ``rule`` is entered through the model's scores (a threshold on them, or
        the entry into a segment reading them)."""
        if isinstance(rule, SegmentEntryRule):
            return rule.segment in self.scored_segments
        return rule.id in self.scored_thresholds

    @cached_property
    def rules(self) -> list[Rule]:
        """The enabled rules, in file order."""
        return [rule for rule in self.config.rules if rule.enabled]

    @cached_property
    def _by_id(self) -> dict[str, Rule]:
        return {rule.id: rule for rule in self.rules}

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    @cached_property
    def _by_subscription(self) -> dict[str, list[Rule]]:
        found: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.subscription is not None:
                found.setdefault(rule.subscription, []).append(rule)
        return found

    def subscribed(self, name: str) -> list[Rule]:
        """The rules whose mail belongs to subscription ``name``, in file order."""
        return self._by_subscription.get(name, [])

    @cached_property
    def watching(self) -> list[SegmentEntryRule | ThresholdRule]:
        """The segment_entry and threshold rules, in file order."""
        return [r for r in self.rules if isinstance(r, SegmentEntryRule | ThresholdRule)]

    @cached_property
    def thresholds(self) -> list[str]:
        """The ids of the threshold rules, sorted."""
        return sorted(r.id for r in self.rules if isinstance(r, ThresholdRule))

    @cached_property
    def date_fields(self) -> tuple[str, ...]:
        """The profile dates that date rules watch."""
        return tuple(sorted({r.field for r in self.rules if isinstance(r, DateRule)}))

    def affected_by(self, event_type: str) -> list[Rule]:
        """The rules an event of ``event_type`` can change, in file order.

        Date, inactivity, segment_entry and threshold rules can change with any event;
        the others only with the event types they name.
        """
        found = self._affected.get(event_type)
        if found is None:
            found = self._affected[event_type] = [
                rule for rule in self.rules if _names(rule, event_type)
            ]
        return found

    @cached_property
    def _affected(self) -> dict[str, list[Rule]]:
        return {}

    def unsubscribe_url(self, user_id: str, category: str | None, now: datetime) -> str:
        """``sender.unsubscribe_url`` with ``{token}`` replaced by a token signed at ``now``
        for ``user_id`` leaving ``category`` (``None``: every marketing mail)."""
        token = self.unsubscribe.sign(user_id, category, now)
        return self.config.sender.unsubscribe_url.replace("{token}", quote(token, safe=""))

    def rank(self, rule: Rule) -> tuple[int, int]:
        """Arbitration order: higher priority first, then earlier in the file."""
        return (-rule.priority, self.config.rules.index(rule))


def _names(rule: Rule, event_type: str) -> bool:
    """Whether ``event_type`` can change what ``rule`` does."""
    if isinstance(rule, OnEventRule):
        return event_type in rule.events
    if isinstance(rule, AbsenceRule):
        return event_type in rule.start or event_type in rule.cancel
    if isinstance(rule, SequenceRule):
        return event_type in rule.start or event_type in rule.exit
    if isinstance(rule, InactivityRule):
        return rule.events is None or event_type in rule.events
    return True  # date, segment_entry, threshold


def load_rules(
    config_dir: Path,
    *,
    model_dir: Path | None = None,
    with_model: bool = True,
    unsubscribe: UnsubscribeSigner | None = None,
    retention: timedelta | None = None,
    public_url: str | None = None,
) -> RuleSet:
    """The rule set of ``config_dir``, with the prediction model ``predictions.model``
    names (``model_dir`` overrides it); every problem, the model's included, is one
    :class:`ConfigError`. ``with_model=False`` leaves the model out (training reads only
    the scoring settings, and must work while the configured model is missing).
    ``unsubscribe`` signs the sends' unsubscribe links (default: the development key's
    signer, whose links start with ``dev.`` and unsubscribe nobody in production).
    ``retention``: how long profiles without events are kept (a setting, not config).
    ``public_url``: where ``nudge collector`` is reached; when given, the unsubscribe link,
    click links and open pixel of every mail lead there (see :func:`served_at`)."""
    path = config_dir / RULES_FILE
    source = read_config(path)
    config = _validate(source)
    if config is not None and public_url is not None:
        config = served_at(config, public_url)
    renderer = _renderer(config_dir / TEMPLATES_DIR, config)
    check_semantics(source, renderer)
    named = (model_dir or _model_dir(source.data, config_dir)) if with_model else None
    model = None if named is None else _load_model(source, named, overridden=model_dir is not None)
    if config is not None and model is not None:
        _check_clusters(source, config, model)
    if config is None or source.issues:
        unique = list(dict.fromkeys(source.issues))
        raise ConfigError(sorted(unique, key=lambda issue: _order(source, issue)))
    return RuleSet(
        config,
        renderer,
        path,
        _conditions(config),
        compile_probe(_probed(config)),
        model=model,
        model_dir=named if model is not None else None,
        unsubscribe=unsubscribe or development_signer(),
        retention=retention,
    )


def served_at(config: RulesConfig, public_url: str) -> RulesConfig:
    """``config`` with its links served by the collector at ``public_url``: unsubscribe
    at ``/u/{token}``, clicks at ``/c/{token}``, the open pixel at ``/o/{token}.gif``
    (these replace ``sender.unsubscribe_url`` and ``tracking:`` of ``rules.yaml``)."""
    base = public_url.rstrip("/")
    sender = Sender.model_validate(
        {**config.sender.model_dump(), "unsubscribe_url": f"{base}/u/{{token}}"}
    )
    tracking = Tracking(click_url=f"{base}/c/{{token}}", open_url=f"{base}/o/{{token}}.gif")
    return config.model_copy(update={"sender": sender, "tracking": tracking})


def _renderer(template_dir: Path, config: RulesConfig | None) -> Renderer:
    """The renderer, formatting in the brand's locale and currency and the default time
    zone when a send names none (the defaults while the config is invalid: it only
    checks the templates then)."""
    if config is None:
        return Renderer(template_dir)
    brand = config.brand
    return Renderer(
        template_dir,
        locale=brand.locale,
        currency=brand.currency,
        timezone=config.guards.default_timezone,
    )


def _order(source: ConfigSource, issue: ConfigIssue) -> tuple[str, int]:
    """Issues in ``rules.yaml`` (and those of no line) by line, then those located in
    other files (a template's ``template.yaml``), by file and line."""
    elsewhere = issue.file != source.shown and issue.line is not None
    return (issue.file if elsewhere else "", issue.line or 0)


def model_dir_named(config_dir: Path) -> Path | None:
    """The model directory ``rules.yaml`` in ``config_dir`` names, read without checking
    the rest (``None`` when it names none, or cannot be read)."""
    try:
        data = yaml.safe_load((config_dir / RULES_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return _model_dir(data, config_dir)


def _model_dir(data: Any, config_dir: Path) -> Path | None:
    predictions = data.get("predictions") if isinstance(data, dict) else None
    model = predictions.get("model") if isinstance(predictions, dict) else None
    return config_dir / model if isinstance(model, str) and model else None


def _load_model(source: ConfigSource, directory: Path, *, overridden: bool) -> Model | None:
    """The model in ``directory``, or ``None`` with the reason added to ``source``."""
    # imported here: the model brings numpy and scikit-learn, needed only with a model
    from profiles.predictions.bundle import load_model

    try:
        model: Model = load_model(directory)  # refuses a model for other features
    except ModelError as exc:
        message = f"cannot use the model directory {str(directory)!r}: {exc}"
        if overridden:
            source.issues.append(ConfigIssue(str(directory), None, "model", message))
        else:
            source.issue(("predictions", "model"), message)
        return None
    return model


def _check_clusters(source: ConfigSource, config: RulesConfig, model: Model) -> None:
    """A condition comparing ``profile.predicted.cluster`` with a name the model does not
    give would silently never hold (cluster names come from each model's centres)."""
    named: list[tuple[YamlPath, Condition]] = [
        (("segments", name), condition) for name, condition in config.segments.items()
    ]
    for index, rule in enumerate(config.rules):
        if rule.condition is not None:
            named.append((("rules", index, "condition"), rule.condition))
        if isinstance(rule, ThresholdRule):
            named.append((("rules", index, "value"), rule.value))
    known = set(model.clusters)
    for path, condition in named:
        for name in clusters_named(condition):
            if name not in known:
                clusters = ", ".join(repr(c) for c in model.clusters)
                source.issue(
                    path,
                    f"the model {model.version} has no cluster {name!r} (its clusters: "
                    f"{clusters}); cluster names change when a model is retrained",
                )


def _validate(source: ConfigSource) -> RulesConfig | None:
    """The config model, or ``None`` with the schema's issues added to ``source``."""
    try:
        return RulesConfig.model_validate(source.data)
    except ValidationError as exc:
        source.schema_issues(exc)
        return None


def _conditions(config: RulesConfig) -> dict[str, CompiledCondition]:
    """Every condition the engine evaluates per rule, compiled (checked valid already)."""
    compiled: dict[str, CompiledCondition] = {}
    for rule in config.rules:
        if rule.condition is not None:
            compiled[rule.id] = compile_condition(rule.condition)
        if isinstance(rule, SequenceRule):
            for step, spec in enumerate(rule.steps):
                if spec.condition is not None:
                    compiled[f"{rule.id}#{step}"] = compile_condition(spec.condition)
    return compiled


def _probed(config: RulesConfig) -> dict[str, Condition]:
    """The profile conditions evaluated after every event, in one probe."""
    probed: dict[str, Condition] = {
        f"segment:{name}": condition for name, condition in config.segments.items()
    }
    for rule in config.rules:
        if isinstance(rule, ThresholdRule):
            probed[f"threshold:{rule.id}"] = rule.expression()
        if isinstance(rule, AbsenceRule):
            for name, condition in rule.cancel_when.items():
                probed[f"cancel:{rule.id}@{name}"] = condition
    return probed

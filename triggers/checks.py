"""What ``rules.yaml`` can be wrong about beyond its schema, checked on the raw data.

The checks run on the document as read, not on the validated models, so a schema error
anywhere (a bad duration, an unknown field) hides none of them: unknown event types,
missing or broken templates (their locale variants, ``template.yaml`` and the shared
layouts and partials included), condition syntax, fields that do not exist (in
conditions, templates and ``requires``, see :mod:`triggers.fields`), duplicate rule ids,
unknown segments and subscriptions, ``send_at`` / ``max_delay`` / ``subscription`` where
they cannot apply, and marketing mail without the brand's postal address.
Each looks only at values of the right shape and leaves malformed ones to the schema
check, so no problem is reported twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from profiles import KNOWN_EVENT_TYPES
from profiles.events import EVENT_TYPE_PATTERN, SUBSCRIPTION_PATTERN
from render import Renderer, RenderError, TemplateSpec
from triggers.conditions import (
    ConditionSyntaxError,
    compile_condition,
    expression_tree,
    expressions,
)
from triggers.errors import ConfigError, ConfigIssue
from triggers.fields import Shape, field_roots, template_roots, unknown_fields
from triggers.rules import Condition, Rule
from triggers.source import ConfigSource, YamlPath, read_config

__all__ = ["check_semantics"]

_CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)

#: rule kind -> its model (to skip fields the schema check reports as unknown)
_KINDS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["kind"].annotation)[0]: model
    for model in get_args(get_args(Rule)[0])
}

#: the event types that trigger a rule of each kind (the others: not known statically)
_TRIGGER_EVENTS = {
    "on_event": "events",
    "absence": "start",
    "sequence": "start",
    "inactivity": "events",
}

_EVENT_TYPE_FIELDS = ("events", "start", "cancel", "exit")

#: the names a template's ``requires`` may start with (every render context has them)
REQUIRABLE = ("profile", "user", "cart", "event", "brand", "rule", "segments", "recently_viewed")

#: the shared files that are templates (a layout folder may hold other files)
_SHARED_SUFFIXES = (".html", ".txt")


def check_semantics(source: ConfigSource, renderer: Renderer) -> None:
    """Add every semantic problem of ``source`` to ``source.issues``."""
    data = source.data if isinstance(source.data, dict) else {}
    _Checker(source, renderer, data).run()


class _RawRule:
    """One entry of ``rules:`` as written, with the fields its kind may have."""

    def __init__(self, index: int, data: dict[str, Any]) -> None:
        self.at: YamlPath = ("rules", index)
        self.data = data
        self.model = _KINDS.get(data["kind"]) if isinstance(data.get("kind"), str) else None

    def get(self, name: str) -> Any:
        """The raw value of ``name``; ``None`` when absent or not a field of this kind
        (the schema check reports those)."""
        if self.model is not None and name not in self.model.model_fields:
            return None
        return self.data.get(name)

    def trigger_events(self) -> list[str] | None:
        """The event types whose event the rule's context holds (``None``: unknown)."""
        kind = self.data.get("kind")
        attr = _TRIGGER_EVENTS.get(kind) if isinstance(kind, str) else None
        values = self.get(attr) if attr else None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None
        return values


class _Checker:
    def __init__(self, source: ConfigSource, renderer: Renderer, data: dict[str, Any]) -> None:
        self.source = source
        self.renderer = renderer
        self.data = data
        custom = data.get("custom_events")
        declared = [e for e in custom if isinstance(e, str)] if isinstance(custom, list) else []
        self.known_events = set(KNOWN_EVENT_TYPES) | set(declared)
        segments = data.get("segments", {})
        #: ``None`` when malformed (the schema check reports it)
        self.segments: Mapping[Any, Any] | None = segments if isinstance(segments, dict) else None
        subscriptions = data.get("subscriptions", [])
        #: ``None`` when malformed (the schema check reports it)
        self.subscriptions: list[Any] | None = (
            subscriptions if isinstance(subscriptions, list) else None
        )

    def run(self) -> None:
        free = field_roots(None)
        for name, condition in (self.segments or {}).items():
            self.condition(("segments", str(name)), condition, free)
        self.shared()
        entries = self.data.get("rules")
        if not isinstance(entries, list):
            return
        rules = [_RawRule(i, entry) for i, entry in enumerate(entries) if isinstance(entry, dict)]
        for rule in rules:
            self.rule(rule)
        self.unique_ids(rules)
        self.experiment_ids(rules)
        self.postal_address(rules)

    def rule(self, rule: _RawRule) -> None:
        self.event_types(rule)
        self.segment(rule)
        self.send_at(rule)
        self.subscription(rule)
        events = rule.trigger_events()
        roots = field_roots(events)
        self.conditions(rule, roots)
        mail = template_roots(events)
        self.template((*rule.at, "template"), rule.get("template"), mail)
        steps = rule.get("steps")
        for index, step in enumerate(steps if isinstance(steps, list) else ()):
            if isinstance(step, dict):
                at = (*rule.at, "steps", index)
                self.template((*at, "template"), step.get("template"), mail)
                self.condition((*at, "condition"), step.get("condition"), roots)
        self.experiments(rule, roots)

    def experiments(self, rule: _RawRule, roots: Mapping[str, Shape]) -> None:
        """Variant templates exist and compile; transactional mail is never held out."""
        steps = rule.get("steps")
        places: list[tuple[YamlPath, dict[str, Any]]] = [(rule.at, rule.data)]
        for index, step in enumerate(steps if isinstance(steps, list) else ()):
            if isinstance(step, dict):
                places.append(((*rule.at, "steps", index), step))
        transactional = rule.data.get("category") == "transactional"
        for at, data in places:
            variants = data.get("variants")
            for index, variant in enumerate(variants if isinstance(variants, list) else ()):
                if isinstance(variant, dict):
                    where = (*at, "variants", index, "template")
                    self.template(where, variant.get("template"), roots)
                    self.subject((*at, "variants", index, "subject"), variant.get("subject"))
            holdout = data.get("holdout")
            if transactional and isinstance(holdout, int | float) and holdout > 0:
                self.source.issue(
                    (*at, "holdout"),
                    "transactional mail cannot be held out: users are owed it",
                )

    def subject(self, path: YamlPath, source: Any) -> None:
        """A variant's subject line compiles (else every send of the arm would fail)."""
        if not isinstance(source, str):
            return
        try:
            self.renderer.check_subject(source)
        except RenderError as exc:
            self.source.issue(path, str(exc))

    def experiment_ids(self, rules: list[_RawRule]) -> None:
        """Each ``experiment:`` id names one experiment: not another's, not another rule's
        (every rule counts its sends under its own id), or their counts would merge."""
        owners = {r.data.get("id"): r.at for r in rules if isinstance(r.data.get("id"), str)}
        named: dict[str, YamlPath] = {}
        for rule in rules:
            steps = rule.get("steps")
            places = [(rule.at, rule.data)] + [
                ((*rule.at, "steps", i), step)
                for i, step in enumerate(steps if isinstance(steps, list) else ())
                if isinstance(step, dict)
            ]
            for at, data in places:
                name = data.get("experiment")
                if not isinstance(name, str):
                    continue
                clash = named.get(name) or (
                    owners.get(name) if owners.get(name) != rule.at else None
                )
                if clash is not None:
                    self.source.issue(
                        (*at, "experiment"),
                        f"experiment id {name!r} is already used (a rule's or another "
                        "experiment's): their counts would merge; give each its own",
                    )
                named[name] = at

    def postal_address(self, rules: list[_RawRule]) -> None:
        """Commercial mail must carry the sender's postal address (CAN-SPAM): a config
        with an enabled marketing rule needs ``brand.address``."""
        brand = self.data.get("brand", {})
        address = brand.get("address") if isinstance(brand, dict) else ""
        if not isinstance(brand, dict) or (address is not None and not isinstance(address, str)):
            return  # malformed (the schema check reports it)
        if address and address.strip():
            return
        marketing = [
            str(rule.data.get("id"))
            for rule in rules
            if rule.data.get("category", "marketing") == "marketing"
            and rule.data.get("enabled", True) is not False
        ]
        if marketing:
            shown = ", ".join(marketing[:3]) + (", ..." if len(marketing) > 3 else "")
            self.source.issue(
                ("brand", "address"),
                "marketing mail must show the sender's postal address (CAN-SPAM): give "
                f"the shop's address here (marketing rules: {shown})",
            )

    def shared(self) -> None:
        """The shared layouts and partials: syntax, and fields that do not exist."""
        roots = template_roots(None)
        renderer = self.renderer
        for path in renderer.shared_files():
            if not path.endswith(_SHARED_SUFFIXES):
                continue
            shown = str(renderer.template_dir / path)
            try:
                tree = renderer.parse(path)
            except RenderError as exc:  # the message names the file and line
                where = str(renderer.template_dir)
                self.source.issues.append(ConfigIssue(where, None, "", str(exc)))
                continue
            for unknown in unknown_fields(tree, roots):
                self.source.issues.append(ConfigIssue(shown, unknown.line, "", str(unknown)))

    def conditions(self, rule: _RawRule, roots: Mapping[str, Shape]) -> None:
        """The rule's condition, threshold value and ``cancel_when`` conditions."""
        self.condition((*rule.at, "condition"), rule.get("condition"), roots)
        self.condition((*rule.at, "value"), rule.get("value"), roots)
        cancel_when = rule.get("cancel_when")
        # evaluated on the profile after every event, with no event of their own
        on_profile = {**roots, "event": Shape({})}
        for name, condition in cancel_when.items() if isinstance(cancel_when, dict) else ():
            self.condition((*rule.at, "cancel_when", str(name)), condition, on_profile)

    def event_types(self, rule: _RawRule) -> None:
        for attr in _EVENT_TYPE_FIELDS:
            values = rule.get(attr)
            for position, event_type in enumerate(values if isinstance(values, list) else ()):
                malformed = not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(
                    event_type
                )
                if malformed or event_type in self.known_events:
                    continue
                self.source.issue(
                    (*rule.at, attr, position),
                    f"unknown event type {event_type!r}: not a known type and not "
                    "declared under custom_events",
                    field=(*rule.at, attr),
                )

    def segment(self, rule: _RawRule) -> None:
        segment = rule.get("segment")
        if self.segments is not None and isinstance(segment, str) and segment not in self.segments:
            known = ", ".join(sorted(str(name) for name in self.segments)) or "none defined"
            rule_id = rule.data.get("id")
            self.source.issue(
                (*rule.at, "segment"),
                f"rule {rule_id!r} names unknown segment {segment!r} ({known})",
            )

    def send_at(self, rule: _RawRule) -> None:
        """``send_at`` holds back marketing mail only; ``max_delay`` needs a ``send_at``
        (on the step or on its sequence)."""
        transactional = rule.data.get("category") == "transactional"
        inherited = rule.get("send_at") is not None
        steps = rule.get("steps")
        places: list[tuple[YamlPath, dict[str, Any]]] = [(rule.at, rule.data)]
        for index, step in enumerate(steps if isinstance(steps, list) else ()):
            if isinstance(step, dict):
                places.append(((*rule.at, "steps", index), step))
        for at, data in places:
            if transactional and data.get("send_at") is not None:
                self.source.issue(
                    (*at, "send_at"),
                    "send_at applies to marketing mail only; this rule is transactional",
                )
            if data.get("max_delay") is not None and data.get("send_at") is None and not inherited:
                self.source.issue(
                    (*at, "max_delay"), "max_delay without send_at: nothing waits for it"
                )

    def subscription(self, rule: _RawRule) -> None:
        """``subscription`` names one of ``subscriptions:``, on marketing mail only."""
        name = rule.get("subscription")
        if not isinstance(name, str) or not SUBSCRIPTION_PATTERN.fullmatch(name):
            return  # absent, or malformed (the schema check reports it)
        at = (*rule.at, "subscription")
        if rule.data.get("category") == "transactional":
            self.source.issue(
                at, "subscription applies to marketing mail only; this rule is transactional"
            )
        if self.subscriptions is not None and name not in self.subscriptions:
            known = ", ".join(map(str, self.subscriptions)) or "none declared under subscriptions"
            rule_id = rule.data.get("id")
            self.source.issue(at, f"rule {rule_id!r} names unknown subscription {name!r} ({known})")

    def unique_ids(self, rules: list[_RawRule]) -> None:
        seen: set[str] = set()
        for rule in rules:
            rule_id = rule.data.get("id")
            if not isinstance(rule_id, str):
                continue
            if rule_id in seen:
                self.source.issue((*rule.at, "id"), f"duplicate rule id {rule_id!r}")
            seen.add(rule_id)

    def condition(self, path: YamlPath, raw: Any, roots: Mapping[str, Shape]) -> None:
        if raw is None:
            return
        try:
            condition = _CONDITION.validate_python(raw)
        except ValidationError:
            return  # the schema check reports it
        try:
            compile_condition(condition)
        except ConditionSyntaxError as exc:
            self.source.issue(path, str(exc))
            return
        for expression in expressions(condition):
            for unknown in unknown_fields(expression_tree(expression), roots):
                self.source.issue(path, f"{unknown} in {expression!r}")

    def template(self, path: YamlPath, name: Any, roots: Mapping[str, Shape]) -> None:
        if not isinstance(name, str) or not name:
            return
        if name.startswith("_"):
            self.source.issue(
                path, f"{name!r}: names starting with '_' are shared layouts and partials"
            )
            return
        missing = self.renderer.missing_files(name)
        if missing:
            self.source.issue(path, f"missing template files: {', '.join(map(str, missing))}")
            return
        for where, problem in self.renderer.problems(name):
            self.source.issue(path, f"{where}: {problem}")
        spec_valid = self.requires(name, roots)
        try:
            trees = self.renderer.parsed(name)
            if spec_valid:
                self.renderer.check(name)
        except RenderError as exc:
            self.source.issue(path, str(exc))
            return
        for filename, tree in trees.items():
            for unknown in unknown_fields(tree, roots):
                self.source.issue(path, f"{name}/{filename}:{unknown.line}: {unknown}")

    def requires(self, name: str, roots: Mapping[str, Shape]) -> bool:
        """Check ``<name>/template.yaml``, reporting in that file; ``False`` when it
        cannot be read as a spec."""
        spec_path = self.renderer.spec_path(name)
        if not spec_path.is_file():
            return True
        try:
            spec_source = read_config(spec_path)
        except ConfigError as exc:
            self.source.issues.extend(exc.issues)
            return False
        try:
            spec = TemplateSpec.model_validate(spec_source.data)
        except ValidationError as exc:
            spec_source.schema_issues(exc)
            self.source.issues.extend(spec_source.issues)
            return False
        for index, field in enumerate(spec.requires):
            at = ("requires", index)
            if field.split(".", 1)[0] not in REQUIRABLE:
                known = ", ".join(REQUIRABLE)
                spec_source.issue(at, f"{field!r} is not in the render context ({known})")
                continue
            for unknown in unknown_fields(expression_tree(field), roots):
                spec_source.issue(at, str(unknown))
        self.source.issues.extend(spec_source.issues)
        return True

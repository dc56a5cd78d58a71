"""``nudge preview TEMPLATE``: a template rendered for one profile, as a send would be.

The mail is composed by :func:`triggers.compose.compose`, the function the worker's
sends go through, with the rule that uses the template (its category decides the
footer, its subscription the unsubscribe link): the preview differs from a send only in
the time (now) and what the recommendations read. The profile comes from Redis
(``--user``) or from a JSON file: a profile as ``Profile`` dumps it, or the document
``nudge export`` writes. Products come from the shop's statistics in Redis with
``--user``, from the config directory's ``catalog.jsonl`` otherwise (no popularity:
recommendations then show what the catalog alone allows).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from profiles import (
    Event,
    InMemoryCatalog,
    InMemoryStatistics,
    Lookups,
    Product,
    Profile,
    ProfileError,
    parse_event,
)
from render import RenderedEmail
from streams.errors import StreamsError
from streams.settings import Settings
from triggers import RuleSet
from triggers.compose import Composed, compose
from triggers.firing import Firing
from triggers.picks import seed_products
from triggers.rules import OnEventRule, Rule, SequenceRule

__all__ = [
    "PreviewError",
    "Target",
    "catalog_lookups",
    "compose_preview",
    "read_event",
    "read_profile",
    "redis_inputs",
    "target",
    "write_preview",
]

#: the id of the stand-in rule of a template no rule uses yet
STAND_IN_RULE = "preview"


class PreviewError(StreamsError):
    """The preview cannot be made; the message says why."""


@dataclass(frozen=True)
class Target:
    """What to render: the rule (and step) that sends the template, and a variant's
    template and subject when one was asked for."""

    rule: Rule
    step: int | None
    template: str
    subject: str | None = None


def read_profile(path: Path) -> Profile:
    """The profile in ``path``: a dumped profile, or a ``nudge export`` document."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PreviewError(f"{path}: cannot read a JSON document: {exc}") from exc
    if isinstance(data, dict) and "format" in data and "profile" in data:
        data = data["profile"]  # a `nudge export` document
        if data is None:
            raise PreviewError(f"{path}: the export holds no profile")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise PreviewError(f"{path}: not a profile: {exc}") from exc


def read_event(path: Path) -> dict[str, Any]:
    """The event in ``path`` (as published), as a send's context holds it."""
    try:
        event = parse_event(path.read_bytes())
    except OSError as exc:
        raise PreviewError(f"{path}: {exc.strerror}") from exc
    except ProfileError as exc:
        raise PreviewError(f"{path}: not an event: {exc}") from exc
    return _payload(event)


def _payload(event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = event.model_dump(mode="json")
    return payload


def target(rules: RuleSet, template: str, variant: str | None = None) -> Target:
    """The first rule (or sequence step) that sends ``template``; with ``variant``, the
    first such rule or step with a variant of that name (its template and subject)."""
    if variant is not None:
        for rule, step, owner in _senders(rules, template):
            for candidate in _attr(owner, "variants") or ():
                if _attr(candidate, "name") == variant:
                    other = _attr(candidate, "template") or template
                    return Target(rule, step, other, _attr(candidate, "subject"))
        raise PreviewError(f"no rule sending template {template!r} has a variant {variant!r}")
    for rule, step, _ in _senders(rules, template):
        return Target(rule, step, template)
    # a template no rule sends yet: previewed as marketing mail of a stand-in rule
    stand_in = OnEventRule(id=STAND_IN_RULE, kind="on_event", events=["preview"], template=template)
    return Target(stand_in, None, template)


def _senders(rules: RuleSet, template: str) -> Iterator[tuple[Rule, int | None, Any]]:
    """``(rule, step, the rule or step itself)`` for every use of ``template``."""
    for rule in rules.config.rules:
        if isinstance(rule, SequenceRule):
            for step, spec in enumerate(rule.steps):
                if spec.template == template:
                    yield rule, step, spec
        elif rule.template == template:
            yield rule, None, rule


def _attr(value: Any, name: str) -> Any:
    """``name`` of a model or a mapping (``None`` when absent)."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _wanted_products(profile: Profile, event: dict[str, Any]) -> set[str]:
    """The products a render of ``profile`` for ``event`` may look up."""
    wanted = set(seed_products(profile))
    properties = event.get("properties") or {}
    if isinstance(properties.get("product_id"), str):
        wanted.add(properties["product_id"])
    for item in properties.get("items") or ():
        if isinstance(item, dict) and isinstance(item.get("product_id"), str):
            wanted.add(item["product_id"])
    return wanted


async def catalog_lookups(
    rules: RuleSet, catalog: list[Product], profile: Profile, event: dict[str, Any]
) -> Lookups:
    """What renders read, from a catalog file alone (no shop statistics)."""
    statistics = InMemoryStatistics(
        InMemoryCatalog(catalog), config=rules.config.recommendations, clock_ms=lambda: 0
    )
    return await statistics.lookups(_wanted_products(profile, event))


async def redis_inputs(
    settings: Settings, rules: RuleSet, user_id: str, event: dict[str, Any]
) -> tuple[Profile, Lookups]:
    """The stored profile of ``user_id`` and what its renders read, from Redis."""
    from profiles import Keys, RedisProfileStore, RedisStatistics
    from streams.redis_client import redis_client

    client = redis_client(settings)
    keys = Keys(settings.redis_prefix)
    try:
        store = RedisProfileStore(
            client, keys=keys, cluster=settings.redis_cluster, pseudonyms=settings.pseudonyms
        )
        profile = (await store.snapshot(user_id)).profile
        if profile is None:
            raise PreviewError(f"no profile for user {user_id!r}")
        statistics = RedisStatistics(client, keys=keys, config=rules.config.recommendations)
        lookups = await statistics.lookups(_wanted_products(profile, event))
    except ProfileError as exc:
        raise PreviewError(str(exc)) from exc
    finally:
        await client.aclose()
    return profile, lookups


def compose_preview(
    rules: RuleSet,
    profile: Profile,
    aim: Target,
    event: dict[str, Any],
    lookups: Lookups,
    now: datetime,
) -> Composed:
    """The mail a send of ``aim`` to ``profile`` would carry at ``now`` (raises
    :class:`render.MissingData` and :class:`render.RenderError` as a send does)."""
    firing = Firing(aim.rule, profile.user_id, event, step=aim.step)
    return compose(rules, profile, firing, now, lookups, template=aim.template, subject=aim.subject)


def write_preview(directory: Path, email: RenderedEmail) -> list[Path]:
    """``preview.html`` and ``preview.txt`` (subject and preheader first) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    html, text = directory / "preview.html", directory / "preview.txt"
    html.write_text(email.html, encoding="utf-8")
    header = f"Subject: {email.subject}\nPreheader: {email.preheader}\n\n"
    text.write_text(header + email.text, encoding="utf-8")
    return [html, text]

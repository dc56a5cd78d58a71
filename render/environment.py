"""The one Jinja2 environment nudge renders with, built in one place.

Sandboxed (templates are config, but config is still input), autoescaping for ``.html``
files, and strict about undefined names so a typo fails loudly instead of mailing a
blank; ``{{ user.first_name | default("there") }}`` is the way to say "optional".
Both environments have the reader-aware filters of :mod:`render.filters` (``money``,
``number``, ``date``, ``datetime``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChainableUndefined,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from render.filters import build_filters

__all__ = ["build_environment", "build_expression_environment"]


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, remembering which attributes of which types are safe.

    The sandbox decides from the object's type and the attribute's name alone
    (``is_internal_attribute``, ``modifies_known_mutable``), so the answer for a
    ``(type, name)`` pair never changes; asking once saves most of its cost per lookup.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._safe: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        safe = self._safe.get(key)
        if safe is None:
            safe = self._safe[key] = super().is_safe_attribute(obj, attr, value)
        return safe


def build_environment(
    templates: Path | BaseLoader,
    *,
    locale: str = "en_US",
    currency: str = "USD",
    timezone: str = "UTC",
) -> ImmutableSandboxedEnvironment:
    """For mail: ``templates`` is the template directory (or a loader of it); the filters
    format in ``locale``, ``currency`` and ``timezone`` when a render names none."""
    loader = FileSystemLoader(str(templates)) if isinstance(templates, Path) else templates
    env = _Sandbox(
        loader=loader,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,  # every template stays compiled: there are only so many files
    )
    env.filters.update(build_filters(locale=locale, currency=currency, timezone=timezone))
    return env


class Missing(ChainableUndefined):
    """A field that is not there: falsy, and never more or less than anything.

    Jinja's undefined raises when ordered (``<``, ``>=``, ...); a condition such as
    ``profile.traits.age >= 18`` on a profile without an age is then simply false.
    """

    __slots__ = ()

    def _unordered(self, other: object) -> bool:
        return False

    __lt__ = __le__ = __gt__ = __ge__ = _unordered  # type: ignore[assignment]


def build_expression_environment() -> ImmutableSandboxedEnvironment:
    """For rule conditions: a missing field is simply undefined (falsy), never an error."""
    env = _Sandbox(undefined=Missing, autoescape=False)
    env.filters.update(build_filters(locale="en_US", currency="USD", timezone="UTC"))
    return env

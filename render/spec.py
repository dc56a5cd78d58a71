"""``template.yaml``: what a template needs of its render context.

```yaml
requires: [profile.first_name, cart.items]
```

Each entry is a dotted name in the render context. A send for which one of them is
missing (not there, ``None``, an empty or blank string, an empty collection) is not
rendered at all: :class:`render.MissingData` names the first such field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FIELD_PATTERN", "SPEC_FILE", "TemplateSpec", "first_missing"]

SPEC_FILE = "template.yaml"

#: a dotted name of plain identifiers (no ``_private`` parts: the lookup is not sandboxed)
FIELD_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$"

_ABSENT = object()


class TemplateSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: dotted names in the render context that must hold a value for the mail to go out
    requires: tuple[Annotated[str, Field(pattern=FIELD_PATTERN)], ...] = ()


def first_missing(context: Mapping[str, Any], requires: tuple[str, ...]) -> tuple[str, str] | None:
    """The first required field without a value and why (``None``: all there)."""
    for name in requires:
        value: Any = context
        for part in name.split("."):
            value = _child(value, part)
            if value is _ABSENT:
                return name, "not set"
        why = _empty(value)
        if why is not None:
            return name, why
    return None


def _child(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name, _ABSENT)
    return getattr(value, name, _ABSENT)


def _empty(value: Any) -> str | None:
    if value is None:
        return "not set"
    if isinstance(value, str):
        return "empty" if not value.strip() else None
    if isinstance(value, Sized) and not isinstance(value, bytes) and len(value) == 0:
        return "empty"
    return None

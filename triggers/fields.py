"""The fields conditions and templates may name, and the chains that name one that is not.

Conditions and templates see ``profile`` / ``user`` (a :class:`~profiles.Profile`, plus
the decayed ``score``), ``cart`` (its :class:`~profiles.Cart`) and ``event`` (an
:class:`~profiles.Event` as data, whose ``properties`` are the typed properties of the
rule's event types). :func:`unknown_fields` walks a Jinja2 syntax tree for attribute
chains from those names (``profile.cart.item_count``, ``profile['traits']``) and reports
each chain at its first link that does not exist. What the models leave open stays
free: below a dict-valued field (``traits``, ``counts``, ``affinity``, ``fired``, ...),
a plain value, or the properties of a custom event or of an event not known statically.

The shapes come from the pydantic models themselves (fields, and properties such as
``Cart.total``), so a field added to a model is known here at once.
"""

from __future__ import annotations

import difflib
import functools
import types
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from jinja2 import nodes
from pydantic import BaseModel

from profiles import KNOWN_EVENT_TYPES, Cart, Event, Profile
from triggers.conditions import expression_tree, expressions
from triggers.derived import RFM_FIELDS
from triggers.rules import Brand, Condition

__all__ = [
    "Shape",
    "UnknownField",
    "clusters_named",
    "field_roots",
    "reads_predictions",
    "template_roots",
    "unknown_fields",
]

#: attributes of ``profile`` beside its stored fields, computed at evaluation time
#: (``score`` decayed to now; see README, "Profile fields")
_DERIVED_PROFILE_FIELDS = (
    "score",
    "lifecycle",
    "affinities",
    "brand_affinities",
    "favourite_category",
    "favourite_brand",
    "recommended_recently",
)


@dataclass(frozen=True)
class Shape:
    """The attributes a value is known to have; ``attrs is None``: any attribute goes."""

    attrs: Mapping[str, Shape] | None = None

    def merge(self, other: Shape) -> Shape:
        """What either of two values may have (an event of one of several types)."""
        if self.attrs is None or other.attrs is None:
            return FREE
        merged = dict(self.attrs)
        for name, shape in other.attrs.items():
            merged[name] = merged[name].merge(shape) if name in merged else shape
        return Shape(merged)


FREE = Shape()


@dataclass(frozen=True)
class UnknownField:
    """A chain naming a field that does not exist, as written up to that link."""

    path: str
    line: int
    #: the names that do exist where the chain went wrong
    known: tuple[str, ...]

    def __str__(self) -> str:
        close = difflib.get_close_matches(self.path.rpartition(".")[2], self.known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field {self.path!r}{hint}"


def field_roots(event_types: Collection[str] | None) -> dict[str, Shape]:
    """The checked names of a rule's context; ``event_types`` are those that trigger it
    (``None``: not known statically, so ``event.properties`` is free)."""
    profile = _model_shape(Profile, objects=True)
    derived = {name: FREE for name in _DERIVED_PROFILE_FIELDS}
    derived["rfm"] = Shape({name: FREE for name in RFM_FIELDS})
    profile = profile.merge(Shape(derived))
    event = dict(_model_shape(Event, objects=False).attrs or {})
    event["properties"] = _properties_shape(event_types)
    return {
        "profile": profile,
        "user": profile,
        "cart": _model_shape(Cart, objects=True),
        "event": Shape(event),
    }


def template_roots(event_types: Collection[str] | None) -> dict[str, Shape]:
    """What :func:`field_roots` checks, and ``brand``, which templates see besides."""
    return {**field_roots(event_types), "brand": _model_shape(Brand, objects=True)}


def unknown_fields(tree: nodes.Node, roots: Mapping[str, Shape]) -> list[UnknownField]:
    """Every chain in ``tree`` from one of ``roots`` through a field that does not exist,
    once per path, in line order. Names the tree binds itself (``{% for %}``,
    ``{% set %}``, macro arguments) are not the roots and are not checked."""
    bound = {name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")}
    found: dict[str, UnknownField] = {}
    for root, parts, line in _chains(tree):
        shape = roots.get(root)
        if shape is None or root in bound:
            continue
        unknown = _first_unknown(shape, root, parts, line)
        if unknown is not None and unknown.path not in found:
            found[unknown.path] = unknown
    return sorted(found.values(), key=lambda unknown: unknown.line)


def reads_predictions(conditions: Iterable[Condition]) -> bool:
    """Whether any of ``conditions`` reads the model's scores (``profile.predicted...``
    or ``user.predicted...``)."""
    for condition in conditions:
        for expression in expressions(condition):
            for root, parts, _ in _chains(expression_tree(expression)):
                if root in ("profile", "user") and parts[:1] == ["predicted"]:
                    return True
    return False


def clusters_named(condition: Condition) -> Iterator[str]:
    """The cluster names ``condition`` compares ``profile.predicted.cluster`` with (``==``,
    ``!=``, or ``in`` a list of strings)."""
    for expression in expressions(condition):
        for compare in expression_tree(expression).find_all(nodes.Compare):
            sides = [compare.expr, *(operand.expr for operand in compare.ops)]
            if any(_is_cluster(side) for side in sides):
                for side in sides:
                    yield from _strings(side)


def _is_cluster(node: nodes.Node) -> bool:
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return False
    return any(
        root in ("profile", "user") and parts == ["predicted", "cluster"]
        for root, parts, _ in _chain(node)
    )


def _strings(node: nodes.Node) -> Iterator[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, nodes.List | nodes.Tuple):
        for item in node.items:
            yield from _strings(item)


def _first_unknown(shape: Shape, root: str, parts: list[str], line: int) -> UnknownField | None:
    for depth, part in enumerate(parts):
        if shape.attrs is None:
            return None
        if part not in shape.attrs:
            path = ".".join([root, *parts[: depth + 1]])
            return UnknownField(path, line, tuple(sorted(shape.attrs)))
        shape = shape.attrs[part]
    return None


def _chains(node: nodes.Node) -> Iterator[tuple[str, list[str], int]]:
    """``(root name, attribute names, line)`` of every outermost attribute chain."""
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        yield from _chain(node)
        return
    for child in node.iter_child_nodes():
        yield from _chains(child)


def _chain(top: nodes.Getattr | nodes.Getitem) -> Iterator[tuple[str, list[str], int]]:
    parts: list[str | None] = []
    node: nodes.Node = top
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        else:
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            parts.append(key if isinstance(key, str) else None)
            yield from _chains(node.arg)
        node = node.node
    if not isinstance(node, nodes.Name):
        yield from _chains(node)
        return
    known: list[str] = []
    for part in reversed(parts):  # up to the first key not known statically
        if part is None:
            break
        known.append(part)
    yield node.name, known, top.lineno


def _properties_shape(event_types: Collection[str] | None) -> Shape:
    if event_types is None or not event_types:
        return FREE
    if any(event_type not in KNOWN_EVENT_TYPES for event_type in event_types):
        return FREE  # a custom event's properties are free-form
    shapes = [_model_shape(KNOWN_EVENT_TYPES[t], objects=False) for t in event_types]
    return functools.reduce(Shape.merge, shapes)


@functools.cache
def _model_shape(model: type[BaseModel], *, objects: bool) -> Shape:
    """The fields of ``model``; with ``objects`` (a live model, not its JSON), its
    properties too."""
    attrs = {
        name: _annotation_shape(info.annotation, objects=objects)
        for name, info in model.model_fields.items()
    }
    if objects:
        for name, prop in _properties(model):
            returns = get_type_hints(prop.fget).get("return") if prop.fget else None
            attrs[name] = _annotation_shape(returns, objects=objects)
    return Shape(attrs)


def _properties(model: type[BaseModel]) -> Iterator[tuple[str, property]]:
    for cls in model.__mro__:
        if cls is BaseModel:
            return
        for name, member in vars(cls).items():
            if isinstance(member, property) and not name.startswith("_"):
                yield name, member


def _annotation_shape(annotation: Any, *, objects: bool) -> Shape:
    """A model (or an optional one) has its fields; any other value is free below."""
    options = [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(options) == 1 and isinstance(options[0], type) and issubclass(options[0], BaseModel):
        return _model_shape(options[0], objects=objects)
    return FREE

"""What a probe reads of a profile, so that an unchanged profile need not be probed again.

The segments, thresholds and ``cancel_when`` conditions are evaluated after every event.
Between two evaluations of the same profile their result can only change if a field they
read changed, or time passed a moment the :class:`triggers.context.Horizon` noted. The
second holds only where every time-based value is compared in a way that notes its flip:

- ``within(...)`` anywhere (it always notes when it turns false);
- ``profile.lifecycle`` and ``profile.rfm.<window figure>`` anywhere (each read notes the
  next moment its value changes); their fingerprint is the stored fields they are
  computed from (:data:`_DERIVED_READS`);
- ``days_since(...)``, ``profile.score`` and ``profile.rfm.days_since_last_purchase``
  only as operands of ``<``, ``<=``, ``>``, ``>=`` (directly, or through ``and`` /
  ``or``, which return an operand);
- no ``now``, no other call, no arithmetic on them.

The decayed affinities (``affinities``, ``favourite_category``, ...) are outside it: an
expression reading them is probed at every event.

:func:`probe_reads` returns the attribute chains an expression reads, or ``None`` when
it is outside that subset; :meth:`Reads.fingerprint` is what those chains hold in a
profile (``None`` if one holds something mutable, which cannot be compared later).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from profiles import Profile
from triggers.derived import RFM_FIELDS
from triggers.native import attribute_lookup, item_lookup

__all__ = ["Reads", "probe_reads"]

_ORDERING = frozenset({"gt", "gteq", "lt", "lteq"})
#: derived profile fields that note their own changes, and the stored fields that
#: determine them (the purchase buckets change only with a purchase, which always
#: changes ``purchase_count``)
_DERIVED_READS = {
    "rfm": ("purchase_count", "total_spent", "last_purchase_at"),
    "lifecycle": ("first_seen", "recency_at"),
}
_RFM_COUNTED = frozenset(RFM_FIELDS) - {"days_since_last_purchase"}
#: derived fields a fingerprint cannot follow
_UNFOLLOWED = frozenset({"affinities", "brand_affinities", "favourite_category", "favourite_brand"})
_ROOTS = frozenset({"profile", "user", "cart", "segments"})
_PROFILE = frozenset({"profile", "user"})
_SCALARS = (type(None), bool, int, float, str, datetime, date)
#: an undefined leaf (the sandbox's Undefined objects compare equal by type anyway)
_UNDEFINED = object()


class _Unsafe(Exception):
    """The expression reads something a fingerprint cannot follow."""


Chain = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Reads:
    """The attribute chains a probe reads, from the roots ``profile``/``user``/``cart``/
    ``segments``."""

    chains: tuple[Chain, ...]
    lookups: tuple[tuple[Callable[[Any], Any], ...], ...]

    @cached_property
    def _plain(self) -> Callable[[Profile], tuple[Any, ...]] | None:
        """All chains in one C call when they are attributes only (see :meth:`fingerprint`)."""
        if any(kind != "attr" for _, steps in self.chains for kind, _ in steps):
            return None
        dotted = [
            ".".join([*_ROOT_PATH[root], *(k for _, k in steps)]) for root, steps in self.chains
        ]
        get = operator.attrgetter(*dotted, *dotted[:1])  # two names at least: always a tuple
        return lambda profile: get(profile)[: len(dotted)]

    def fingerprint(self, profile: Profile) -> tuple[Any, ...] | None:
        """What the chains hold in ``profile`` (with the types); ``None`` if something is
        not a plain value, which cannot be compared later.

        A plain attribute read gives what the sandbox sees, or something it sees through
        a fixed rule (its safety checks depend on the type and name only); a missing one
        takes the sandbox's own lookups.
        """
        if self._plain is not None:
            try:
                return _leaves(self._plain(profile))
            except AttributeError:
                pass
        return _leaves(
            tuple(_follow(profile, c, ls) for c, ls in zip(self.chains, self.lookups, strict=True))
        )


_ROOT_PATH = {"profile": (), "cart": ("cart",), "segments": ("segments",)}


def _follow(profile: Profile, chain: Chain, lookups: tuple[Callable[[Any], Any], ...]) -> Any:
    value: Any = profile.cart if chain[0] == "cart" else profile
    if chain[0] == "segments":
        value = profile.segments
    for lookup in lookups:
        value = lookup(value)
    return value


def _leaves(values: tuple[Any, ...]) -> tuple[Any, ...] | None:
    found = []
    for value in values:
        if isinstance(value, Undefined):
            found.append(_UNDEFINED)
        elif type(value) in _SCALARS:
            found.append((type(value), value))
        elif type(value) is list and all(type(v) is str for v in value):
            found.append(tuple(value))
        else:
            return None
    return tuple(found)


def probe_reads(env: ImmutableSandboxedEnvironment, expression: str) -> Reads | None:
    """The chains ``expression`` reads, or ``None`` if it is outside the subset."""
    parser = Parser(env, expression, state="variable")
    try:
        tree = parser.parse_expression()
        chains: list[Chain] = []
        _walk(tree, timed_ok=False, chains=chains)
    except (TemplateSyntaxError, _Unsafe):
        return None
    unique = tuple(dict.fromkeys(chains))
    return Reads(unique, tuple(_lookups(env, steps) for _, steps in unique))


def _lookups(env: ImmutableSandboxedEnvironment, steps: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        attribute_lookup(env, key) if kind == "attr" else item_lookup(env, key)
        for kind, key in steps
    )


def _walk(node: nodes.Node, *, timed_ok: bool, chains: list[Chain]) -> None:
    if isinstance(node, nodes.Const):
        return
    if isinstance(node, nodes.List | nodes.Tuple):
        for item in node.items:
            _walk(item, timed_ok=False, chains=chains)
    elif isinstance(node, nodes.And | nodes.Or):
        _walk(node.left, timed_ok=timed_ok, chains=chains)
        _walk(node.right, timed_ok=timed_ok, chains=chains)
    elif isinstance(node, nodes.Compare):
        ordering = all(op.op in _ORDERING for op in node.ops)
        for operand in [node.expr, *(op.expr for op in node.ops)]:
            _walk(operand, timed_ok=ordering, chains=chains)
    elif isinstance(node, nodes.Call):
        _call(node, timed_ok=timed_ok, chains=chains)
    elif isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
        _chain(node, timed_ok=timed_ok, chains=chains)
    elif isinstance(node, nodes.Not | nodes.BinExpr | nodes.UnaryExpr):
        for child in node.iter_child_nodes():
            _walk(child, timed_ok=False, chains=chains)
    else:
        raise _Unsafe(type(node).__name__)


def _call(node: nodes.Call, *, timed_ok: bool, chains: list[Chain]) -> None:
    name = node.node.name if isinstance(node.node, nodes.Name) else None
    if name == "within" or (name == "days_since" and timed_ok):
        for arg in node.args:
            _walk(arg, timed_ok=False, chains=chains)
        return
    raise _Unsafe("call")


def _chain(node: nodes.Node, *, timed_ok: bool, chains: list[Chain]) -> None:
    steps: list[tuple[str, Any]] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            steps.append(("attr", node.attr))
        elif isinstance(node.arg, nodes.Const):
            steps.append(("item", node.arg.value))
        else:
            raise _Unsafe("computed item")
        node = node.node
    if not isinstance(node, nodes.Name) or node.name not in _ROOTS:
        raise _Unsafe("root")
    steps.reverse()
    if node.name in _PROFILE and steps and steps[0][1] == "score":
        if len(steps) != 1 or not timed_ok:  # the decaying score, compared as it is
            raise _Unsafe("score")
        chains += [("profile", (("attr", "score"),)), ("profile", (("attr", "score_at"),))]
        return
    if node.name in _PROFILE and steps and steps[0][1] in _DERIVED_READS:
        _derived(steps, timed_ok=timed_ok, chains=chains)
        return
    if node.name in _PROFILE and steps and steps[0][1] in _UNFOLLOWED:
        raise _Unsafe("decaying")
    root = "profile" if node.name in _PROFILE else node.name
    chains.append((root, tuple(steps)))


def _derived(steps: list[tuple[str, Any]], *, timed_ok: bool, chains: list[Chain]) -> None:
    """``profile.lifecycle`` or ``profile.rfm.<field>``: the chains of what it is computed
    from (what it reads of time, it notes itself; the days since the last purchase only
    when ordered, as ``days_since``)."""
    name = steps[0][1]
    if name == "rfm":
        field = steps[1][1] if len(steps) == 2 else None
        if field not in _RFM_COUNTED and not (field == "days_since_last_purchase" and timed_ok):
            raise _Unsafe("rfm")
    elif len(steps) != 1:
        raise _Unsafe(name)
    chains += [("profile", (("attr", stored),)) for stored in _DERIVED_READS[name]]

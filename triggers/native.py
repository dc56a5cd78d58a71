"""Conditions as plain Python closures: the same semantics as the Jinja sandbox, less cost.

A condition evaluated through Jinja builds a template context per call, which costs more
than the condition itself. :func:`compile_native` translates the syntax tree of a small,
audited subset of expressions into closures over that tree instead:

- names, looked up in the context as Jinja does (a missing name is undefined); names of
  the environment's globals are not translated;
- ``a.b`` and ``a['b']`` through the sandbox's own ``getattr`` / ``getitem``, so what is
  safe, and what is undefined, is decided by the sandbox itself;
- constants, lists, tuples, ``and`` / ``or`` / ``not``, comparisons (chained as in
  Python, ``in`` / ``not in`` included), ``+ - * / // %`` and unary ``-`` / ``+``: Jinja
  compiles these to the same Python operators;
- calls of a name (``within(...)``, ``days_since(...)``) with positional arguments,
  through the sandbox's ``call``.

Anything else (filters, tests, conditional expressions, slices, keyword arguments, ...)
is not translated: :func:`compile_native` returns ``None`` and the caller keeps the
Jinja expression. Undefined values are the environment's own (``ChainableUndefined``),
so a missing field behaves exactly as in Jinja, errors included. A property test checks
the two agree on random profiles and events (tests/triggers/test_native.py).
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["Native", "attribute_lookup", "compile_native", "item_lookup"]

#: a translated expression: context -> value
Native = Callable[[Mapping[str, Any]], Any]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}

_BINARY: dict[type[nodes.BinExpr], Callable[[Any, Any], Any]] = {
    nodes.Add: operator.add,
    nodes.Sub: operator.sub,
    nodes.Mul: operator.mul,
    nodes.Div: operator.truediv,
    nodes.FloorDiv: operator.floordiv,
    nodes.Mod: operator.mod,
}

_UNARY: dict[type[nodes.UnaryExpr], Callable[[Any], Any]] = {
    nodes.Neg: operator.neg,
    nodes.Pos: operator.pos,
}


class _Unsupported(Exception):
    """The expression uses something outside the translated subset."""


def compile_native(env: ImmutableSandboxedEnvironment, expression: str) -> Native | None:
    """``expression`` as a closure evaluated like ``env.compile_expression`` would, or
    ``None`` if it is outside the translated subset (or does not parse)."""
    parser = Parser(env, expression, state="variable")
    try:
        tree = parser.parse_expression()
        if not parser.stream.eos:
            return None
        return _Translator(env).node(tree)
    except (TemplateSyntaxError, _Unsupported):
        return None


#: what the sandbox's ``wrap_str_format`` looks at (``str.format`` of a string)
_METHODS = (types.MethodType, types.BuiltinMethodType)


def attribute_lookup(env: ImmutableSandboxedEnvironment, name: str) -> Callable[[Any], Any]:
    """``obj.name`` as ``env.getattr`` finds it, the common cases without its detours:

    - a plain ``dict`` has no attribute ``name`` unless ``dict`` itself has one, so the
      sandbox's ``getattr`` always fails over to the item: look the item up directly;
    - an attribute that is no method (``wrap_str_format`` leaves those alone) and is safe
      is returned as is; anything else (missing, unsafe, a method) takes ``env.getattr``.
    """
    items_only = not hasattr(dict, name)
    undefined, is_safe, slow = env.undefined, env.is_safe_attribute, env.getattr

    def attribute(obj: Any) -> Any:
        if items_only and type(obj) is dict:
            try:
                return obj[name]
            except KeyError:
                return undefined(obj=obj, name=name)
        try:
            value = getattr(obj, name)
        except AttributeError:
            return slow(obj, name)
        if isinstance(value, _METHODS) or not is_safe(obj, name, value):
            return slow(obj, name)
        return value

    return attribute


def item_lookup(env: ImmutableSandboxedEnvironment, key: Any) -> Callable[[Any], Any]:
    """``obj[key]`` as ``env.getitem`` finds it."""
    getitem = env.getitem
    return lambda obj: getitem(obj, key)


def _caller(
    env: ImmutableSandboxedEnvironment, context: Context
) -> Callable[[Any, list[Any]], Any]:
    """``f(*args)`` as ``env.call`` makes it; a plain, safe function without a Jinja
    ``pass_*`` marker (the helpers) is called as ``Context.call`` would, directly."""
    undefined, is_safe, slow = env.undefined, env.is_safe_callable, env.call

    def call(function: Any, args: list[Any]) -> Any:
        if type(function) is not types.FunctionType or hasattr(function, "jinja_pass_arg"):
            return slow(context, function, *args)
        if not is_safe(function):
            return slow(context, function, *args)  # raises the sandbox's SecurityError
        try:
            return function(*args)
        except StopIteration:
            return undefined(
                "value was undefined because a callable raised a StopIteration exception"
            )

    return call


class _Translator:
    def __init__(self, env: ImmutableSandboxedEnvironment) -> None:
        self.env = env
        # only a callable with a ``pass_context`` marker would see it, and no name in a
        # condition's context is one (the environment's globals are not translated)
        self.call_context = env.context_class(env, {}, "<condition>", {})

    def node(self, node: nodes.Node) -> Native:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is not None:
            return method(node)  # type: ignore[no-any-return]
        if type(node) in _BINARY:
            return self.binary(node)  # type: ignore[arg-type]
        if type(node) in _UNARY:
            return self.unary(node)  # type: ignore[arg-type]
        raise _Unsupported(type(node).__name__)

    def visit_Const(self, node: nodes.Const) -> Native:
        value = node.value
        return lambda ctx: value

    def visit_Name(self, node: nodes.Name) -> Native:
        name, undefined = node.name, self.env.undefined
        if node.ctx != "load" or name in self.env.globals:
            raise _Unsupported(name)
        return lambda ctx: ctx[name] if name in ctx else undefined(name=name)

    def visit_Getattr(self, node: nodes.Getattr) -> Native:
        of, attr = self.node(node.node), attribute_lookup(self.env, node.attr)
        return lambda ctx: attr(of(ctx))

    def visit_Getitem(self, node: nodes.Getitem) -> Native:
        if isinstance(node.arg, nodes.Slice):
            raise _Unsupported("slice")
        of, arg, getitem = self.node(node.node), self.node(node.arg), self.env.getitem
        return lambda ctx: getitem(of(ctx), arg(ctx))

    def visit_List(self, node: nodes.List) -> Native:
        items = [self.node(item) for item in node.items]
        return lambda ctx: [item(ctx) for item in items]

    def visit_Tuple(self, node: nodes.Tuple) -> Native:
        items = [self.node(item) for item in node.items]
        return lambda ctx: tuple(item(ctx) for item in items)

    def visit_And(self, node: nodes.And) -> Native:
        left, right = self.node(node.left), self.node(node.right)
        return lambda ctx: left(ctx) and right(ctx)

    def visit_Or(self, node: nodes.Or) -> Native:
        left, right = self.node(node.left), self.node(node.right)
        return lambda ctx: left(ctx) or right(ctx)

    def visit_Not(self, node: nodes.Not) -> Native:
        operand = self.node(node.node)
        return lambda ctx: not operand(ctx)

    def visit_Compare(self, node: nodes.Compare) -> Native:
        first = self.node(node.expr)
        if any(op.op not in _COMPARE for op in node.ops):
            raise _Unsupported("comparison")
        ops = [(_COMPARE[op.op], self.node(op.expr)) for op in node.ops]

        def compare(ctx: Mapping[str, Any]) -> Any:
            # Python's chained comparison: each operand evaluated once, stop at a false one
            left, result = first(ctx), True
            for op, operand in ops:
                right = operand(ctx)
                result = op(left, right)
                if not result:
                    return result
                left = right
            return result

        return compare

    def visit_Call(self, node: nodes.Call) -> Native:
        if not isinstance(node.node, nodes.Name) or node.kwargs or node.dyn_args:
            raise _Unsupported("call")
        if node.dyn_kwargs is not None:
            raise _Unsupported("call")
        function, args = self.node(node.node), [self.node(arg) for arg in node.args]
        call = _caller(self.env, self.call_context)
        return lambda ctx: call(function(ctx), [arg(ctx) for arg in args])

    def binary(self, node: nodes.BinExpr) -> Native:
        op, left, right = _BINARY[type(node)], self.node(node.left), self.node(node.right)
        return lambda ctx: op(left(ctx), right(ctx))

    def unary(self, node: nodes.UnaryExpr) -> Native:
        op, operand = _UNARY[type(node)], self.node(node.node)
        return lambda ctx: op(operand(ctx))

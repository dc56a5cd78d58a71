"""A corpus of hostile event messages, each with what the event contract says of it.

Every message is one the producers' side could send: malformed JSON, wrong types, huge
values, deep nesting, Unicode edge cases, times far away, ids that break naive Redis key
building, template syntax and HTML in every string, a key that is not the ``user_id``.
Each carries its expected outcome from the contract (README, "Event"): ``ok`` (applied
to a profile) or the dead-letter reason. The outcomes are written from the contract, not
read from the parser, so a parser that accepts or rejects the wrong thing is caught.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["EVALUATED", "Message", "corpus"]

#: what a string of the corpus becomes if anything evaluates it as a Jinja template;
#: no send may contain either (neither can occur in a token or an id)
EVALUATED = ("EVALUATED", "TEMPLATED")

#: template syntax (of Jinja and others) and HTML, to put in every string field
SNIPPETS = (
    '{{ "EVAL" ~ "UATED" }}',
    "{% set t = 'TEMPL' ~ 'ATED' %}{{ t }}",
    "{{ profile.email }}{{ config }}{{ ''.__class__ }}",
    "${7*7} #{7*7} <%= 7*7 %>",
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)"><a href="javascript:alert(1)">',
    "\u202eevil\u202c \u200f\u200e",
    "🎁🦄👩‍👩‍👧 Z̴̢͙a̶l̶g̶o̶",
    "a\u0000b\u0001c",
    "\ufeffbom \\ \"quoted\" 'single'",
    "line\nbreak\ttab\r",
    "",
)

#: user ids that break key building by string concatenation (all within the 200 limit)
USER_IDS = (
    "user{1}",
    "{",
    "}",
    "{}",
    "a:b:c",
    "with space",
    "ünï©ødé",
    "🎁",
    "nul\u0000id",
    "x" * 200,
    "{{ 7*7 }}",
    "<b>",
)

#: a value over the default 1 MiB limit
HUGE = "h" * (1024 * 1024 + 16)


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    #: ``ok`` or the dead-letter reason the contract gives
    expect: str


def corpus(size: int = 10_000, *, seed: int = 13, tag: str | None = None) -> list[Message]:
    """``size`` messages, about 70 % good; ``tag`` (default random) prefixes the users."""
    rng = random.Random(seed)
    tag = tag or uuid.uuid4().hex[:6]
    makers = [(maker, weight) for maker, weight in _MAKERS]
    out = []
    for n in range(size):
        [maker] = rng.choices([m for m, _ in makers], [w for _, w in makers])
        out.append(maker(_Ctx(rng, tag, n)))
    return out


@dataclass(frozen=True)
class _Ctx:
    rng: random.Random
    tag: str
    n: int

    def user(self) -> str:
        plain = f"{self.tag}-u{self.rng.randrange(300)}"
        return self.rng.choice((plain, plain, f"{self.tag}{self.rng.choice(USER_IDS)}"[:200]))

    def text(self) -> str:
        """A snippet; one in twenty with 10,000 characters after it."""
        return self.rng.choice(SNIPPETS) + ("x" * 10_000 if self.rng.random() < 0.05 else "")

    def event(self, kind: str, user: str | None = None, **props: Any) -> dict[str, Any]:
        return {
            "event_id": f"{self.tag}-{self.n}",
            "type": kind,
            "user_id": user or self.user(),
            "ts": "2026-01-15T12:00:00Z",
            "properties": props,
        }


def _good(ctx: _Ctx, event: dict[str, Any]) -> Message:
    return Message(event["user_id"].encode(), orjson.dumps(event), "ok")


def _signup(ctx: _Ctx) -> Message:
    props = {
        "email": f"{ctx.rng.randrange(300)}@example.com",
        "first_name": ctx.text(),
        "last_name": ctx.text(),
        "consent": {"email": True},
    }
    return _good(ctx, ctx.event("signup", **props))


def _browse(ctx: _Ctx) -> Message:
    kind = ctx.rng.choice(("page_view", "product_view", "add_to_cart"))
    props: dict[str, Any] = {"url": ctx.text(), "title": ctx.text()}
    if kind != "page_view":
        props = {"product_id": ctx.text()[:100], "name": ctx.text(), "price": 12.5}
    return _good(ctx, ctx.event(kind, **props))


def _purchase(ctx: _Ctx) -> Message:
    snippet = ctx.rng.choice(SNIPPETS)
    items = [{"product_id": f"p{i}", "name": snippet, "price": 1.0} for i in range(2_000)]
    props = {"order_id": ctx.text()[:100], "total": 2_000.0, "items": items}
    return _good(ctx, ctx.event("purchase", **props))


def _custom(ctx: _Ctx) -> Message:
    nested: dict[str, Any] = {"leaf": ctx.text()}
    for _ in range(200):  # deep, but within what a JSON parser should take
        nested = {"n": nested}
    props = {"many": list(range(10_000)), "nested": nested, "text": ctx.text()}
    event = ctx.event("hostile.custom", **props)
    event["context"] = {"ip": ctx.text(), "user_agent": ctx.text()}
    return _good(ctx, event)


def _far_times(ctx: _Ctx) -> Message:
    event = ctx.event("page_view", url="/")
    event["ts"] = ctx.rng.choice(
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", 1e300, -1)
    )
    return Message(event["user_id"].encode(), orjson.dumps(event), "schema_violation")


def _near_edges_of_time(ctx: _Ctx) -> Message:
    event = ctx.event("page_view", url="/")
    event["ts"] = ctx.rng.choice(("1970-01-01T00:00:00Z", "2099-12-31T23:59:59Z", 0))
    return _good(ctx, event)


def _wrong_types(ctx: _Ctx) -> Message:
    event = ctx.event("page_view", url="/")
    field, value = ctx.rng.choice(
        (
            ("user_id", 5),
            ("ts", True),
            ("properties", []),
            ("event_id", ""),
            ("type", "Not A Type"),
            ("unknown_top_level", 1),
            ("user_id", "x" * 10_000),
        )
    )
    event[field] = value
    return Message(str(event["user_id"]).encode()[:200], orjson.dumps(event), "schema_violation")


def _bad_properties(ctx: _Ctx) -> Message:
    event = ctx.rng.choice(
        (
            ctx.event("signup", email=ctx.text() + "not an address"),
            ctx.event("add_to_cart", product_id="p", price="twelve"),
            ctx.event("page_view", url="/", title=5),
            ctx.event("signup", email="a@example.com", timezone="Mars/Olympus"),
        )
    )
    return Message(event["user_id"].encode(), orjson.dumps(event), "schema_violation")


def _malformed(ctx: _Ctx) -> Message:
    good = orjson.dumps(ctx.event("page_view", url="/"))
    value = ctx.rng.choice(
        (
            b"{not json",
            good[: len(good) // 2],
            b"\xff\xfe\x00garbage",
            good.replace(b'"/"', b'"\\ud800"'),  # a lone surrogate
            good.replace(b'"/"', b'"\xed\xa0\x80"'),  # the same, as raw bytes
            b"[" * 10_000 + b"]" * 10_000,  # deeper than any parser should go
            b"",
        )
    )
    return Message(b"someone", value, "invalid_json")


def _too_large(ctx: _Ctx) -> Message:
    event = ctx.event("page_view", url="/", title=HUGE)
    return Message(event["user_id"].encode(), orjson.dumps(event), "too_large")


def _foreign_key(ctx: _Ctx) -> Message:
    event = ctx.event("page_view", url="/")
    return Message(b"someone-else", orjson.dumps(event), "key_mismatch")


def _no_value(ctx: _Ctx) -> Message:
    return Message(ctx.user().encode(), None, "empty_value")


_MAKERS = (
    (_signup, 25),
    (_browse, 30),
    (_purchase, 0.3),
    (_custom, 2),
    (_near_edges_of_time, 2),
    (_far_times, 6),
    (_wrong_types, 10),
    (_bad_properties, 8),
    (_malformed, 10),
    (_too_large, 0.05),
    (_foreign_key, 5),
    (_no_value, 2),
)

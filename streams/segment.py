"""Segment's HTTP API calls as nudge events: a pure mapping, no I/O.

A request to ``/v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/alias`` or ``/v1/batch``
is read into messages (:func:`read_messages`); the anonymous ids the collector has to look
up are :func:`anonymous_ids`; :func:`convert` then turns the messages, in order, into nudge
event dicts and the identity links they make. Each event carries ``renames``: where its
fields came from in the Segment message, so a validation error can name the field the
client sent (``properties.email_id``, not ``properties.message_id``). The README's
"Collector (HTTP API)" has the table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from streams.errors import StreamsError

__all__ = [
    "IGNORED_TYPES",
    "SEGMENT_TYPES",
    "TRACK_EVENTS",
    "Conversion",
    "InvalidMessage",
    "Mapped",
    "anonymous_ids",
    "convert",
    "custom_type",
    "read_messages",
]

#: the Segment calls nudge maps
SEGMENT_TYPES = ("track", "identify", "page", "alias")
#: Segment calls nudge has no use for: accepted in a batch and dropped
IGNORED_TYPES = ("screen", "group")
#: Segment's spec event names (e-commerce v2, email, B2B SaaS) -> nudge event types
TRACK_EVENTS = {
    "Product Viewed": "product_view",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Checkout Started": "checkout_started",
    "Order Completed": "purchase",
    "Email Opened": "email_open",
    "Email Link Clicked": "email_click",
    "Unsubscribed": "unsubscribe",
    "Signed Up": "signup",
}
#: message fields left out of the id made for a message without ``messageId``: a client
#: sets them anew when it retries
_VOLATILE = ("sentAt", "writeKey", "_metadata")
_NOT_A_TYPE = re.compile(r"[^a-z0-9_.]+")
#: signup fields a ``Signed Up`` event without them takes from ``context.traits``
_SIGNUP_TRAITS = ("email", "first_name", "last_name", "locale", "timezone", "consent")


class InvalidMessage(StreamsError):
    """A request nudge cannot map; ``detail`` names the field (``batch[2].event: ...``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Mapped:
    """One nudge event made from the message at ``where`` (``batch[3]``, or ``""``).
    ``renames``: nudge field path -> the Segment field it came from."""

    event: dict[str, Any]
    where: str = ""
    renames: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Conversion:
    """What a request becomes: its events in order, and the links it makes."""

    events: list[Mapped] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    #: how many messages of an ignored type (screen, group) it carried, by type
    ignored: dict[str, int] = field(default_factory=dict)


def read_messages(body: Any, call: str) -> list[tuple[str, dict[str, Any]]]:
    """The messages of a request to ``/v1/<call>`` with their place (``batch[i]`` or
    ``""``); a single call's type is the endpoint's. A batch's top-level ``context`` is
    under each message's own."""
    if not isinstance(body, dict):
        raise InvalidMessage("schema_violation", "<root>: the body must be a JSON object")
    if call != "batch":
        return [("", {**body, "type": call})]
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise InvalidMessage("schema_violation", "batch: must be an array of messages")
    shared = body.get("context")
    messages = []
    for i, message in enumerate(batch):
        where = f"batch[{i}]"
        if not isinstance(message, dict):
            raise InvalidMessage("schema_violation", f"{where}: must be a JSON object")
        if isinstance(shared, dict) and isinstance(message.get("context", {}), dict):
            message = {**message, "context": {**shared, **message.get("context", {})}}
        messages.append((where, message))
    return messages


def anonymous_ids(messages: Iterable[tuple[str, dict[str, Any]]]) -> set[str]:
    """The anonymous ids of messages that name no user: those the collector looks up."""
    found = set()
    for _, message in messages:
        if message.get("type") != "alias" and _ident(message.get("userId")) is None:
            anonymous = _ident(message.get("anonymousId"))
            if isinstance(anonymous, str):
                found.add(anonymous)
    return found


def convert(
    messages: Iterable[tuple[str, dict[str, Any]]], resolved: Mapping[str, str], received: datetime
) -> Conversion:
    """The events and links of ``messages``, in order. ``resolved``: the stored links of
    their anonymous ids; a link made earlier in the same request counts for the messages
    after it. ``received``: the event time of a message that carries none."""
    out = Conversion()
    for where, message in messages:
        kind = message.get("type")
        if kind in IGNORED_TYPES:
            out.ignored[kind] = out.ignored.get(kind, 0) + 1
            continue
        if kind not in SEGMENT_TYPES:
            raise InvalidMessage(
                "schema_violation",
                f"{_at(where, 'type')}: {kind!r} is not one "
                f"of {', '.join(SEGMENT_TYPES + IGNORED_TYPES)}",
            )
        link = _link(where, message)
        if link is not None:
            out.links[link[0]] = link[1]
        if kind != "alias":
            out.events.append(_event(where, message, {**resolved, **out.links}, received))
    return out


def custom_type(name: str) -> str:
    """A track event name as a nudge custom type: lowercased, each run of characters
    other than ``[a-z0-9_.]`` turned into one ``_`` (``Wishlist Shared`` ->
    ``wishlist_shared``), no ``_`` at either end."""
    return _NOT_A_TYPE.sub("_", name.lower()).strip("_")


# --- one message ---------------------------------------------------------------------------


def _link(where: str, message: dict[str, Any]) -> tuple[str, str] | None:
    """The (anonymous id, user id) link an alias or an identify with both makes."""
    user = _ident(message.get("userId"))
    if message["type"] == "alias":
        previous = _ident(message.get("previousId"))
        if not isinstance(previous, str) or not isinstance(user, str):
            name = "userId" if isinstance(previous, str) else "previousId"
            raise InvalidMessage(
                "schema_violation", f"{_at(where, name)}: an alias needs previousId and userId"
            )
        return (previous, user) if previous != user else None
    anonymous = _ident(message.get("anonymousId"))
    if message["type"] == "identify" and isinstance(user, str) and isinstance(anonymous, str):
        return (anonymous, user) if user != anonymous else None
    return None


def _event(
    where: str, message: dict[str, Any], links: Mapping[str, str], received: datetime
) -> Mapped:
    renames: dict[str, str] = {}
    kind, properties = _typed(where, message, renames)
    event: dict[str, Any] = {
        "event_id": _event_id(message, renames),
        "type": kind,
        "user_id": _user_id(where, message, links, renames),
        "ts": _timestamp(message, received, renames),
        "properties": properties,
    }
    if "context" in message:
        event["context"] = message["context"]
    return Mapped(event, where, renames)


def _typed(
    where: str, message: dict[str, Any], renames: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The nudge type and properties of a track, identify or page message."""
    if message["type"] == "identify":
        renames["properties.traits"] = "traits"
        traits = message.get("traits", {})
        return "profile_update", {"traits": traits if traits is not None else {}}
    properties = message.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidMessage("schema_violation", f"{_at(where, 'properties')}: must be an object")
    if message["type"] == "page":
        return "page_view", _page(properties, message, renames)
    name = message.get("event")
    if not isinstance(name, str) or not name:
        raise InvalidMessage(
            "schema_violation",
            f"{_at(where, 'event')}: a track call needs an event name (a string)",
        )
    kind = TRACK_EVENTS.get(name) or custom_type(name)
    if not kind:
        raise InvalidMessage(
            "schema_violation",
            f"{_at(where, 'event')}: {name!r} has no letter or digit to make an event type of",
        )
    build = _PROPERTIES.get(kind)
    return kind, build(properties, message, renames) if build else properties


def _event_id(message: dict[str, Any], renames: dict[str, str]) -> Any:
    """``messageId``; without one, a digest of the message, so that a retried request
    is the same event to the worker (which drops an event id it has applied)."""
    given = _ident(message.get("messageId"))
    if given is not None:
        renames["event_id"] = "messageId"
        return given
    stable = {k: v for k, v in message.items() if k not in _VOLATILE}
    digest = hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"segment-{digest[:32]}"


def _user_id(
    where: str, message: dict[str, Any], links: Mapping[str, str], renames: dict[str, str]
) -> Any:
    user = _ident(message.get("userId"))
    if user is not None:
        renames["user_id"] = "userId"
        return user
    anonymous = _ident(message.get("anonymousId"))
    if anonymous is None:
        raise InvalidMessage(
            "schema_violation", f"{_at(where, 'userId')}: either userId or anonymousId is required"
        )
    renames["user_id"] = "anonymousId"
    return links.get(anonymous, anonymous) if isinstance(anonymous, str) else anonymous


def _timestamp(message: dict[str, Any], received: datetime, renames: dict[str, str]) -> Any:
    for name in ("timestamp", "originalTimestamp"):
        if message.get(name) is not None:
            renames["ts"] = name
            return message[name]
    return received.isoformat()


# --- properties, per nudge type ------------------------------------------------------------


def _product(
    props: dict[str, Any], renames: dict[str, str], at: str, source: str
) -> dict[str, Any]:
    """``product_id`` from Segment's ``product_id``, else ``sku``, else ``id``; ``at`` and
    ``source``: where the product is in the nudge event and in the Segment message."""
    if source != at:
        renames[at] = source
    for name in ("product_id", "sku", "id"):
        if props.get(name) is not None:
            if name != "product_id":
                renames[f"{at}.product_id"] = f"{source}.{name}"
            return {**props, "product_id": _ident(props[name])}
    return props


def _first(
    props: dict[str, Any], names: tuple[str, ...], target: str, renames: dict[str, str]
) -> dict[str, Any]:
    """``props`` with ``target`` set from the first of ``names`` present."""
    for name in names:
        if props.get(name) is not None:
            if name != target:
                renames[f"properties.{target}"] = f"properties.{name}"
            return {**props, target: props[name]}
    return props


def _products(props: dict[str, Any], _: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    return _product(props, renames, "properties", "properties")


def _checkout(props: dict[str, Any], _: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    return _first(props, ("value", "revenue", "total"), "total", renames)


def _order(props: dict[str, Any], _: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    out = _first(props, ("total", "revenue", "value"), "total", renames)
    out = {**out, "order_id": _ident(out.get("order_id"))} if "order_id" in out else out
    if isinstance(out.get("currency"), str):
        out["currency"] = out["currency"].upper()
    products = out.pop("products", None)
    if products is not None:
        renames["properties.items"] = "properties.products"
        items = products
        if isinstance(products, list):
            items = [
                _product(p, renames, f"properties.items.{i}", f"properties.products.{i}")
                if isinstance(p, dict)
                else p
                for i, p in enumerate(products)
            ]
        out["items"] = items
    return out


def _email(props: dict[str, Any], _: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    out = props
    if props.get("email_id") is not None:
        renames["properties.message_id"] = "properties.email_id"
        out = {**out, "message_id": _ident(props["email_id"])}
    if props.get("link_url") is not None:
        renames["properties.url"] = "properties.link_url"
        out = {**out, "url": props["link_url"]}
    return out


def _signup(props: dict[str, Any], message: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
    """The properties, with what they lack of the signup fields from ``context.traits``
    (and ``locale``, ``timezone`` from ``context``)."""
    context = message.get("context")
    context = context if isinstance(context, dict) else {}
    traits = context.get("traits")
    traits = traits if isinstance(traits, dict) else {}
    out = dict(props)
    for name in _SIGNUP_TRAITS:
        if out.get(name) is None and traits.get(name) is not None:
            out[name] = traits[name]
    for name in ("locale", "timezone"):
        if out.get(name) is None and isinstance(context.get(name), str):
            out[name] = context[name]
    return out


def _page(
    props: dict[str, Any], message: dict[str, Any], renames: dict[str, str]
) -> dict[str, Any]:
    """``url`` and ``title`` from the properties, else ``context.page`` (title: else the
    page's ``name``)."""
    context = message.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    page = page if isinstance(page, dict) else {}
    out = dict(props)
    if out.get("url") is None and page.get("url") is not None:
        renames["properties.url"] = "context.page.url"
        out["url"] = page["url"]
    title = out.get("title") or page.get("title") or message.get("name")
    if title is not None:
        out["title"] = title
    return out


_PROPERTIES: dict[
    str, Callable[[dict[str, Any], dict[str, Any], dict[str, str]], dict[str, Any]]
] = {
    "product_view": _products,
    "add_to_cart": _products,
    "remove_from_cart": _products,
    "checkout_started": _checkout,
    "purchase": _order,
    "email_open": _email,
    "email_click": _email,
    "signup": _signup,
}


def _ident(value: Any) -> Any:
    """An identifier as the contract's string: an integer becomes its decimal (Segment
    clients send numeric ids), an empty string is no id (``None``); anything else is left
    for validation to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None if value == "" else value


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name

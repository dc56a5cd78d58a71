"""Segment's calls as nudge events: every row of the README's table, custom events, ids,
times, and anonymous visitors linked by alias and identify."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from profiles import parse_event
from streams.segment import (
    Conversion,
    InvalidMessage,
    anonymous_ids,
    convert,
    custom_type,
    read_messages,
)

RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TS = "2026-03-02T11:59:58.123Z"


def run(
    body: dict[str, Any], call: str = "track", resolved: dict[str, str] | None = None
) -> Conversion:
    return convert(read_messages(body, call), resolved or {}, RECEIVED)


def event(body: dict[str, Any], call: str = "track", **resolved: str) -> dict[str, Any]:
    """The one event ``body`` maps to, after checking the worker would accept it."""
    (mapped,) = run(body, call, resolved).events
    parse_event(orjson.dumps(mapped.event))
    return mapped.event


def track(event_name: str, /, **properties: Any) -> dict[str, Any]:
    return {"userId": "u1", "event": event_name, "properties": properties, "timestamp": TS}


@pytest.mark.parametrize(
    ("segment", "nudge", "expected"),
    [
        (
            track("Product Viewed", product_id="p1", name="Tent", category="camping", price=99),
            "product_view",
            {"product_id": "p1", "name": "Tent", "category": "camping", "price": 99},
        ),
        (
            track("Product Added", sku="TENT-2", price=99.5, quantity=2, cart_id="c1"),
            "add_to_cart",
            {
                "product_id": "TENT-2",
                "sku": "TENT-2",
                "price": 99.5,
                "quantity": 2,
                "cart_id": "c1",
            },
        ),
        (
            track("Product Removed", id=42, cart_id="c1"),
            "remove_from_cart",
            {"product_id": "42", "id": 42, "cart_id": "c1"},
        ),
        (
            track("Checkout Started", value=120, revenue=100, cart_id="c1"),
            "checkout_started",
            {"total": 120, "value": 120, "revenue": 100, "cart_id": "c1"},
        ),
        (
            track("Checkout Started", revenue=100),
            "checkout_started",
            {"total": 100, "revenue": 100},
        ),
        (
            track(
                "Order Completed",
                order_id=5001,
                revenue=90,
                currency="eur",
                products=[{"sku": "mug", "name": "Mug", "price": 45, "quantity": 2}],
            ),
            "purchase",
            {
                "order_id": "5001",
                "total": 90,
                "revenue": 90,
                "currency": "EUR",
                "items": [
                    {"product_id": "mug", "sku": "mug", "name": "Mug", "price": 45, "quantity": 2}
                ],
            },
        ),
        (
            track("Email Opened", email_id="r1", email_subject="Hi"),
            "email_open",
            {"message_id": "r1", "email_id": "r1", "email_subject": "Hi"},
        ),
        (
            track("Email Link Clicked", email_id="r1", link_url="https://shop.example/x"),
            "email_click",
            {
                "message_id": "r1",
                "email_id": "r1",
                "url": "https://shop.example/x",
                "link_url": "https://shop.example/x",
            },
        ),
        (track("Unsubscribed", category="reminders"), "unsubscribe", {"category": "reminders"}),
        (
            track("Signed Up", email="ann@example.com", first_name="Ann", consent={"email": True}),
            "signup",
            {"email": "ann@example.com", "first_name": "Ann", "consent": {"email": True}},
        ),
        (
            track("Wishlist Shared", product_id="p1", channel="whatsapp"),
            "wishlist_shared",
            {"product_id": "p1", "channel": "whatsapp"},
        ),
    ],
)
def test_each_track_event_maps_to_its_nudge_type(
    segment: dict[str, Any], nudge: str, expected: dict[str, Any]
) -> None:
    mapped = event(segment)
    assert (mapped["type"], mapped["properties"]) == (nudge, expected)
    assert (mapped["user_id"], mapped["ts"]) == ("u1", TS)


def test_a_signup_takes_what_its_properties_lack_from_the_context() -> None:
    message = {
        **track("Signed Up", first_name="Ann"),
        "context": {
            "traits": {"email": "ann@example.com", "first_name": "Anna", "plan": "pro"},
            "locale": "de-DE",
            "timezone": "Europe/Berlin",
        },
    }
    assert event(message)["properties"] == {
        "first_name": "Ann",
        "email": "ann@example.com",
        "locale": "de-DE",
        "timezone": "Europe/Berlin",
    }


def test_identify_is_a_profile_update_of_its_traits() -> None:
    message = {"userId": "u1", "traits": {"email": "ann@example.com", "plan": "pro"}}
    mapped = event(message, "identify")
    assert mapped["type"] == "profile_update"
    assert mapped["properties"] == {"traits": {"email": "ann@example.com", "plan": "pro"}}


def test_page_takes_url_and_title_from_the_properties_or_the_context() -> None:
    own = event({"userId": "u1", "properties": {"url": "https://a.example/", "title": "A"}}, "page")
    assert (own["type"], own["properties"]) == (
        "page_view",
        {"url": "https://a.example/", "title": "A"},
    )
    message = {
        "userId": "u1",
        "name": "Home",
        "context": {"page": {"url": "https://b.example/", "path": "/"}},
    }
    mapped = event(message, "page")
    assert mapped["properties"] == {"url": "https://b.example/", "title": "Home"}
    assert mapped["context"] == message["context"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Wishlist Shared", "wishlist_shared"),
        ("  Coupon -- Applied!! ", "coupon_applied"),
        ("video.played", "video.played"),
        ("Größe gewählt", "gr_e_gew_hlt"),
    ],
)
def test_custom_event_names_become_lowercase_types(name: str, kind: str) -> None:
    assert custom_type(name) == kind


def test_a_name_with_nothing_to_keep_is_refused() -> None:
    with pytest.raises(InvalidMessage) as caught:
        run(track("!!!"))
    assert caught.value.detail.startswith("event: ")


def test_message_id_is_the_event_id_else_a_digest_of_the_message() -> None:
    assert (
        event({**track("Product Viewed", product_id="p1"), "messageId": "m-1"})["event_id"] == "m-1"
    )
    plain = track("Product Viewed", product_id="p1")
    first = event(plain)["event_id"]
    retried = event({**plain, "sentAt": "2026-03-02T12:00:09Z", "writeKey": "k"})["event_id"]
    other = event(track("Product Viewed", product_id="p2"))["event_id"]
    assert first == retried != other
    assert first.startswith("segment-")


def test_event_time_is_timestamp_else_original_timestamp_else_receipt() -> None:
    base = {"userId": "u1", "event": "Thing Done"}
    assert event({**base, "timestamp": TS, "originalTimestamp": "2026-01-01T00:00:00Z"})["ts"] == TS
    assert event({**base, "originalTimestamp": TS})["ts"] == TS
    assert event(base)["ts"] == RECEIVED.isoformat()


def test_a_batch_shares_its_context_under_each_messages_own() -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "A", "context": {"ip": "x"}},
            {"type": "track", "userId": "u1", "event": "B"},
        ],
        "context": {"library": {"name": "test"}, "ip": "shared"},
    }
    contexts = [m.event["context"] for m in run(body, "batch").events]
    assert contexts == [
        {"library": {"name": "test"}, "ip": "x"},
        {"library": {"name": "test"}, "ip": "shared"},
    ]


def test_an_anonymous_visitor_is_its_own_user_until_linked() -> None:
    visit = {"anonymousId": "anon-1", "event": "Product Viewed", "properties": {"sku": "p1"}}
    assert event(visit)["user_id"] == "anon-1"
    assert anonymous_ids(read_messages(visit, "track")) == {"anon-1"}

    alias = run({"previousId": "anon-1", "userId": "u1"}, "alias")
    assert (alias.events, alias.links) == ([], {"anon-1": "u1"})

    # the collector stores the link; later requests resolve the anonymous id through it
    assert event(visit, **alias.links)["user_id"] == "u1"
    # an event naming its user is that user's, whatever its anonymous id
    named = {**visit, "userId": "u2"}
    assert anonymous_ids(read_messages(named, "track")) == set()
    assert event(named, **alias.links)["user_id"] == "u2"


def test_an_identify_with_both_ids_links_them_for_the_rest_of_its_batch() -> None:
    body = {
        "batch": [
            {
                "type": "track",
                "anonymousId": "a1",
                "event": "Product Viewed",
                "properties": {"sku": "p1"},
            },
            {"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {"plan": "pro"}},
            {"type": "page", "anonymousId": "a1", "properties": {"url": "https://a.example/"}},
            {
                "type": "track",
                "anonymousId": "a2",
                "event": "Product Viewed",
                "properties": {"sku": "p2"},
            },
        ]
    }
    conversion = run(body, "batch", {"a2": "u2"})
    assert [m.event["user_id"] for m in conversion.events] == ["a1", "u1", "u1", "u2"]
    assert conversion.links == {"a1": "u1"}


def test_screen_and_group_calls_are_dropped_and_counted() -> None:
    body = {
        "batch": [
            {"type": "screen", "userId": "u1", "name": "Home"},
            {"type": "group", "userId": "u1", "groupId": "g1"},
            {"type": "screen", "userId": "u1", "name": "Cart"},
            {"type": "track", "userId": "u1", "event": "Thing Done"},
        ]
    }
    conversion = run(body, "batch")
    assert [m.event["type"] for m in conversion.events] == ["thing_done"]
    assert conversion.ignored == {"screen": 2, "group": 1}


@pytest.mark.parametrize(
    ("body", "call", "detail"),
    [
        ({"event": "A"}, "track", "userId: either userId or anonymousId is required"),
        ({"userId": "u1"}, "track", "event: a track call needs an event name (a string)"),
        (
            {"userId": "u1", "event": "A", "properties": []},
            "track",
            "properties: must be an object",
        ),
        ({"userId": "u1"}, "alias", "previousId: an alias needs previousId and userId"),
        ({"batch": {}}, "batch", "batch: must be an array of messages"),
        (
            {"batch": [{"type": "track", "userId": "u", "event": "A"}, 3]},
            "batch",
            "batch[1]: must be a JSON object",
        ),
        (
            {"batch": [{"type": "delete", "userId": "u1"}]},
            "batch",
            "batch[0].type: 'delete' is not one of track, identify, page, alias, screen, group",
        ),
    ],
)
def test_messages_nudge_cannot_map_name_the_field(
    body: dict[str, Any], call: str, detail: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        run(body, call)
    assert (caught.value.reason, caught.value.detail) == ("schema_violation", detail)


def test_renames_say_where_each_field_came_from() -> None:
    message = track("Order Completed", order_id="o1", revenue=5, products=[{"id": "p", "price": 5}])
    (mapped,) = run({**message, "messageId": "m1"}).events
    assert mapped.renames == {
        "event_id": "messageId",
        "user_id": "userId",
        "ts": "timestamp",
        "properties.total": "properties.revenue",
        "properties.items": "properties.products",
        "properties.items.0": "properties.products.0",
        "properties.items.0.product_id": "properties.products.0.id",
    }

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from profiles import InvalidEvent, parse_event
from profiles.events import Bounce, Consent, Signup, Unsubscribe, event_json_schema


def raw(**fields: object) -> bytes:
    event = {
        "event_id": "e1",
        "type": "page_view",
        "user_id": "u1",
        "ts": "2026-03-01T12:00:00+01:00",
        "properties": {"url": "https://x.example/"},
    }
    event.update(fields)
    return orjson.dumps(event)


def test_valid_event_is_parsed_and_time_normalised_to_utc() -> None:
    event = parse_event(raw(), key=b"u1")
    assert event.ts == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert event.typed is not None


def test_epoch_millis_are_accepted() -> None:
    assert parse_event(raw(ts=1772366400000)).ts == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "ts",
    [
        "9999-12-31T23:59:59Z",  # a timer's wait added would overflow
        "2100-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        -1,
        1e300,  # beyond any clock: once an OverflowError out of the parser
        2**53 + 1,
    ],
)
def test_times_outside_the_accepted_window_are_a_schema_violation(ts: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw(ts=ts))
    assert (caught.value.reason, caught.value.detail[:3]) == ("schema_violation", "ts:")


def test_the_edges_of_the_window_are_accepted() -> None:
    assert parse_event(raw(ts=0)).ts == datetime(1970, 1, 1, tzinfo=UTC)
    last = parse_event(raw(ts="2099-12-31T23:59:59.999Z")).ts
    assert last == datetime(2099, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def test_a_value_over_the_size_limit_is_refused_unparsed() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(b"{" * 101, max_bytes=100)  # not JSON either: the size decides first
    assert caught.value.reason == "too_large"
    assert parse_event(raw(), max_bytes=len(raw())).user_id == "u1"


def test_custom_lowercase_type_has_free_properties() -> None:
    event = parse_event(raw(type="price.alert", properties={"anything": [1, 2]}))
    assert event.typed is None
    assert event.properties == {"anything": [1, 2]}


@pytest.mark.parametrize(
    ("value", "reason", "mentions"),
    [
        (b"{not json", "invalid_json", "JSON"),
        (b"[1, 2]", "schema_violation", "object"),
        (raw(user_id=None), "schema_violation", "user_id"),
        (raw(ts="2026-03-01T12:00:00"), "schema_violation", "time zone"),
        (raw(type="Page View"), "schema_violation", "type"),
        (
            raw(type="add_to_cart", properties={"product_id": "p1"}),
            "schema_violation",
            "properties.price",
        ),
        (raw(type="signup", properties={"email": "nope"}), "schema_violation", "properties.email"),
        (
            raw(type="signup", properties={"email": "a@b.c", "timezone": "Mars/Base"}),
            "schema_violation",
            "Mars/Base",
        ),
        (
            raw(type="profile_update", properties={"traits": {"timezone": "Mars/Base"}}),
            "schema_violation",
            "properties.traits: Value error, unknown IANA time zone 'Mars/Base'",
        ),
        (
            raw(type="profile_update", properties={"traits": {"timezone": 3}}),
            "schema_violation",
            "properties.traits",
        ),
    ],
)
def test_contract_violations_name_the_reason_and_field(
    value: bytes, reason: str, mentions: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(value)
    assert caught.value.reason == reason
    assert mentions in caught.value.detail


def test_signup_address_is_normalised_by_the_contract() -> None:
    event = parse_event(raw(type="signup", properties={"email": " Ann@Example.COM "}))
    assert isinstance(event.typed, Signup)
    assert event.typed.email == "Ann@example.com"


@pytest.mark.parametrize("email", ["not an email", "a@b", "", "ann@", "Ann <ann@example.com>"])
def test_signup_with_an_invalid_address_is_a_schema_violation(email: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw(type="signup", properties={"email": email}))
    assert caught.value.reason == "schema_violation"
    assert caught.value.detail.startswith("properties.email: ")


def test_key_must_match_user_id() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw(), key=b"someone-else")
    assert caught.value.reason == "key_mismatch"


def test_unknown_extra_top_level_field_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="surprise"):
        parse_event(raw(surprise=1))


# --- consent and unsubscribe ------------------------------------------------------------


def test_consent_and_unsubscribe_may_name_a_category_and_a_source() -> None:
    consent = parse_event(
        raw(
            type="consent",
            properties={"channel": "email", "granted": False, "category": "offers", "x": 1},
        )
    )
    assert isinstance(consent.typed, Consent)
    assert (consent.typed.category, consent.typed.source) == ("offers", None)
    assert consent.typed.model_extra == {"x": 1}  # unknown extra keys are kept
    unsubscribe = parse_event(
        raw(type="unsubscribe", properties={"category": "news_2", "source": "unsubscribe_link"})
    )
    assert isinstance(unsubscribe.typed, Unsubscribe)
    assert (unsubscribe.typed.category, unsubscribe.typed.source) == ("news_2", "unsubscribe_link")
    bare = parse_event(raw(type="unsubscribe", properties={}))
    assert isinstance(bare.typed, Unsubscribe) and bare.typed.category is None


@pytest.mark.parametrize(
    ("kind", "props", "mentions"),
    [
        ("consent", {"channel": "email", "granted": True, "category": "Offers"}, "category"),
        ("consent", {"channel": "email", "granted": True, "category": ""}, "category"),
        ("unsubscribe", {"category": "x" * 41}, "properties.category"),
        ("unsubscribe", {"category": "news-letter"}, "properties.category"),
        ("unsubscribe", {"source": "s" * 41}, "properties.source"),
        ("consent", {"channel": "email", "granted": True, "source": 7}, "properties.source"),
    ],
)
def test_bad_categories_and_sources_are_schema_violations(
    kind: str, props: dict[str, object], mentions: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw(type=kind, properties=props))
    assert caught.value.reason == "schema_violation"
    assert mentions in caught.value.detail


def test_the_json_schema_describes_the_unsubscribe_properties() -> None:
    [branch] = [
        b["then"]["properties"]["properties"]
        for b in event_json_schema()["allOf"]
        if b["if"]["properties"]["type"]["const"] == "unsubscribe"
    ]
    assert set(branch["properties"]) == {"category", "source"}


@pytest.mark.parametrize("total", ["inf", "nan", 1e200, -1])
def test_amounts_that_would_break_revenue_sums_are_refused(total: object) -> None:
    raw = orjson.dumps(
        {
            "event_id": "e1",
            "type": "purchase",
            "user_id": "u1",
            "ts": "2026-03-02T12:00:00Z",
            "properties": {"order_id": "o1", "total": total},
        }
    )
    with pytest.raises(InvalidEvent, match="total"):
        parse_event(raw)


# --- bounce -----------------------------------------------------------------------------


def test_a_bounce_as_the_mailer_publishes_it() -> None:
    event = parse_event(
        raw(
            event_id="bounce-r1",
            type="bounce",
            properties={
                "email": " Ann@Example.COM ",
                "kind": "hard",
                "code": 550,
                "detail": "5.1.1 <Ann@example.com>: Recipient address rejected",
                "message_id": "r1",
            },
        ),
        key=b"u1",
    )
    assert isinstance(event.typed, Bounce)
    assert event.typed.email == "Ann@example.com"  # normalised like a signup's
    assert (event.typed.kind, event.typed.code, event.typed.message_id) == ("hard", 550, "r1")


def test_a_bounce_is_hard_unless_it_says_soft_and_needs_only_the_address() -> None:
    event = parse_event(raw(type="bounce", properties={"email": "ann@example.com"}))
    assert isinstance(event.typed, Bounce)
    assert (event.typed.kind, event.typed.code, event.typed.detail) == ("hard", None, None)
    soft = parse_event(raw(type="bounce", properties={"email": "ann@example.com", "kind": "soft"}))
    assert isinstance(soft.typed, Bounce) and soft.typed.kind == "soft"


@pytest.mark.parametrize(
    ("props", "mentions"),
    [
        ({}, "properties.email"),
        ({"email": "not an email"}, "properties.email"),
        ({"email": "ann@example.com", "kind": "permanent"}, "properties.kind"),
        ({"email": "ann@example.com", "code": 600}, "properties.code"),
        ({"email": "ann@example.com", "code": 199}, "properties.code"),
        ({"email": "ann@example.com", "code": "five fifty"}, "properties.code"),
        ({"email": "ann@example.com", "detail": "x" * 501}, "properties.detail"),
        ({"email": "ann@example.com", "message_id": 7}, "properties.message_id"),
    ],
)
def test_bad_bounces_are_schema_violations(props: dict[str, object], mentions: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw(type="bounce", properties=props))
    assert caught.value.reason == "schema_violation"
    assert mentions in caught.value.detail


def test_the_json_schema_describes_the_bounce_properties() -> None:
    [branch] = [
        b["then"]["properties"]["properties"]
        for b in event_json_schema()["allOf"]
        if b["if"]["properties"]["type"]["const"] == "bounce"
    ]
    assert set(branch["properties"]) == {"email", "kind", "code", "detail", "message_id"}
    assert branch["required"] == ["email"]
    assert branch["properties"]["email"]["format"] == "idn-email"

"""The send request's unsubscribe link and headers, and what decisions say about a user."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from profiles import (
    NO_LOOKUPS,
    Event,
    InMemoryProfileStore,
    InMemoryTimerStore,
    Profile,
    Snapshot,
    UnsubscribeSigner,
)
from triggers import ConfigError, Engine, Incoming, InMemoryOutbox, SendRequest, load_rules
from triggers.compose import compose
from triggers.firing import Firing
from triggers.fold import apply_user_events

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEY = b"unsubscribe-test-key-0123456789abcdef"

RULES = """\
version: 1
sender:
  from_email: hello@shop.example
  unsubscribe_url: https://shop.example/u/{token}?via=mail
brand: {address: "The Shop, 1 Main Street, Springfield"}
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
  - id: receipt
    kind: on_event
    events: [purchase]
    category: transactional
    template: welcome
"""


def signup(user: str, at: datetime = T0, **extra: Any) -> Event:
    props = {"email": f"{user}@example.com", "consent": {"email": True}, **extra}
    return Event(event_id=f"{user}-signup", type="signup", user_id=user, ts=at, properties=props)


def token_of(send: SendRequest) -> str:
    url = send.headers["List-Unsubscribe"]
    assert url.startswith("<https://shop.example/u/") and url.endswith("?via=mail>")
    return url.removeprefix("<https://shop.example/u/").removesuffix("?via=mail>")


@pytest.fixture
def config(make_config: Callable[[str], Path]) -> Path:
    return make_config(RULES)


def test_a_marketing_send_carries_a_one_click_link_that_verifies_to_its_user(
    config: Path,
) -> None:
    signer = UnsubscribeSigner([KEY])
    rules = load_rules(config, unsubscribe=signer)
    step = apply_user_events(rules, Snapshot(None), [(signup("ada"), 0)], T0)
    [send] = step.sends
    assert send.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = token_of(send)
    request = signer.verify(token, T0 + timedelta(days=1))
    assert (request.user_id, request.category, request.issued) == ("ada", None, T0)
    assert f"https://shop.example/u/{token}?via=mail" in send.text  # {{ unsubscribe_url }}
    assert f"https://shop.example/u/{token}?via=mail" in send.html


def test_transactional_mail_has_no_unsubscribe_headers(config: Path) -> None:
    rules = load_rules(config)
    purchase = Event(
        event_id="p1",
        type="purchase",
        user_id="ada",
        ts=T0,
        properties={"order_id": "o", "total": 5.0},
    )
    step = apply_user_events(rules, Snapshot(None), [(signup("ada"), 0), (purchase, 0)], T0)
    receipt = [s for s in step.sends if s.rule_id == "receipt"]
    assert [s.headers for s in receipt] == [{}]


def test_without_a_configured_signer_links_say_they_are_for_development(config: Path) -> None:
    rules = load_rules(config)
    [send] = apply_user_events(rules, Snapshot(None), [(signup("ada"), 0)], T0).sends
    assert token_of(send).startswith("dev.")
    assert rules.unsubscribe.verify(token_of(send), T0).user_id == "ada"


def test_the_token_changes_with_the_moment_and_the_request_id_does_not(config: Path) -> None:
    """A redelivered event handled later signs a new link for the same request."""
    rules = load_rules(config, unsubscribe=UnsubscribeSigner([KEY]))
    event = signup("ada")
    first = apply_user_events(rules, Snapshot(None), [(event, 0)], T0).sends
    later = apply_user_events(rules, Snapshot(None), [(event, 0)], T0 + timedelta(minutes=3))
    assert [s.request_id for s in first] == [s.request_id for s in later.sends]
    assert token_of(first[0]) != token_of(later.sends[0])


def test_the_token_names_the_rules_subscription(config: Path) -> None:
    signer = UnsubscribeSigner([KEY])
    rules = load_rules(config, unsubscribe=signer)
    welcome = rules.rule("welcome")
    assert welcome is not None
    rule: Any = welcome.model_copy(update={"subscription": "offers"})
    profile = Profile(user_id="a{b}:c", first_seen=T0, last_seen=T0)
    url = compose(rules, profile, Firing(rule, "a{b}:c", {}), T0, NO_LOOKUPS).unsubscribe_url
    token = url.removeprefix("https://shop.example/u/").removesuffix("?via=mail")
    assert signer.verify(token, T0).category == "offers"
    assert signer.verify(token, T0).user_id == "a{b}:c"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://shop.example/unsubscribe?user={user_id}",
            "{user_id} is refused: anyone could unsubscribe anyone",
        ),
        ("https://shop.example/u/{token}/{user_id}", "{user_id} is refused"),
        ("https://shop.example/unsubscribe", "must contain {token}"),
        ("https://shop.example/u/{token}?c={category}", "unknown placeholder {category}"),
        ("http://shop.example/u/{token}", "must be an https:// URL"),
    ],
)
def test_validate_refuses_an_unsigned_unsubscribe_url(
    make_config: Callable[[str], Path], url: str, message: str
) -> None:
    config = make_config(RULES.replace("https://shop.example/u/{token}?via=mail", url))
    with pytest.raises(ConfigError) as caught:
        load_rules(config)
    [issue] = caught.value.issues
    assert str(issue).startswith(f"{config / 'rules.yaml'}:4: sender.unsubscribe_url: ")
    assert message in str(issue)


# --- no address or name on the decisions topic ----------------------------------------------


def message(offset: int, kind: str, user: str, **props: Any) -> Incoming:
    event = {
        "event_id": f"{user}-{offset}",
        "type": kind,
        "user_id": user,
        "ts": (T0 + timedelta(minutes=offset)).isoformat(),
        "properties": props,
    }
    return Incoming(orjson.dumps(event), user.encode(), "events", 0, offset)


async def test_published_decisions_carry_no_address_or_name(
    make_config: Callable[[str], Path],
) -> None:
    config = make_config(RULES)
    broken = config / "templates" / "broken"
    broken.mkdir()
    (broken / "subject.txt").write_text("Hi")
    (broken / "body.txt").write_text("")
    (broken / "body.html").write_text("{{ (profile.email ~ ' ' ~ profile.last_name) | money }}")
    rules_yaml = config / "rules.yaml"
    rules_yaml.write_text(
        rules_yaml.read_text()
        + "  - id: broken\n    kind: on_event\n    events: [page_view]\n    template: broken\n"
    )
    outbox = InMemoryOutbox()
    engine = Engine(
        rules=load_rules(config),
        profiles=InMemoryProfileStore(),
        timers=InMemoryTimerStore(),
        outbox=outbox,
        clock=lambda: T0,
    )
    person = {"first_name": "Valentina", "last_name": "Tereshkova"}
    yes = {"email": True}
    await engine.process(
        [
            message(1, "signup", "valid", email="valentina@example.com", consent=yes, **person),
            message(2, "page_view", "valid", url="/"),  # the broken template: render_error
            message(3, "signup", "invalid", email="olga@example.com", consent=yes, **person),
            message(4, "profile_update", "invalid", traits={"email": "olga.at.example.com"}),
            message(5, "page_view", "invalid", url="/"),  # invalid_email
            message(6, "purchase", "invalid", order_id="o", total=5.0),
        ]
    )
    reasons = {(d.user_id, d.reason) for d in outbox.decisions}
    assert {("valid", "ok"), ("valid", "render_error"), ("invalid", "invalid_email")} <= reasons
    published = b"\n".join(d.to_json() for d in outbox.decisions).decode()
    for personal in ("valentina", "olga", "Valentina", "Tereshkova"):
        assert personal not in published, personal
    [error] = [d.detail for d in outbox.decisions if d.reason == "render_error"]
    assert error.endswith("could not convert string to float: 'v***@example.com T***'")
    # the send requests carry the address: the mailer needs it (welcome, before the change)
    assert [s.to for s in outbox.sends] == ["valentina@example.com", "olga@example.com"]

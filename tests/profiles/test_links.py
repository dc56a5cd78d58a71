"""Signed click links and open pixels: round trip, tampering, keys, URLs, sizes, events."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles import (
    ClickLink,
    InvalidLink,
    InvalidToken,
    LinkSigner,
    OpenPixel,
    ProfileError,
    UnsubscribeSigner,
    click_event,
    development_link_signer,
    development_signer,
    open_event,
    parse_event,
)
from profiles.events import Event
from profiles.links import CLICK_WINDOW, MAX_TOKEN_LENGTH, MAX_URL_LENGTH, PURPOSE, signable
from profiles.unsubscribe import DEVELOPMENT_KEY, MIN_KEY_BYTES

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
OLD_KEY = b"o" * 40
SIGNER = LinkSigner([KEY])
RID = "3f2a9c0d8e7b6a5f4e3d2c1b0a998877"
URL = "https://shop.example/p/tent?size=2&colour=green#reviews"

user_ids = st.one_of(
    st.text(min_size=1, max_size=200),
    st.text(alphabet="{}:/?#%&=+ .@", min_size=1, max_size=20),
    st.just("\U0001f600" * 200),  # 200 four-byte characters: the longest user id
)
message_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
urls = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[A-Za-z0-9.-][!-~]{0,200}", fullmatch=True),
)


def reason(token: str, signer: LinkSigner = SIGNER, *, kind: str = "click") -> str:
    with pytest.raises(InvalidLink) as caught:
        if kind == "click":
            signer.verify_click(token)
        else:
            signer.verify_open(token)
    return caught.value.reason


@given(user=user_ids, message=message_ids, url=urls)
def test_a_click_token_verifies_to_what_was_signed(user: str, message: str, url: str) -> None:
    token = SIGNER.sign_click(user, message, url)
    link = SIGNER.verify_click(token)
    assert (link.user_id, link.message_id, link.url, link.token) == (user, message, url, token)
    assert len(token) <= MAX_TOKEN_LENGTH
    assert token.replace("-", "").replace("_", "").isalnum() and token.isascii()
    assert SIGNER.sign_click(user, message, url) == token  # no issue time: always the same


@given(user=user_ids, message=message_ids)
def test_an_open_token_verifies_to_what_was_signed(user: str, message: str) -> None:
    token = SIGNER.sign_open(user, message)
    assert SIGNER.verify_open(token) == OpenPixel(user, message, token)


def test_a_token_stays_short() -> None:
    uuid_like = "0f8fad5b-d9cb-469f-a165-70867728950e"
    url = "https://shop.example/p/" + "x" * 37  # 60 characters
    assert len(SIGNER.sign_click(uuid_like, RID, url)) == 220
    assert len(SIGNER.sign_open(uuid_like, RID)) == 140
    longest = SIGNER.sign_click("\U0001f600" * 200, "m" * 64, "https://" + "x" * 1992)
    assert len(longest) == MAX_TOKEN_LENGTH - len("dev.")


@given(user=user_ids, url=urls, data=st.data())
def test_any_changed_character_fails(user: str, url: str, data: st.DataObject) -> None:
    token = SIGNER.sign_click(user, RID, url)
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %"
    other = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[index]))
    tampered = token[:index] + other + token[index + 1 :]
    assert reason(tampered) in ("malformed", "bad_signature")


@given(user=user_ids, cut=st.integers(1, 60))
def test_a_truncated_or_extended_token_fails(user: str, cut: int) -> None:
    token = SIGNER.sign_click(user, RID, URL)
    assert reason(token[:-cut]) in ("malformed", "bad_signature")
    assert reason(token + "A" * cut) in ("malformed", "bad_signature")


def test_the_parts_are_bound_together() -> None:
    """A URL cannot be swapped into another token's signature."""
    shop = SIGNER.sign_click("ada", RID, "https://shop.example/")
    evil = SIGNER.sign_click("ada", RID, "https://evil.example/")
    assert len(shop) == len(evil)
    assert reason(evil[:-43] + shop[-43:]) == "bad_signature"


@pytest.mark.parametrize(
    "token",
    ["", "=", "A", "AAAA", "not a token", "a.b.c", "dev.", "AQ==", "\u00e9" * 10, "%41%41"],
)
def test_garbage_is_malformed(token: str) -> None:
    assert reason(token) == "malformed"
    assert reason(token, kind="open") == "malformed"


def test_oversize_input_is_refused_before_decoding() -> None:
    assert reason("A" * (MAX_TOKEN_LENGTH + 1)) == "oversize"
    assert reason("A" * 10_000_000, kind="open") == "oversize"


def test_a_token_of_another_key_fails() -> None:
    token = LinkSigner([OLD_KEY]).sign_click("ada", RID, URL)
    assert reason(token) == "bad_signature"


def test_rotation_the_first_key_signs_every_key_verifies() -> None:
    old = LinkSigner([OLD_KEY])
    rotated = LinkSigner([KEY, OLD_KEY])
    before, after = old.sign_click("ada", RID, URL), rotated.sign_click("ada", RID, URL)
    assert rotated.verify_click(before).url == URL  # links in old mail keep working
    assert rotated.verify_click(after).url == URL
    assert SIGNER.verify_click(after).url == URL  # signed with the new key
    assert reason(after, old) == "bad_signature"


def test_a_kind_is_not_the_other() -> None:
    assert reason(SIGNER.sign_open("ada", RID)) == "wrong_kind"
    assert reason(SIGNER.sign_click("ada", RID, URL), kind="open") == "wrong_kind"


def test_link_keys_derive_from_the_unsubscribe_keys_and_are_not_them() -> None:
    unsubscribe = UnsubscribeSigner([KEY, OLD_KEY])
    derived = LinkSigner.derived_from(unsubscribe)
    assert derived.sign_click("ada", RID, URL) == LinkSigner([KEY, OLD_KEY]).sign_click(
        "ada", RID, URL
    )
    assert derived.verify_click(LinkSigner([OLD_KEY]).sign_click("ada", RID, URL)).url == URL
    # neither token passes for the other
    with pytest.raises(InvalidToken):
        unsubscribe.verify(SIGNER.sign_click("ada", RID, URL), T0)
    assert reason(unsubscribe.sign("ada", None, T0)) in ("malformed", "bad_signature")
    assert unsubscribe.derive(PURPOSE) != unsubscribe.derive(b"another purpose")


@pytest.mark.parametrize("label", [b"", b"\x01anything", b"dev.anything"])
def test_a_purpose_that_could_be_signed_as_a_token_is_refused(label: bytes) -> None:
    """A derived key is HMAC(key, label): were label the start of a token, an
    unsubscribe token's MAC could be someone's link key."""
    with pytest.raises(ValueError, match="must not look like the start of a token"):
        UnsubscribeSigner([KEY]).derive(label)


def test_development_tokens_say_so_and_cannot_pass_as_others() -> None:
    dev = development_link_signer()
    token = dev.sign_click("ada", RID, URL)
    assert token.startswith("dev.") and dev.development and not SIGNER.development
    assert dev.verify_click(token).url == URL
    assert reason(token.removeprefix("dev."), dev) == "bad_signature"
    assert reason(token) == "bad_signature"
    assert reason("dev." + SIGNER.sign_click("ada", RID, URL), dev) == "bad_signature"
    assert LinkSigner.derived_from(development_signer()).sign_click("ada", RID, URL) == token
    assert LinkSigner([DEVELOPMENT_KEY]).sign_open("ada", RID).startswith("dev.")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript://%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "mailto:ada@example.com",
        "tel:+441234",
        "ftp://shop.example/file",
        "#top",
        "/relative/path",
        "//shop.example/no-scheme",
        "https://",
        "https:///path-without-host",
        "https://\\evil.example",
        " https://shop.example/",  # the caller strips what HTML strips
        "https://shop.example/a b",
        "https://shop.example/\r\nSet-Cookie: x=1",
        "https://shop.example/\t",
        "https://shop.example/caf\u00e9",
        "https://shop.example/" + "x" * (MAX_URL_LENGTH - 20),
    ],
)
def test_only_http_urls_of_printable_ascii_are_signed(url: str) -> None:
    assert not signable(url)
    with pytest.raises(ValueError, match="only http"):
        SIGNER.sign_click("ada", RID, url)


def test_the_longest_url_is_signed() -> None:
    url = "https://shop.example/" + "x" * (MAX_URL_LENGTH - 21)
    assert len(url) == MAX_URL_LENGTH and signable(url)
    assert SIGNER.verify_click(SIGNER.sign_click("ada", RID, url)).url == url


def test_signing_refuses_what_a_token_cannot_carry() -> None:
    for user, message in [
        ("", RID),
        ("x" * 201, RID),
        ("\ud800", RID),  # a lone surrogate has no UTF-8 form
        ("ada", ""),
        ("ada", "m" * 65),
        ("ada", "with space"),
        ("ada", "caf\u00e9"),
    ]:
        with pytest.raises(ValueError):
            SIGNER.sign_click(user, message, URL)
        with pytest.raises(ValueError):
            SIGNER.sign_open(user, message)


def test_keys_must_be_long_enough_and_never_show() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_KEY_BYTES} bytes"):
        LinkSigner([b"short"])
    with pytest.raises(ValueError, match="at least one key"):
        LinkSigner([])
    assert "k" * 8 not in repr(LinkSigner([KEY, OLD_KEY]))
    link = SIGNER.verify_click(SIGNER.sign_click("ada", RID, URL))
    assert link.token not in repr(link)


def test_invalid_link_is_a_profile_error() -> None:
    assert issubclass(InvalidLink, ProfileError)
    assert InvalidLink("oversize", "too long").reason == "oversize"


# --- events -------------------------------------------------------------------------------


def test_the_click_event() -> None:
    link = SIGNER.verify_click(SIGNER.sign_click("ada", RID, URL))
    now = T0 + timedelta(seconds=30)
    event = click_event(link, now)
    assert event["event_id"].startswith("click-") and len(event["event_id"]) == 38
    assert {k: v for k, v in event.items() if k != "event_id"} == {
        "type": "email_click",
        "user_id": "ada",
        "ts": "2026-03-02T12:00:30+00:00",
        "properties": {"message_id": RID, "url": URL, "source": "click_link"},
    }
    parsed = parse_event(orjson.dumps(event), key=b"ada")
    assert parsed.type == "email_click" and parsed.typed is not None


def test_a_double_click_is_one_event_and_a_later_click_another() -> None:
    link = SIGNER.verify_click(SIGNER.sign_click("ada", RID, URL))
    first = click_event(link, T0)["event_id"]
    assert click_event(link, T0 + timedelta(seconds=2))["event_id"] == first
    assert click_event(link, T0 + CLICK_WINDOW - timedelta(seconds=1))["event_id"] == first
    assert click_event(link, T0 + CLICK_WINDOW)["event_id"] != first
    assert click_event(link, T0 + timedelta(days=7))["event_id"] != first
    # the event names what was clicked, not the key that signed it
    rotated = LinkSigner([OLD_KEY, KEY]).verify_click(
        LinkSigner([OLD_KEY]).sign_click("ada", RID, URL)
    )
    assert click_event(rotated, T0)["event_id"] == first
    other = ClickLink("ada", RID, "https://shop.example/other", "t")
    assert click_event(other, T0)["event_id"] != first


def test_the_open_event_counts_a_mail_once() -> None:
    pixel = SIGNER.verify_open(SIGNER.sign_open("ada", RID))
    event = open_event(pixel, T0)
    assert event["type"] == "email_open" and event["user_id"] == "ada"
    assert event["properties"] == {"message_id": RID, "source": "open_pixel"}
    assert open_event(pixel, T0 + timedelta(days=1))["event_id"] == event["event_id"]
    # a click says the mail was opened: the same open, whichever comes first
    clicked = open_event(ClickLink("ada", RID, URL, "t"), T0)
    assert clicked["event_id"] == event["event_id"]
    assert clicked["properties"]["source"] == "click_link"
    assert open_event(OpenPixel("bob", RID, "t"), T0)["event_id"] != event["event_id"]
    assert isinstance(parse_event(orjson.dumps(event), key=b"ada"), Event)


def test_the_verifier_needs_no_services_or_settings() -> None:
    """A collector imports it with no NUDGE_* settings, broker or Redis about."""
    code = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from profiles.links import LinkSigner, click_event\n"
        "s = LinkSigner([b'k' * 32])\n"
        "link = s.verify_click(s.sign_click('ada', 'm1', 'https://shop.example/'))\n"
        "print(click_event(link, datetime.now(UTC))['user_id'])\n"
        "heavy = {'faust', 'aiokafka', 'streams', 'triggers', 'render', 'numpy'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == ["ada", "[]"]

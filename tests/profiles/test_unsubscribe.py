"""Signed unsubscribe tokens: round trip, tampering, keys, expiry, sizes, the event."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles import (
    InvalidToken,
    ProfileError,
    UnsubscribeRequest,
    UnsubscribeSigner,
    development_signer,
    parse_event,
    unsubscribe_event,
)
from profiles.events import Event
from profiles.unsubscribe import (
    CLOCK_SKEW,
    DEFAULT_TTL,
    DEVELOPMENT_KEY,
    MAX_TOKEN_LENGTH,
    MIN_KEY_BYTES,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
OLD_KEY = b"o" * 40
SIGNER = UnsubscribeSigner([KEY], timedelta(days=60))

user_ids = st.one_of(
    st.text(min_size=1, max_size=200),
    st.text(alphabet="{}:/?#%&=+ .@", min_size=1, max_size=20),
    st.just("é" * 200),
    st.just("\U0001f600" * 200),  # 200 four-byte characters: the longest user id
)
categories = st.one_of(st.none(), st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True))
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2400, 1, 1), timezones=st.just(UTC)
)


def reason(signer: UnsubscribeSigner, token: str, now: datetime = T0) -> str:
    with pytest.raises(InvalidToken) as caught:
        signer.verify(token, now)
    return caught.value.reason


@given(user=user_ids, category=categories, issued=moments)
def test_a_token_verifies_to_what_was_signed(
    user: str, category: str | None, issued: datetime
) -> None:
    token = SIGNER.sign(user, category, issued)
    request = SIGNER.verify(token, issued)
    assert (request.user_id, request.category) == (user, category)
    assert request.issued == issued.replace(microsecond=0)  # whole seconds
    assert request.token == token
    assert len(token) <= MAX_TOKEN_LENGTH
    assert token.replace("-", "").replace("_", "").isalnum() and token.isascii()


def test_a_token_stays_short() -> None:
    uuid_like = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert len(SIGNER.sign(uuid_like, "reminders", T0)) == 112
    assert len(SIGNER.sign("x" * 200, "x" * 40, T0)) <= 400


@given(user=user_ids, category=categories, data=st.data())
def test_any_changed_character_fails(user: str, category: str | None, data: st.DataObject) -> None:
    token = SIGNER.sign(user, category, T0)
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %"
    other = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[index]))
    tampered = token[:index] + other + token[index + 1 :]
    assert reason(SIGNER, tampered) in ("malformed", "bad_signature")


@given(user=user_ids, cut=st.integers(1, 60))
def test_a_truncated_or_extended_token_fails(user: str, cut: int) -> None:
    token = SIGNER.sign(user, None, T0)
    assert reason(SIGNER, token[:-cut]) in ("malformed", "bad_signature")
    assert reason(SIGNER, token + "A" * cut) in ("malformed", "bad_signature")


def test_the_parts_are_bound_together() -> None:
    """A user id or category cannot be swapped into another token's signature."""
    ada, bob = SIGNER.sign("ada", "offers", T0), SIGNER.sign("bob", "offers", T0)
    assert ada[-43:] != bob[-43:]
    assert reason(SIGNER, ada[:-43] + bob[-43:]) == "bad_signature"


@pytest.mark.parametrize(
    "token",
    ["", "=", "A", "AAAA", "not a token", "a.b.c", "dev.", "AQ==", "\u00e9" * 10, "%41%41"],
)
def test_garbage_is_malformed(token: str) -> None:
    assert reason(SIGNER, token) == "malformed"


def test_oversize_input_is_refused_before_decoding() -> None:
    assert reason(SIGNER, "A" * (MAX_TOKEN_LENGTH + 1)) == "malformed"
    assert reason(SIGNER, "A" * 10_000_000) == "malformed"


def test_a_token_of_another_key_fails() -> None:
    token = UnsubscribeSigner([OLD_KEY]).sign("ada", None, T0)
    assert reason(SIGNER, token) == "bad_signature"


def test_rotation_the_first_key_signs_every_key_verifies() -> None:
    old = UnsubscribeSigner([OLD_KEY])
    rotated = UnsubscribeSigner([KEY, OLD_KEY])
    before = old.sign("ada", "offers", T0)
    after = rotated.sign("ada", "offers", T0)
    assert rotated.verify(before, T0).user_id == "ada"  # old links keep working
    assert rotated.verify(after, T0).user_id == "ada"
    assert SIGNER.verify(after, T0).user_id == "ada"  # signed with the new key
    assert reason(old, after) == "bad_signature"


def test_expiry_and_clock_skew() -> None:
    token = SIGNER.sign("ada", None, T0)
    assert SIGNER.verify(token, T0 + timedelta(days=60)).user_id == "ada"
    assert reason(SIGNER, token, T0 + timedelta(days=60, seconds=1)) == "expired"
    assert SIGNER.verify(token, T0 - CLOCK_SKEW).user_id == "ada"  # the verifier's clock is late
    assert reason(SIGNER, token, T0 - CLOCK_SKEW - timedelta(seconds=1)) == "from_future"
    assert timedelta(days=60) == DEFAULT_TTL


def test_development_tokens_say_so_and_cannot_pass_as_others() -> None:
    dev = development_signer()
    token = dev.sign("ada", None, T0)
    assert token.startswith("dev.") and dev.development and not SIGNER.development
    assert dev.verify(token, T0).user_id == "ada"
    assert reason(dev, token.removeprefix("dev.")) == "bad_signature"
    assert reason(SIGNER, token) == "bad_signature"
    assert reason(dev, "dev." + SIGNER.sign("ada", None, T0)) == "bad_signature"
    assert UnsubscribeSigner([DEVELOPMENT_KEY]).sign("ada", None, T0) == token


def test_signing_refuses_what_a_token_cannot_carry() -> None:
    for user, category, issued in [
        ("", None, T0),
        ("x" * 201, None, T0),
        ("\ud800", None, T0),  # a lone surrogate has no UTF-8 form
        ("ada", "Offers", T0),
        ("ada", "", T0),
        ("ada", "x" * 41, T0),
        ("ada", None, datetime(2026, 1, 1)),  # no zone
        ("ada", None, datetime(1969, 12, 31, tzinfo=UTC)),
    ]:
        with pytest.raises(ValueError):
            SIGNER.sign(user, category, issued)


def test_keys_must_be_long_enough_and_never_show() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_KEY_BYTES} bytes"):
        UnsubscribeSigner([b"short"])
    with pytest.raises(ValueError, match="at least one key"):
        UnsubscribeSigner([])
    assert "k" * 8 not in repr(UnsubscribeSigner([KEY, OLD_KEY]))
    request = SIGNER.verify(SIGNER.sign("ada", None, T0), T0)
    assert request.token not in repr(request)


def test_invalid_token_is_a_profile_error() -> None:
    assert issubclass(InvalidToken, ProfileError)
    assert InvalidToken("expired", "issued then").reason == "expired"


def test_the_event_of_a_request() -> None:
    token = SIGNER.sign("ada", "offers", T0)
    request = SIGNER.verify(token, T0)
    now = T0 + timedelta(hours=1)
    event = unsubscribe_event(request, now)
    assert event == {
        "event_id": f"unsubscribe-{hashlib.sha256(token.encode()).hexdigest()[:32]}",
        "type": "unsubscribe",
        "user_id": "ada",
        "ts": "2026-03-02T13:00:00+00:00",
        "properties": {"category": "offers", "source": "unsubscribe_link"},
    }
    assert unsubscribe_event(request, now + timedelta(seconds=5))["event_id"] == event["event_id"]
    everything = unsubscribe_event(SIGNER.verify(SIGNER.sign("ada", None, T0), T0), now)
    assert everything["properties"] == {"source": "unsubscribe_link"}
    assert everything["event_id"] != event["event_id"]
    parsed = parse_event(orjson.dumps(event), key=b"ada")
    assert isinstance(parsed, Event) and parsed.type == "unsubscribe"


def test_the_signer_limits_match_the_event_contract() -> None:
    meta = Event.model_fields["user_id"].metadata
    assert any(getattr(m, "max_length", None) == 200 for m in meta)


def test_the_verifier_needs_no_services_or_settings() -> None:
    """A web app imports it with no NUDGE_* settings, broker or Redis about."""
    code = (
        "import sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from profiles.unsubscribe import UnsubscribeSigner, unsubscribe_event\n"
        "s = UnsubscribeSigner([b'k' * 32], timedelta(days=1))\n"
        "now = datetime.now(UTC)\n"
        "print(unsubscribe_event(s.verify(s.sign('ada', None, now), now), now)['user_id'])\n"
        "heavy = {'faust', 'aiokafka', 'streams', 'triggers', 'render', 'numpy'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == ["ada", "[]"]


def test_request_is_a_plain_value() -> None:
    request = UnsubscribeRequest("ada", None, T0, "t")
    assert request == UnsubscribeRequest("ada", None, T0, "t")

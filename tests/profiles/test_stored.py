"""The stored form of a profile: JSON deflated against a preset dictionary, with the forms
stored before (deflated with no dictionary, plain JSON) still read."""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime

import orjson
import pytest

from profiles import CorruptProfile, Profile
from profiles.stored import DEFLATED, DEFLATED_V1, DICTIONARY_V1, dump_profile, load_profile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def busy_profile() -> Profile:
    profile = Profile(user_id="u1", first_seen=T0, last_seen=T0, email="a@example.com")
    for n in range(20):
        profile.record_decision(
            {"rule_id": "browse", "outcome": "suppressed", "reason": "already_sent",
             "trigger_event_id": f"u1-{n}", "at": "2026-03-01T12:00:00Z"}
        )  # fmt: skip
    return profile


def deflated_without_dictionary(profile: Profile) -> bytes:
    """The form written before the dictionary."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
    return DEFLATED + deflate.compress(profile.model_dump_json().encode()) + deflate.flush()


def test_a_profile_is_stored_deflated_and_round_trips() -> None:
    profile = busy_profile()
    stored = dump_profile(profile)
    assert stored[:1] == DEFLATED_V1
    assert len(stored) * 3 < len(profile.model_dump_json())
    assert load_profile("u1", stored) == profile


def test_the_dictionary_stores_a_profile_in_fewer_bytes_than_deflate_alone() -> None:
    profile = busy_profile()
    profile.email_consent, profile.first_name, profile.locale = True, "Ada", "en"
    assert len(dump_profile(profile)) < 0.8 * len(deflated_without_dictionary(profile))


def test_a_profile_deflated_without_the_dictionary_still_loads() -> None:
    profile = busy_profile()
    assert load_profile("u1", deflated_without_dictionary(profile)) == profile


def test_the_dictionary_is_the_one_profiles_were_stored_with() -> None:
    """Profiles in Redis can only be read with the dictionary they were written with: a
    regenerated one needs a new file and form byte (see ``profiles.stored``)."""
    digest = "6726199dea562a824d98ff7e5b14664dc097369176abf621957a15e57c97ed8e"
    assert hashlib.sha256(DICTIONARY_V1).hexdigest() == digest


def test_a_profile_stored_as_plain_json_still_loads() -> None:
    profile = busy_profile()
    assert load_profile("u1", profile.model_dump_json().encode()) == profile


def test_a_profile_stored_before_bounces_loads_deliverable() -> None:
    document = busy_profile().model_dump(mode="json")
    del document["undeliverable"], document["undeliverable_at"]
    deflate = zlib.compressobj(1, zlib.DEFLATED, -12)
    stored = DEFLATED + deflate.compress(orjson.dumps(document)) + deflate.flush()
    profile = load_profile("u1", stored)
    assert profile == busy_profile()
    assert (profile.undeliverable, profile.undeliverable_at) == (None, None)


def test_an_undeliverable_mark_round_trips() -> None:
    profile = busy_profile()
    profile.undeliverable, profile.undeliverable_at = "a@example.com", T0
    assert load_profile("u1", dump_profile(profile)) == profile


@pytest.mark.parametrize(
    "stored",
    [
        b"{not json",
        DEFLATED + b"not deflate",
        DEFLATED_V1 + b"not deflate",
        dump_profile(busy_profile())[:-8],  # cut short
        dump_profile(busy_profile()) + b"junk",
        b"\x03junk",
    ],
)
def test_a_corrupt_stored_profile_is_reported(stored: bytes) -> None:
    with pytest.raises(CorruptProfile, match="u1"):
        load_profile("u1", stored)

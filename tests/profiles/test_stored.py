"""The stored form of a profile: deflated JSON, with plain JSON stored before still read."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import orjson
import pytest

from profiles import CorruptProfile, Profile
from profiles.stored import DEFLATED, dump_profile, load_profile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def busy_profile() -> Profile:
    profile = Profile(user_id="u1", first_seen=T0, last_seen=T0, email="a@example.com")
    for n in range(20):
        profile.record_decision(
            {"rule_id": "browse", "outcome": "suppressed", "reason": "already_sent",
             "trigger_event_id": f"u1-{n}", "at": "2026-03-01T12:00:00Z"}
        )  # fmt: skip
    return profile


def test_a_profile_is_stored_deflated_and_round_trips() -> None:
    profile = busy_profile()
    stored = dump_profile(profile)
    assert stored[:1] == DEFLATED
    assert len(stored) * 3 < len(profile.model_dump_json())
    assert load_profile("u1", stored) == profile


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


@pytest.mark.parametrize("stored", [b"{not json", DEFLATED + b"not deflate", b"\x02junk"])
def test_a_corrupt_stored_profile_is_reported(stored: bytes) -> None:
    with pytest.raises(CorruptProfile, match="u1"):
        load_profile("u1", stored)

"""Key names: every key of one user in one Redis Cluster hash slot, whatever the id."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from redis.crc import key_slot

from profiles import Keys
from profiles.keys import slot_tag

KEYS = Keys("nudge")
#: ids with braces where Redis looks for a hash tag
AWKWARD = ("}abc", "{}", "a}b{c", "}", "x{y}z", "", "}}", "{", "a}", "}{x}")


@pytest.fixture(scope="module", autouse=True)
def _slot_tags_built() -> None:
    """Build the slot tag table once, outside any example's deadline."""
    slot_tag("")


def hash_tag(key: str) -> str:
    """What Redis hashes for ``key``'s slot: between the first ``{`` and the next ``}``."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return "" if start < 0 or end < 0 else key[start + 1 : end]


def users_keys(user_id: str) -> list[str]:
    return [
        KEYS.profile(user_id),
        KEYS.seen(user_id),
        KEYS.legacy_seen(user_id),
        KEYS.tombstone(user_id, "0f" * 16),
        KEYS.counters(user_id),
    ]


@given(st.text(max_size=40))
@example("")
def test_every_key_of_a_user_has_a_tag_and_shares_one_slot(user_id: str) -> None:
    keys = users_keys(user_id)
    assert all(hash_tag(key) for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1


@given(st.text(max_size=40))
@example("")
def test_the_user_of_a_profile_key_is_the_id_it_was_made_of(user_id: str) -> None:
    # so no two users share a profile key either
    assert KEYS.user_of(KEYS.profile(user_id)) == user_id


@given(st.text(min_size=1, max_size=40).filter(lambda u: not u.startswith("}")))
def test_ids_that_had_a_tag_keep_their_keys(user_id: str) -> None:
    # keys written before ids starting with "}" got a form of their own stay readable
    assert KEYS.profile(user_id) == f"nudge:{{{user_id}}}:profile"
    assert KEYS.seen(user_id) == f"nudge:{{{user_id}}}:dedup"
    assert KEYS.legacy_seen(user_id) == f"nudge:{{{user_id}}}:seen"


def test_ids_that_would_leave_an_empty_tag_get_one_of_their_own() -> None:
    for user_id in ("}abc", "}", ""):
        key = KEYS.profile(user_id)
        assert key.startswith("nudge:}{") and key.endswith(f"}}{{{user_id}}}:profile")
        assert hash_tag(key).isalnum()


def test_ids_with_braces_inside_keep_one_tag_per_user() -> None:
    assert hash_tag(KEYS.profile("a}b{c")) == "a"
    assert hash_tag(KEYS.profile("x{y}z")) == "x{y"
    assert hash_tag(KEYS.profile("{}")) == "{"
    for user_id in AWKWARD:
        assert len({hash_tag(key) for key in users_keys(user_id)[:3]}) == 1

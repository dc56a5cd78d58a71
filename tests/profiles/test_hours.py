"""The per-user histogram of the local hours at which mail is opened and clicked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from profiles import Event, Profile, ScoringConfig, apply_event
from profiles.hours import HourHistogram, HoursConfig, note_hour

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # 19:00 in Berlin (winter time)
CONFIG = HoursConfig(half_life_days=10)


def weights(histogram: HourHistogram | None) -> dict[int, float]:
    assert histogram is not None
    return histogram.weights


def test_an_open_counts_at_its_local_hour_in_the_users_zone() -> None:
    assert weights(note_hour(None, "email_open", T0, "Europe/Berlin", CONFIG)) == {19: 1.0}
    assert weights(note_hour(None, "email_open", T0, "America/New_York", CONFIG)) == {13: 1.0}


def test_users_without_a_zone_count_in_the_configured_default() -> None:
    tokyo = HoursConfig(default_timezone="Asia/Tokyo")
    assert weights(note_hour(None, "email_open", T0, None, tokyo)) == {3: 1.0}
    assert weights(note_hour(None, "email_open", T0, None, HoursConfig())) == {18: 1.0}


def test_clicks_weigh_more_and_other_events_leave_the_histogram_alone() -> None:
    clicked = note_hour(None, "email_click", T0, "UTC", CONFIG)
    assert weights(clicked) == {18: 2.0}
    assert note_hour(clicked, "purchase", T0, "UTC", CONFIG) is clicked
    assert note_hour(None, "page_view", T0, "UTC", CONFIG) is None


def test_older_weight_halves_every_half_life() -> None:
    first = note_hour(None, "email_open", T0, "UTC", CONFIG)
    later = note_hour(first, "email_click", T0 + timedelta(days=10), "UTC", CONFIG)
    assert later is not None
    assert later.weights == {18: 2.5}
    assert later.at == T0 + timedelta(days=10)
    assert later.decayed(later.at + timedelta(days=10), 10)[18] == pytest.approx(1.25)
    assert later.decayed(later.at - timedelta(days=1), 10)[18] == 2.5


def test_a_late_event_adds_its_weight_decayed_to_the_reference_time() -> None:
    recent = note_hour(None, "email_open", T0 + timedelta(days=10), "UTC", CONFIG)
    late = note_hour(recent, "email_open", T0, "UTC", CONFIG)
    assert late is not None
    assert (late.at, late.weights) == (T0 + timedelta(days=10), {18: 1.5})


def test_dst_moves_the_utc_hour_not_the_local_one() -> None:
    winter = datetime(2026, 3, 28, 18, 0, tzinfo=UTC)  # 19:00 CET, the day before DST
    summer = datetime(2026, 3, 29, 17, 0, tzinfo=UTC)  # 19:00 CEST, the day it starts
    histogram = note_hour(None, "email_open", winter, "Europe/Berlin", CONFIG)
    histogram = note_hour(histogram, "email_open", summer, "Europe/Berlin", CONFIG)
    assert list(weights(histogram)) == [19]


def test_weights_are_stored_rounded_and_sparse() -> None:
    fast = HoursConfig(half_life_days=0.01)
    histogram = note_hour(None, "email_open", T0 - timedelta(hours=1), "UTC", fast)
    histogram = note_hour(histogram, "email_open", T0 + timedelta(days=1), "UTC", fast)
    assert weights(histogram) == {18: 1.0}  # the first open decayed to nothing
    three = note_hour(histogram, "email_open", T0 + timedelta(days=1, hours=1), "UTC", CONFIG)
    assert all(len(str(w).split(".")[1]) <= 4 for w in weights(three).values())
    assert HourHistogram.model_validate_json(three.model_dump_json()) == three  # type: ignore[union-attr]


def test_hours_out_of_range_and_negative_weights_are_refused() -> None:
    with pytest.raises(ValidationError, match="hours must be"):
        HourHistogram(at=T0, weights={24: 1.0})
    with pytest.raises(ValidationError, match="must not be negative"):
        HoursConfig(weights={"email_open": -1})
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        HoursConfig(default_timezone="Mars/Olympus")


def open_event(at: datetime, n: int) -> Event:
    return Event(
        event_id=f"o{n}", type="email_open", user_id="u1", ts=at, properties={"message_id": f"m{n}"}
    )


def test_apply_event_keeps_the_histogram_on_the_profile() -> None:
    signup = Event(
        event_id="s",
        type="signup",
        user_id="u1",
        ts=T0 - timedelta(days=1),
        properties={"email": "a@example.com", "timezone": "Europe/Berlin"},
    )
    profile: Profile | None = apply_event(None, signup, ScoringConfig())
    for n in range(3):
        profile = apply_event(profile, open_event(T0 + timedelta(days=n), n), ScoringConfig())
    assert profile is not None and profile.open_hours is not None
    assert list(profile.open_hours.weights) == [19]
    assert Profile.model_validate_json(profile.model_dump_json()) == profile

"""Consent history and subscriptions, on the pure fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from profiles import ConsentChange, Event, Profile, ScoringConfig, apply_event
from profiles.model import MAX_CONSENT_LOG, MAX_UNSUBSCRIBED
from profiles.stored import dump_profile, load_profile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCORING = ScoringConfig()
MINUTE = timedelta(minutes=1)


def ev(event_id: str, kind: str, at: datetime = T0, **props: Any) -> Event:
    return Event(event_id=event_id, type=kind, user_id="u1", ts=at, properties=props)


def consent(event_id: str, at: datetime, granted: bool, **props: Any) -> Event:
    return ev(event_id, "consent", at, channel="email", granted=granted, **props)


def run(*events: Event, profile: Profile | None = None) -> Profile:
    for event in events:
        profile = apply_event(profile, event, SCORING)
    assert profile is not None
    return profile


def log(profile: Profile) -> list[tuple[str, str | None, bool, str]]:
    return [(c.event_id, c.category, c.granted, c.source) for c in profile.consent_log]


def test_signup_consent_and_unsubscribe_each_log_one_change_with_its_source() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        consent("c1", T0 + MINUTE, False, category="offers"),
        consent("c2", T0 + 2 * MINUTE, True, category="offers", source="preference_centre"),
        ev("u1", "unsubscribe", T0 + 3 * MINUTE, category="reminders", source="unsubscribe_link"),
        ev("u2", "unsubscribe", T0 + 4 * MINUTE),
    )
    assert log(p) == [
        ("s", None, True, "signup"),
        ("c1", "offers", False, "consent"),
        ("c2", "offers", True, "preference_centre"),
        ("u1", "reminders", False, "unsubscribe_link"),
        ("u2", None, False, "unsubscribe"),
    ]
    assert p.consent_log[0] == ConsentChange(
        at=T0, channel="email", category=None, granted=True, source="signup", event_id="s"
    )
    assert (p.email_consent, p.unsubscribed) == (False, ["reminders"])


def test_a_signup_without_consent_logs_a_refusal() -> None:
    p = run(ev("s", "signup", email="a@example.com"))
    assert log(p) == [("s", None, False, "signup")]


def test_other_events_leave_the_log_alone() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        ev("v", "page_view", T0 + MINUTE, url="/"),
        ev("t", "profile_update", T0 + MINUTE, traits={"plan": "pro"}),
    )
    assert [c.event_id for c in p.consent_log] == ["s"]


def test_a_category_is_left_and_rejoined_without_touching_global_consent() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        ev("u1", "unsubscribe", T0 + MINUTE, category="reminders"),
        consent("c1", T0 + 2 * MINUTE, False, category="offers"),
        consent("c2", T0 + 3 * MINUTE, False, category="newsletter"),
    )
    assert (p.email_consent, p.unsubscribed) == (True, ["newsletter", "offers", "reminders"])
    p = run(consent("c3", T0 + 4 * MINUTE, True, category="offers"), profile=p)
    assert (p.email_consent, p.unsubscribed) == (True, ["newsletter", "reminders"])


def test_a_global_grant_does_not_clear_category_opt_outs() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        ev("u1", "unsubscribe", T0 + MINUTE, category="offers"),
        ev("u2", "unsubscribe", T0 + 2 * MINUTE),
        consent("c1", T0 + 3 * MINUTE, True),
    )
    assert (p.email_consent, p.unsubscribed) == (True, ["offers"])


def test_the_log_keeps_the_newest_changes() -> None:
    events = [
        consent(f"c{n}", T0 + n * MINUTE, n % 2 == 0, category="offers")
        for n in range(MAX_CONSENT_LOG + 7)
    ]
    p = run(*events)
    assert len(p.consent_log) == MAX_CONSENT_LOG
    assert p.consent_log[0].event_id == "c7"
    assert p.consent_log[-1].event_id == f"c{MAX_CONSENT_LOG + 6}"
    assert p.unsubscribed == []  # the newest (c56) granted


def test_opt_outs_past_the_bound_are_logged_but_not_recorded() -> None:
    events = [
        ev(f"u{n}", "unsubscribe", T0 + n * MINUTE, category=f"list_{n:02}")
        for n in range(MAX_UNSUBSCRIBED + 1)
    ]
    p = run(*events)
    assert len(p.unsubscribed) == MAX_UNSUBSCRIBED
    assert f"list_{MAX_UNSUBSCRIBED:02}" not in p.unsubscribed
    assert p.consent_log[-1].category == f"list_{MAX_UNSUBSCRIBED:02}"
    assert p.unsubscribed == sorted(p.unsubscribed)


# --- late events: the log stays in time order, the state follows the newest change -------


def test_a_late_change_is_logged_in_time_order_and_does_not_override_a_newer_one() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        consent("grant", T0 + 10 * MINUTE, True),
        ev("late", "unsubscribe", T0 + 5 * MINUTE),  # sent before the grant, arrives after
    )
    assert [c.event_id for c in p.consent_log] == ["s", "late", "grant"]
    assert p.email_consent


def test_a_late_category_change_is_compared_within_its_own_scope() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        consent("offers", T0 + 10 * MINUTE, True, category="offers"),
        consent("global", T0 + 20 * MINUTE, True),
        ev("late", "unsubscribe", T0 + 5 * MINUTE, category="offers"),
        ev("late2", "unsubscribe", T0 + 15 * MINUTE, category="reminders"),
    )
    assert [c.event_id for c in p.consent_log] == ["s", "late", "offers", "late2", "global"]
    # offers was granted after the late opt-out; nothing newer about reminders is known
    assert (p.email_consent, p.unsubscribed) == (True, ["reminders"])


def test_a_late_signup_does_not_override_a_newer_consent_change() -> None:
    p = run(
        consent("revoke", T0 + MINUTE, False),
        ev("s", "signup", T0, email="a@example.com", consent={"email": True}),
    )
    assert [c.event_id for c in p.consent_log] == ["s", "revoke"]
    assert (p.email, p.email_consent) == ("a@example.com", False)


def test_changes_at_the_same_moment_apply_in_arrival_order() -> None:
    p = run(consent("a", T0, True), ev("b", "unsubscribe", T0))
    assert [c.event_id for c in p.consent_log] == ["a", "b"]
    assert not p.email_consent


# --- stored profiles ----------------------------------------------------------------------


def test_profiles_stored_before_the_log_load_with_an_empty_one() -> None:
    p = run(ev("s", "signup", email="a@example.com", consent={"email": True}))
    data = orjson.loads(p.model_dump_json())
    del data["consent_log"], data["unsubscribed"]
    old = load_profile("u1", orjson.dumps(data))
    assert (old.email_consent, old.consent_log, old.unsubscribed) == (True, [], [])
    # a late change still applies to such a profile: there is nothing newer to compare
    old = run(ev("u", "unsubscribe", T0 - MINUTE), profile=old)
    assert not old.email_consent


def test_the_log_survives_storage() -> None:
    p = run(
        ev("s", "signup", email="a@example.com", consent={"email": True}),
        ev("u", "unsubscribe", T0 + MINUTE, category="offers", source="support"),
    )
    assert load_profile("u1", dump_profile(p)) == p

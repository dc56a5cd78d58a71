"""Every trigger kind and guard, on the pure fold (no stores, no clock but the one we pass)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from profiles import Event, Profile, Snapshot, Timer
from triggers import RuleSet, load_rules, request_id
from triggers.fold import UserStep, apply_user_events, fire_user_timers

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC

RULES = """\
version: 1
guards:
  default_timezone: UTC
segments:
  big_cart: "profile.cart.item_count >= 3"
custom_events: [price.alert]
rules:
  - id: order_thanks
    kind: on_event
    events: [purchase]
    category: transactional
    condition:
      all:
        - "profile.purchase_count == 1"
        - "event.properties.total >= 100"
    template: welcome
  - id: price_alert
    kind: on_event
    events: [price.alert]
    cooldown: 1d
    template: welcome
  - id: browse
    kind: absence
    start: [product_view]
    cancel: [add_to_cart, purchase]
    key: product_id
    wait: 1h
    template: welcome
  - id: buyer_winback
    kind: inactivity
    events: [purchase]
    wait: 10d
    template: winback
  - id: birthday
    kind: date
    field: traits.birthday
    at: "09:00"
    template: welcome
  - id: big_cart
    kind: segment_entry
    segment: big_cart
    template: welcome
  - id: engaged
    kind: threshold
    value: profile.score
    above: 25
    template: welcome
  - id: series
    kind: sequence
    start: [signup]
    exit: [purchase]
    steps:
      - template: welcome
      - delay: 3d
        template: welcome
      - delay: 7d
        template: welcome
        condition: "not profile.traits.skip_offer"
"""


class User:
    """One user's profile and pending timers, driven event by event and tick by tick."""

    def __init__(self, rules: RuleSet, user_id: str = "u1") -> None:
        self.rules = rules
        self.user_id = user_id
        self.profile: Profile | None = None
        self.timers: dict[str, Timer] = {}
        self.sent: list[tuple[str, str]] = []  # (rule id, request id)
        self.decisions: list[tuple[str, str, str]] = []  # (rule, outcome, reason)
        self.n = 0

    def _absorb(self, step: UserStep) -> UserStep:
        self.profile = step.profile
        for _, tid in step.ops.cancel:
            self.timers.pop(tid, None)
        for (_, tid), timer in step.ops.schedule.items():
            self.timers[tid] = timer
        self.sent += [(s.rule_id, s.request_id) for s in step.sends]
        self.decisions += [(d.rule_id, d.outcome, d.reason) for d in step.decisions]
        return step

    def event(self, kind: str, at: datetime = T0, /, **props: Any) -> UserStep:
        self.n += 1
        event = Event(
            event_id=f"e{self.n}", type=kind, user_id=self.user_id, ts=at, properties=props
        )
        step = apply_user_events(self.rules, Snapshot(self.profile), [(event, 0)], at)
        return self._absorb(step)

    def tick(self, at: datetime) -> UserStep:
        """Fire every timer due by ``at``, each at its own due time, like the simulator."""
        step = UserStep(profile=self.profile)
        while due := sorted(
            (t for t in self.timers.values() if t.due_ms <= _ms(at)), key=lambda t: t.due_ms
        ):
            now = max(datetime.fromtimestamp(due[0].due_ms / 1000, tz=UTC), T0)
            batch = [t for t in due if t.due_ms == due[0].due_ms]
            for timer in batch:
                del self.timers[timer.id]
            step = self._absorb(fire_user_timers(self.rules, self.profile, batch, now))
        return step

    def signup(self, at: datetime = T0, consent: bool = True, **extra: Any) -> UserStep:
        return self.event(
            "signup", at, email=f"{self.user_id}@example.com", consent={"email": consent}, **extra
        )

    def rules_sent(self) -> list[str]:
        return [rule for rule, _ in self.sent]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@pytest.fixture
def rules(make_config: Callable[[str], Path]) -> Callable[..., RuleSet]:
    """The rules above, with extra guard lines, replaced text or extra rules."""

    def make(guards: str = "", extra_rules: str = "") -> RuleSet:
        text = RULES.replace("  default_timezone: UTC\n", f"  default_timezone: UTC\n{guards}")
        return load_rules(make_config(text + extra_rules))

    return make


@pytest.fixture
def user(rules: Callable[..., RuleSet]) -> User:
    return User(rules())


# --- on_event ------------------------------------------------------------------------------


def test_on_event_condition_with_all_of(user: User) -> None:
    user.signup()
    user.event("purchase", order_id="o1", total=50.0)
    user.event("purchase", order_id="o2", total=500.0)  # not the first purchase any more
    assert "order_thanks" not in user.rules_sent()
    other = User(user.rules, "u2")
    other.signup(consent=False)
    other.event("purchase", order_id="o3", total=150.0)
    assert other.rules_sent() == ["order_thanks"]  # transactional: no consent needed


def test_custom_event_with_cooldown(user: User) -> None:
    user.signup()
    for hours in (1, 5, 25):
        user.event("price.alert", T0 + timedelta(hours=hours), name="Kettle", price=39.0)
    assert user.rules_sent().count("price_alert") == 2
    assert ("price_alert", "suppressed", "cooldown") in user.decisions


# --- absence with a correlation key ----------------------------------------------------------


def test_absence_is_correlated_by_key(user: User) -> None:
    user.signup()
    user.event("product_view", product_id="p1")
    user.event("product_view", product_id="p2")
    user.event("product_view", product_id="p3")
    user.event("add_to_cart", product_id="p1", price=5.0)  # cancels p1 only
    user.event(
        "purchase", order_id="o", total=5.0, items=[{"product_id": "p3", "price": 5.0}]
    )  # cancels p3 through items[]
    user.tick(T0 + timedelta(hours=2))
    browse = [rid for rule, rid in user.sent if rule == "browse"]
    assert browse == [request_id("browse", "u1", "p2", "e3")]


def test_absence_cancel_without_key_value_ends_every_instance(user: User) -> None:
    user.signup()
    user.event("product_view", product_id="p1")
    user.event("product_view", product_id="p2")
    user.event("purchase", order_id="o", total=5.0)  # no items: cannot tell which
    user.tick(T0 + timedelta(days=2))
    assert "browse" not in user.rules_sent()


# --- inactivity ------------------------------------------------------------------------------


def test_inactivity_counts_only_the_listed_events(user: User) -> None:
    user.signup()
    user.event("purchase", order_id="o", total=5.0)
    user.event("page_view", T0 + timedelta(days=5), url="/")  # not a purchase: no push
    user.tick(T0 + timedelta(days=9, hours=23))
    assert "buyer_winback" not in user.rules_sent()
    user.tick(T0 + timedelta(days=10))
    assert "buyer_winback" in user.rules_sent()


# --- date field ------------------------------------------------------------------------------


def test_birthday_fires_at_local_time_every_year(user: User) -> None:
    user.signup(timezone="Asia/Tokyo")
    user.event("profile_update", traits={"birthday": "1990-03-05"})
    [timer] = [t for t in user.timers.values() if t.rule_id == "birthday"]
    # 9:00 in Tokyo is 0:00 UTC
    assert timer.due_ms == _ms(datetime(2026, 3, 5, 0, 0, tzinfo=UTC))
    user.tick(datetime(2028, 3, 6, tzinfo=UTC))
    birthdays = [rid for rule, rid in user.sent if rule == "birthday"]
    assert len(birthdays) == 3 == len(set(birthdays))  # 2026, 2027 and 2028, distinct ids
    [upcoming] = [t for t in user.timers.values() if t.rule_id == "birthday"]
    assert upcoming.instance == "2029-03-05"


def test_leap_day_birthday_falls_on_28_february(user: User) -> None:
    user.signup()
    user.event("profile_update", traits={"birthday": "2000-02-29"})
    user.tick(datetime(2027, 3, 1, tzinfo=UTC))
    [timer] = [t for t in user.timers.values() if t.rule_id == "birthday"]
    assert timer.instance == "2028-02-29"
    assert ("birthday", "fired", "ok") in user.decisions


# --- segment entry and threshold -------------------------------------------------------------


def test_segment_entry_fires_once_per_crossing(user: User) -> None:
    user.signup()
    for n in range(4):
        user.event("add_to_cart", product_id=f"p{n}", price=1.0)  # enters at the third
    assert user.rules_sent().count("big_cart") == 1
    assert user.profile is not None and user.profile.segments == ["big_cart"]
    user.event("remove_from_cart", product_id="p0")
    user.event("remove_from_cart", product_id="p1")  # leaves the segment
    user.event("add_to_cart", product_id="p9", price=1.0)  # and enters again
    assert user.rules_sent().count("big_cart") == 2


def test_threshold_on_the_decaying_score(user: User) -> None:
    user.signup()
    user.event("email_open", message_id="m")
    user.event("email_open", message_id="m")
    assert "engaged" not in user.rules_sent()  # 20 points
    user.event("email_click", message_id="m", url="/")  # 35 points: crosses 25
    user.event("email_open", message_id="m")
    assert user.rules_sent().count("engaged") == 1
    # a year later the score has decayed to ~0; one more click crosses again
    user.event("email_click", T0 + timedelta(days=365), message_id="m", url="/")
    assert user.rules_sent().count("engaged") == 1  # 15 points: below 25
    user.event("email_click", T0 + timedelta(days=365), message_id="m", url="/")
    assert user.rules_sent().count("engaged") == 2


# --- sequence --------------------------------------------------------------------------------


def test_sequence_sends_each_step_after_its_delay(user: User) -> None:
    user.signup()
    assert user.rules_sent() == ["series"]
    user.tick(T0 + timedelta(days=2, hours=23))
    assert user.rules_sent() == ["series"]
    user.tick(T0 + timedelta(days=7))
    sent = [rid for rule, rid in user.sent if rule == "series"]
    assert sent == [request_id("series", "u1", "", "e1", f"step{i}") for i in range(3)]
    assert not [t for t in user.timers.values() if t.rule_id == "series"]


def test_sequence_step_condition_skips_only_that_step(user: User) -> None:
    user.signup()
    user.event("profile_update", traits={"skip_offer": True})
    user.tick(T0 + timedelta(days=8))
    assert user.rules_sent() == ["series", "series"]
    assert ("series", "suppressed", "condition_false") in user.decisions


def test_exit_event_ends_the_sequence_and_it_does_not_restart(user: User) -> None:
    user.signup()
    user.event("purchase", T0 + timedelta(days=1), order_id="o", total=5.0)
    user.signup(T0 + timedelta(days=2))  # signing up again does not restart it
    user.tick(T0 + timedelta(days=30))
    assert user.rules_sent().count("series") == 1


# --- guards ----------------------------------------------------------------------------------


def test_an_invalid_address_is_never_mailed_until_a_valid_one_arrives(user: User) -> None:
    user.signup()
    user.event("product_view", product_id="p1")
    user.event("profile_update", traits={"email": "not an email", "first_name": "Ann"})
    assert user.profile is not None and user.profile.first_name == "Ann"
    step = user.event("price.alert", T0 + timedelta(minutes=10), name="Kettle", price=39.0)
    [decision] = step.decisions
    assert (decision.rule_id, decision.outcome, decision.reason) == (
        "price_alert",
        "suppressed",
        "invalid_email",
    )
    assert decision.detail == "not an address: 'n***'"  # masked: decisions carry no address
    # due timers and transactional mail are held back too
    user.tick(T0 + timedelta(hours=2))
    user.event("purchase", T0 + timedelta(hours=3), order_id="o", total=500.0)
    assert user.rules_sent() == ["series"]
    assert ("browse", "suppressed", "invalid_email") in user.decisions
    assert ("order_thanks", "suppressed", "invalid_email") in user.decisions
    user.event("profile_update", T0 + timedelta(days=4), traits={"email": " Ann@Example.COM "})
    step = user.event("price.alert", T0 + timedelta(days=4), name="Kettle", price=35.0)
    assert [s.to for s in step.sends] == ["Ann@example.com"]


def test_a_cleared_address_is_no_email(user: User) -> None:
    user.signup()
    user.event("profile_update", traits={"email": "a@b"})
    user.event("profile_update", traits={"email": None})  # clears the invalid one too
    user.event("price.alert", T0 + timedelta(minutes=10), name="Kettle", price=39.0)
    assert user.decisions[-1] == ("price_alert", "suppressed", "no_email")


# --- bounces ------------------------------------------------------------------------------


def test_a_hard_bounce_stops_marketing_and_transactional_mail(user: User) -> None:
    user.signup()  # the series' first step goes out
    user.event("bounce", T0 + timedelta(minutes=5), email="U1@example.com", code=550)
    step = user.event("price.alert", T0 + timedelta(minutes=10), name="Kettle", price=39.0)
    [decision] = step.decisions
    assert (decision.rule_id, decision.outcome, decision.reason) == (
        "price_alert",
        "suppressed",
        "undeliverable",
    )
    # the time of the bounce, never the address (decisions carry none)
    assert decision.detail == "hard bounce 2026-03-02T12:05:00+00:00; no new address since"
    user.tick(T0 + timedelta(days=3, hours=1))  # the series' second step falls due
    user.event("purchase", T0 + timedelta(days=4), order_id="o", total=500.0)
    assert user.rules_sent() == ["series"]
    assert ("series", "suppressed", "undeliverable") in user.decisions
    assert ("order_thanks", "suppressed", "undeliverable") in user.decisions


def test_undeliverable_comes_before_the_consent_guards(user: User) -> None:
    user.signup(consent=False)
    user.event("bounce", T0, email="u1@example.com")
    user.event("price.alert", T0 + timedelta(minutes=10), name="Kettle", price=39.0)
    assert user.decisions[-1] == ("price_alert", "suppressed", "undeliverable")


def test_a_soft_bounce_or_a_bounce_of_an_old_address_stops_nothing(user: User) -> None:
    user.signup()
    user.event("bounce", T0, email="u1@example.com", kind="soft", code=452)
    user.event("bounce", T0, email="old@example.com", code=550)
    step = user.event("price.alert", T0 + timedelta(minutes=10), name="Kettle", price=39.0)
    assert [s.to for s in step.sends] == ["u1@example.com"]


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        ("profile_update", {"traits": {"email": "new@example.com"}}),
        ("signup", {"email": "new@example.com", "consent": {"email": True}}),
    ],
)
def test_a_new_address_is_mailed_again(user: User, kind: str, props: dict[str, Any]) -> None:
    user.signup()
    user.event("bounce", T0, email="u1@example.com")
    user.event(kind, T0 + timedelta(hours=1), **props)
    step = user.event("price.alert", T0 + timedelta(hours=2), name="Kettle", price=39.0)
    assert [s.to for s in step.sends] == ["new@example.com"]
    step = user.event("purchase", T0 + timedelta(hours=3), order_id="o", total=500.0)
    assert [(s.rule_id, s.to) for s in step.sends] == [("order_thanks", "new@example.com")]


def test_a_bounce_for_a_user_without_a_profile_starts_none(user: User) -> None:
    step = user.event("bounce", T0, email="u1@example.com")
    assert (step.profile, step.applied, step.decisions) == (None, [], [])


def test_frequency_cap_counts_marketing_sends_in_a_rolling_window(
    rules: Callable[..., RuleSet],
) -> None:
    user = User(rules(guards="  frequency_cap: {max: 2, window: 1d}\n"))

    def fill_cart(at: datetime) -> None:  # enters the big_cart segment
        for n in range(3):
            user.event("add_to_cart", at, product_id=f"p{n}", price=1.0)

    def empty_cart(at: datetime) -> None:
        for n in range(3):
            user.event("remove_from_cart", at, product_id=f"p{n}")

    user.signup()  # the series' first step: marketing send 1
    user.event("price.alert", T0 + timedelta(hours=1))  # marketing send 2
    fill_cart(T0 + timedelta(hours=2))
    assert ("big_cart", "suppressed", "frequency_cap") in user.decisions
    user.event("purchase", T0 + timedelta(hours=3), order_id="o", total=500.0)
    assert "order_thanks" in user.rules_sent()  # transactional mail is not capped
    empty_cart(T0 + timedelta(hours=24, minutes=30))
    fill_cart(T0 + timedelta(hours=24, minutes=30))  # the first send left the window
    assert user.rules_sent() == ["series", "price_alert", "order_thanks", "big_cart"]


def test_quiet_hours_defer_to_their_end_in_the_users_zone(
    rules: Callable[..., RuleSet],
) -> None:
    user = User(rules(guards='  quiet_hours: {start: "22:00", end: "07:30"}\n'))
    late = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo
    user.signup(late, timezone="Asia/Tokyo")
    assert user.sent == []
    assert ("series", "deferred", "quiet_hours") in user.decisions
    [timer] = [t for t in user.timers.values() if t.deferred]
    assert timer.due_ms == _ms(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))  # 07:30 Tokyo
    assert timer.deferred_by == "quiet_hours"  # what explain says it waits for
    user.tick(datetime(2026, 3, 2, 22, 29, tzinfo=UTC))
    assert user.sent == []
    user.tick(datetime(2026, 3, 2, 22, 30, tzinfo=UTC))
    assert user.rules_sent() == ["series"]
    # transactional mail is never held back
    user.event("purchase", late + timedelta(days=1), order_id="o", total=500.0)
    assert user.rules_sent() == ["series", "order_thanks"]


def test_arbitration_lets_the_highest_priority_send(rules: Callable[..., RuleSet]) -> None:
    extra = """\
  - id: cart_push
    kind: on_event
    events: [add_to_cart]
    priority: 5
    template: welcome
  - id: cart_nudge
    kind: on_event
    events: [add_to_cart]
    priority: 1
    template: welcome
  - id: cart_receipt
    kind: on_event
    events: [add_to_cart]
    category: transactional
    template: welcome
"""
    user = User(rules(extra_rules=extra))
    user.signup()
    user.event("add_to_cart", product_id="p", price=1.0)
    assert user.rules_sent() == ["series", "cart_push", "cart_receipt"]
    assert ("cart_nudge", "suppressed", "arbitration") in user.decisions


def test_reentry_once(make_config: Callable[[str], Path]) -> None:
    once = RULES.replace("key: product_id\n", "key: product_id\n    reentry: once\n")
    user = User(load_rules(make_config(once)))
    user.signup()
    user.event("product_view", product_id="p1")
    user.tick(T0 + timedelta(hours=2))
    step = user.event("product_view", T0 + timedelta(hours=3), product_id="p2")
    # sent once already: said at once, and no timer is kept that could only be suppressed
    assert [(d.rule_id, d.outcome, d.reason) for d in step.decisions] == [
        ("browse", "suppressed", "already_sent")
    ]
    assert not [t for t in user.timers.values() if t.rule_id == "browse"]
    user.tick(T0 + timedelta(hours=5))
    assert user.rules_sent().count("browse") == 1


def test_unsubscribe_cancels_every_pending_timer(user: User) -> None:
    user.signup()
    user.event("product_view", product_id="p1")
    user.event("profile_update", traits={"birthday": "1990-12-24"})
    assert {t.rule_id for t in user.timers.values()} == {"series", "browse", "birthday"}
    user.event("unsubscribe")
    assert user.timers == {}


# --- absence without its key, cancel_when ----------------------------------------------------

CART = """\
  - id: cart
    kind: absence
    start: [add_to_cart, remove_from_cart]
    cancel: [purchase]
    key: cart_id
    wait: 1h
    cancel_when:
      cart_emptied: "profile.cart.item_count == 0"
    template: welcome
"""


def test_start_event_without_the_key_starts_one_unkeyed_instance(
    rules: Callable[..., RuleSet],
) -> None:
    user = User(rules(extra_rules=CART))
    user.signup()
    user.event("add_to_cart", product_id="p1", price=5.0)  # no cart_id
    user.event("add_to_cart", T0 + timedelta(minutes=10), product_id="p2", price=5.0)
    assert [t.key for t in user.timers.values() if t.rule_id == "cart"] == [""]
    user.tick(T0 + timedelta(hours=2))
    assert user.rules_sent().count("cart") == 1
    assert [rid for rule, rid in user.sent if rule == "cart"] == [
        request_id("cart", "u1", "", "e3")
    ]


def test_a_keyed_cancel_also_ends_the_unkeyed_instance(rules: Callable[..., RuleSet]) -> None:
    user = User(rules(extra_rules=CART))
    user.signup()
    user.event("add_to_cart", product_id="p1", price=5.0)  # unkeyed
    user.event("add_to_cart", product_id="p2", price=5.0, cart_id="c1")
    user.event("purchase", order_id="o", total=10.0, cart_id="c1")
    user.tick(T0 + timedelta(hours=2))
    assert "cart" not in user.rules_sent()
    assert ("cart", "cancelled", "purchase") in user.decisions


def test_cancel_when_cancels_instead_of_moving(rules: Callable[..., RuleSet]) -> None:
    user = User(rules(extra_rules=CART))
    user.signup()
    user.event("add_to_cart", product_id="p1", price=5.0, cart_id="c1")
    user.event("remove_from_cart", T0 + timedelta(minutes=5), product_id="p1", cart_id="c1")
    assert [t for t in user.timers.values() if t.rule_id == "cart"] == []
    assert user.decisions[-1] == ("cart", "cancelled", "cart_emptied")
    user.tick(T0 + timedelta(hours=2))
    assert "cart" not in user.rules_sent()


# --- the lifecycle of delayed rules in the decision log --------------------------------------


def test_scheduled_rescheduled_and_cancelled_are_decisions(rules: Callable[..., RuleSet]) -> None:
    user = User(rules(extra_rules=CART))
    user.signup()
    first = user.event("add_to_cart", product_id="p1", price=5.0, cart_id="c1")
    [scheduled] = [d for d in first.decisions if d.rule_id == "cart"]
    assert (scheduled.outcome, scheduled.reason, scheduled.key) == (
        "scheduled",
        "add_to_cart",
        "c1",
    )
    assert scheduled.due == T0 + timedelta(hours=1)
    moved = user.event(
        "add_to_cart", T0 + timedelta(minutes=20), product_id="p2", price=1.0, cart_id="c1"
    )
    [rescheduled] = [d for d in moved.decisions if d.rule_id == "cart"]
    assert rescheduled.outcome == "rescheduled"
    assert rescheduled.due == T0 + timedelta(minutes=80)
    bought = user.event(
        "purchase", T0 + timedelta(minutes=30), order_id="o", total=6.0, cart_id="c1"
    )
    [cancelled] = [d for d in bought.decisions if d.rule_id == "cart"]
    assert (cancelled.outcome, cancelled.reason) == ("cancelled", "purchase")
    assert cancelled.trigger_event_id == "e4"  # the purchase that cancelled it
    # the profile keeps what ended the timer; while pending, the timer itself says it
    assert user.profile is not None
    kept = [d for d in user.profile.decisions if d["rule_id"] == "cart"]
    assert [(d["outcome"], d["reason"], d["key"]) for d in kept] == [
        ("cancelled", "purchase", "c1")
    ]


def test_unsubscribe_and_erase_cancel_with_their_reason(rules: Callable[..., RuleSet]) -> None:
    user = User(rules(extra_rules=CART))
    user.signup()
    user.event("add_to_cart", product_id="p1", price=5.0, cart_id="c1")
    user.event("unsubscribe")
    assert ("cart", "cancelled", "unsubscribe") in user.decisions
    assert ("series", "cancelled", "unsubscribe") in user.decisions
    other = User(user.rules, "u2")
    other.signup()
    step = other.event("erase")
    assert step.profile is None
    assert {(d.rule_id, d.outcome, d.reason) for d in step.decisions} == {
        ("series", "cancelled", "erase")
    }


def test_inactivity_logs_its_first_scheduling_not_every_move(user: User) -> None:
    user.signup()
    user.event("purchase", order_id="o1", total=5.0)
    user.event("purchase", T0 + timedelta(days=1), order_id="o2", total=5.0)
    outcomes = [(o, r) for rule, o, r in user.decisions if rule == "buyer_winback"]
    assert outcomes == [("scheduled", "purchase")]
    [timer] = [t for t in user.timers.values() if t.rule_id == "buyer_winback"]
    assert timer.due_ms == _ms(T0 + timedelta(days=11))


def test_follow_up_steps_are_scheduled_decisions(user: User) -> None:
    step = user.signup()
    [scheduled] = [d for d in step.decisions if d.outcome == "scheduled" and d.rule_id == "series"]
    assert (scheduled.reason, scheduled.step, scheduled.due) == (
        "next_step",
        1,
        T0 + timedelta(days=3),
    )


# --- thresholds need a previous value; time-based changes are re-checked ---------------------

COOLING = """\
  - id: cooling
    kind: threshold
    value: profile.score
    below: 10
    template: welcome
"""


def test_a_below_threshold_does_not_fire_for_a_brand_new_user(
    rules: Callable[..., RuleSet],
) -> None:
    user = User(rules(extra_rules=COOLING))
    user.signup()  # score 0: below 10, but there was no value before
    user.event("page_view", url="/")
    assert "cooling" not in user.rules_sent()


def test_a_decaying_score_crosses_below_without_any_event(rules: Callable[..., RuleSet]) -> None:
    user = User(rules(extra_rules=COOLING))
    user.signup()
    user.event("email_click", message_id="m", url="/")  # 15 points, above 10
    # 15 halves every 14 days: it is 10 after 14 * log2(1.5) = 8.19 days
    crossing = T0 + timedelta(days=14 * math.log2(1.5))
    user.tick(crossing - timedelta(minutes=1))
    assert "cooling" not in user.rules_sent()
    user.tick(crossing + timedelta(seconds=2))
    assert user.rules_sent().count("cooling") == 1
    assert user.profile is not None and "cooling" in user.profile.watched


def test_an_above_threshold_can_fire_again_after_decaying_below(user: User) -> None:
    user.signup()
    user.event("email_click", message_id="m", url="/")
    user.event("email_click", message_id="m", url="/")  # 30: crosses 25
    assert user.rules_sent().count("engaged") == 1
    user.tick(T0 + timedelta(days=5))  # decays below 25 after 3.7 days: noticed then
    assert user.profile is not None and "engaged" not in user.profile.watched
    # one click lifts the decayed score (~23) above 25 again: a second crossing
    user.event("email_click", T0 + timedelta(days=5), message_id="m", url="/")
    assert user.rules_sent().count("engaged") == 2


LAPSED = """\
  lapsed:
    all:
      - "profile.purchase_count > 0"
      - not: "within(profile.last_purchase_at, '90d')"
  quiet_for_a_month: "days_since(profile.last_seen) > 30"
"""

SEGMENT_RULES = """\
  - id: lapsed_entry
    kind: segment_entry
    segment: lapsed
    template: welcome
  - id: quiet_entry
    kind: segment_entry
    segment: quiet_for_a_month
    template: welcome
"""


@pytest.fixture
def timed(make_config: Callable[[str], Path]) -> User:
    text = RULES.replace("segments:\n", "segments:\n" + LAPSED) + SEGMENT_RULES
    return User(load_rules(make_config(text)))


def test_a_time_based_segment_is_entered_when_time_passes(timed: User) -> None:
    timed.signup()
    timed.event("purchase", T0 + timedelta(hours=1), order_id="o", total=5.0)
    lapse = T0 + timedelta(hours=1, days=90)
    recheck = [t for t in timed.timers.values() if t.rule_id == "~recheck"]
    assert [t.due_ms for t in recheck] == [_ms(T0 + timedelta(days=30, hours=1)) + 1000]
    timed.tick(lapse - timedelta(seconds=1))
    assert "lapsed_entry" not in timed.rules_sent()
    assert timed.rules_sent().count("quiet_entry") == 1  # 30 days without an event
    timed.tick(lapse + timedelta(seconds=2))
    assert timed.rules_sent().count("lapsed_entry") == 1
    assert timed.profile is not None and "lapsed" in timed.profile.segments
    [sent] = [rid for rule, rid in timed.sent if rule == "lapsed_entry"]
    fired = [d for d in timed.decisions if d[0] == "lapsed_entry"]
    assert fired == [("lapsed_entry", "fired", "ok")] and sent


def test_a_new_event_moves_the_recheck(timed: User) -> None:
    timed.signup()
    timed.event("purchase", order_id="o1", total=5.0)
    timed.event("purchase", T0 + timedelta(days=60), order_id="o2", total=5.0)
    timed.tick(T0 + timedelta(days=100))
    assert "lapsed_entry" not in timed.rules_sent()  # 90 days from the second purchase
    timed.tick(T0 + timedelta(days=151))
    assert timed.rules_sent().count("lapsed_entry") == 1


def test_an_event_after_a_due_anniversary_does_not_move_it_to_next_year(user: User) -> None:
    user.signup()
    user.event("profile_update", traits={"birthday": "1990-03-05"})
    due = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    # the worker's sweep has not fired it yet when the user's next event arrives
    user.event("page_view", due + timedelta(seconds=5), url="/")
    [timer] = [t for t in user.timers.values() if t.rule_id == "birthday"]
    assert timer.due_ms == _ms(due)
    user.tick(due + timedelta(seconds=10))
    assert ("birthday", "fired", "ok") in user.decisions


def test_ordering_a_missing_field_is_false_not_an_error(rules: Callable[..., RuleSet]) -> None:
    adults = """\
  - id: adults_only
    kind: on_event
    events: [page_view]
    condition: "profile.traits.age >= 18 and 18 <= profile.traits.age"
    template: welcome
"""
    user = User(rules(extra_rules=adults))
    user.signup()
    user.event("page_view", url="/")  # no age anywhere: the condition is false
    assert ("adults_only", "suppressed", "condition_false") in user.decisions
    user.event("profile_update", traits={"age": 30})
    user.event("page_view", url="/again")
    assert "adults_only" in user.rules_sent()


# --- subscriptions ---------------------------------------------------------------------------

NEWS = """\
  - id: news
    kind: on_event
    events: [page_view]
    subscription: newsletter
    template: welcome
"""


@pytest.fixture
def subscribed(make_config: Callable[[str], Path]) -> User:
    """price_alert and browse in ``reminders``, the series and ``news`` in ``newsletter``."""
    text = (
        RULES.replace("rules:\n", "subscriptions: [newsletter, reminders]\nrules:\n")
        .replace("    cooldown: 1d\n", "    cooldown: 1d\n    subscription: reminders\n")
        .replace("    key: product_id\n", "    key: product_id\n    subscription: reminders\n")
        .replace("    exit: [purchase]\n", "    exit: [purchase]\n    subscription: newsletter\n")
    )
    return User(load_rules(make_config(text + NEWS)))


def test_leaving_a_subscription_stops_only_its_mail(subscribed: User) -> None:
    user = subscribed
    user.signup()
    user.event("unsubscribe", T0 + timedelta(minutes=1), category="reminders")
    step = user.event("price.alert", T0 + timedelta(hours=1), name="Kettle", price=39.0)
    [decision] = step.decisions
    assert (decision.rule_id, decision.outcome, decision.reason, decision.detail) == (
        "price_alert",
        "suppressed",
        "unsubscribed_category",
        "unsubscribed from 'reminders'",
    )
    user.event("page_view", T0 + timedelta(hours=2), url="/")  # another subscription
    user.event("purchase", T0 + timedelta(hours=3), order_id="o1", total=150.0)  # transactional
    assert user.rules_sent() == ["series", "news", "order_thanks"]
    assert user.profile is not None and user.profile.email_consent


def test_rejoining_a_subscription_lets_its_mail_through_again(subscribed: User) -> None:
    user = subscribed
    user.signup()
    user.event("consent", T0, channel="email", granted=False, category="reminders")
    user.event("price.alert", T0 + timedelta(hours=1), name="Kettle", price=39.0)
    user.event(
        "consent", T0 + timedelta(hours=2), channel="email", granted=True, category="reminders"
    )
    user.event("price.alert", T0 + timedelta(hours=3), name="Kettle", price=35.0)
    assert user.rules_sent() == ["series", "price_alert"]


def test_leaving_a_subscription_cancels_its_pending_timers_only(subscribed: User) -> None:
    user = subscribed
    user.signup()
    user.event("product_view", product_id="p1")
    assert {t.rule_id for t in user.timers.values()} == {"series", "browse"}
    step = user.event("unsubscribe", T0 + timedelta(minutes=1), category="reminders")
    cancelled = [(d.rule_id, d.outcome, d.reason, d.key) for d in step.decisions]
    assert cancelled == [("browse", "cancelled", "unsubscribe", "p1")]
    assert {t.rule_id for t in user.timers.values()} == {"series"}
    # a later start event still schedules; the guard stops it when it falls due
    user.event("product_view", T0 + timedelta(minutes=2), product_id="p2")
    user.tick(T0 + timedelta(days=10))
    assert user.rules_sent() == ["series", "series", "series"]
    assert ("browse", "suppressed", "unsubscribed_category") in user.decisions


def test_leaving_every_marketing_mail_still_stops_every_rule(subscribed: User) -> None:
    user = subscribed
    user.signup()
    user.event("product_view", product_id="p1")
    user.event("unsubscribe", T0 + timedelta(minutes=1))
    assert user.timers == {}
    assert user.profile is not None and not user.profile.email_consent
    assert user.profile.unsubscribed == []

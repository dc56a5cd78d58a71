"""The engine on in-memory stores: what fires, what is suppressed, and the durability order."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from profiles import InMemoryProfileStore, InMemoryTimerStore
from triggers import (
    DeadLetter,
    Decision,
    Engine,
    Incoming,
    InMemoryOutbox,
    SendRequest,
    load_rules,
    request_id,
)
from triggers.contracts import DEAD_LETTER_KEEP
from triggers.decide import MAX_MAIL_BYTES
from triggers.firing import FUTURE_SKEW_MS
from triggers.simulate import simulate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

RULES = """\
version: 1
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
  - id: cart_abandonment
    kind: absence
    start: [add_to_cart, remove_from_cart]
    cancel: [purchase]
    wait: 1h
    condition: "profile.cart.item_count > 0"
    template: cart_abandonment
  - id: winback
    kind: inactivity
    wait: 30d
    template: winback
"""


class Outbox(InMemoryOutbox):
    """The in-memory outbox, able to fail once like an unreachable broker."""

    fail_next = False

    async def publish(
        self,
        sends: Sequence[SendRequest],
        dead: Sequence[DeadLetter],
        decisions: Sequence[Decision] = (),
    ) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker down")
        await super().publish(sends, dead, decisions)

    def by_rule(self, rule_id: str, user_id: str = "u1") -> list[SendRequest]:
        return [s for s in self.sends if s.rule_id == rule_id and s.user_id == user_id]


class Messages:
    """Raw event messages with increasing offsets."""

    def __init__(self) -> None:
        self.offset = 0

    def message(
        self, kind: str, at: datetime = T0, user: str = "u1", eid: str | None = None, **props: Any
    ) -> Incoming:
        self.offset += 1
        event = {
            "event_id": eid or f"e{self.offset}",
            "type": kind,
            "user_id": user,
            "ts": at.isoformat(),
            "properties": props,
        }
        return Incoming(orjson.dumps(event), user.encode(), "events", 0, self.offset)


class Harness(Messages):
    def __init__(self, config: Path) -> None:
        super().__init__()
        self.outbox = Outbox()
        self.timers = InMemoryTimerStore()
        self.profiles = InMemoryProfileStore()
        #: the engine's wall clock
        self.now = T0
        self.engine = Engine(
            rules=load_rules(config),
            profiles=self.profiles,
            timers=self.timers,
            outbox=self.outbox,
            clock=lambda: self.now,
        )

    async def send(self, *messages: Incoming) -> None:
        await self.engine.process(messages)

    async def tick(self, at: datetime) -> None:
        await self.engine.fire_due(0, at)


@pytest.fixture
def h(make_config: Callable[[str], Path]) -> Harness:
    return Harness(make_config(RULES))


def signup(h: Messages, consent: bool = True, user: str = "u1") -> Incoming:
    return h.message(
        "signup",
        user=user,
        email=f"{user}@example.com",
        first_name="Ada",
        consent={"email": consent},
    )


def cart(h: Messages, at: datetime = T0, **extra: Any) -> Incoming:
    return h.message("add_to_cart", at, product_id="mug", name="Mug", price=12.0, **extra)


async def test_welcome_fires_once_with_a_deterministic_request_id(h: Harness) -> None:
    first = signup(h)
    await h.send(first)
    await h.send(first)  # redelivered by Kafka after a crash: deduped
    [welcome] = h.outbox.by_rule("welcome")
    assert welcome.request_id == request_id("welcome", "u1", "", "e1")
    assert (welcome.to, welcome.subject, welcome.category) == (
        "u1@example.com",
        "Welcome, Ada!",
        "marketing",
    )
    assert welcome.headers["List-Unsubscribe"].startswith("<https://")


async def test_each_send_says_when_it_became_due_and_timers_how_late_they_fired(
    h: Harness,
) -> None:
    signed_up = signup(h)
    carted = cart(h, T0 + timedelta(minutes=5))
    result = await h.engine.process([signed_up, carted])
    assert [s.rule_id for s in result.sends] == ["welcome"]
    assert result.sends_due == [("immediate", int(T0.timestamp() * 1000))]
    due = T0 + timedelta(hours=1, minutes=5)
    fired = await h.engine.fire_due(0, due + timedelta(seconds=3))
    assert [s.rule_id for s in fired.sends] == ["cart_abandonment"]
    assert fired.sends_due == [("timer", int(due.timestamp() * 1000))]
    assert fired.timer_lateness_ms == [3000]


async def test_duplicate_event_id_changes_nothing(h: Harness) -> None:
    result = await h.engine.process([signup(h), cart(h, eid="c1"), cart(h, eid="c1")])
    assert (result.events, result.duplicates) == (2, 1)
    assert result.by_type == {"signup": 1, "add_to_cart": 1}
    await h.send(cart(h, eid="c1"))
    snap = (await h.profiles.load({"u1": []}))["u1"]
    assert snap.profile is not None
    assert snap.profile.cart.items["mug"].quantity == 1
    assert snap.profile.counts == {"signup": 1, "add_to_cart": 1}


async def test_cart_abandonment_fires_after_the_wait(h: Harness) -> None:
    await h.send(signup(h), cart(h))
    await h.tick(T0 + timedelta(minutes=59))
    assert h.outbox.by_rule("cart_abandonment") == []
    await h.tick(T0 + timedelta(hours=1))
    [sent] = h.outbox.by_rule("cart_abandonment")
    assert re.search(r"1 \N{MULTIPLICATION SIGN} Mug\s+\$12\.00", sent.text), sent.text
    await h.tick(T0 + timedelta(hours=5))
    assert len(h.outbox.by_rule("cart_abandonment")) == 1


async def test_each_cart_change_moves_the_deadline(h: Harness) -> None:
    await h.send(signup(h), cart(h), cart(h, T0 + timedelta(minutes=30), quantity=2))
    await h.tick(T0 + timedelta(hours=1, minutes=1))
    assert h.outbox.by_rule("cart_abandonment") == []
    await h.tick(T0 + timedelta(hours=1, minutes=30))
    [sent] = h.outbox.by_rule("cart_abandonment")
    assert sent.trigger_event_id == "e3"


async def test_purchase_in_time_cancels_and_emptied_cart_suppresses(h: Harness) -> None:
    await h.send(signup(h), cart(h))
    await h.send(h.message("purchase", T0 + timedelta(minutes=10), order_id="o1", total=12.0))
    await h.send(signup(h, user="u2"), cart(h, user="u2"))
    await h.send(h.message("remove_from_cart", user="u2", product_id="mug"))
    result = await h.engine.fire_due(0, T0 + timedelta(hours=2))
    assert h.outbox.by_rule("cart_abandonment") == []
    assert h.outbox.by_rule("cart_abandonment", "u2") == []
    assert [(d.user_id, d.reason) for d in result.decisions] == [("u2", "condition_false")]


async def test_no_consent_suppresses_marketing_but_not_transactional(h: Harness) -> None:
    await h.send(signup(h, consent=False), cart(h))
    await h.send(h.message("purchase", order_id="o1", total=12.0))
    assert h.outbox.by_rule("welcome") == []
    assert [s.category for s in h.outbox.by_rule("receipt")] == ["transactional"]
    assert "List-Unsubscribe" not in h.outbox.by_rule("receipt")[0].headers


async def test_winback_fires_after_inactivity_and_every_event_pushes_it(h: Harness) -> None:
    await h.send(signup(h))
    await h.send(h.message("page_view", T0 + timedelta(days=20), url="/"))
    await h.tick(T0 + timedelta(days=31))
    assert h.outbox.by_rule("winback") == []
    await h.tick(T0 + timedelta(days=50))
    assert len(h.outbox.by_rule("winback")) == 1


async def test_unsubscribe_and_erase_cancel_pending_timers(h: Harness) -> None:
    await h.send(signup(h), cart(h), signup(h, user="u2"), cart(h, user="u2"))
    await h.send(h.message("unsubscribe"), h.message("erase", user="u2"))
    assert await h.timers.pending(0) == []
    assert (await h.profiles.load({"u2": []}))["u2"].profile is None


async def test_invalid_messages_are_dead_lettered_and_the_rest_processed(h: Harness) -> None:
    bad = Incoming(b"{oops", b"u1", "events", 0, 99)
    await h.send(bad, signup(h))
    [letter] = h.outbox.dead_letters
    assert (letter.reason, letter.value, letter.offset) == ("invalid_json", b"{oops", 99)
    assert len(h.outbox.by_rule("welcome")) == 1


async def test_failed_publish_leaves_nothing_half_done(h: Harness) -> None:
    h.outbox.fail_next = True
    message = signup(h)
    with pytest.raises(ConnectionError):
        await h.send(message, cart(h))
    assert (await h.profiles.load({"u1": []}))["u1"].profile is None
    assert await h.timers.pending(0) == []
    await h.send(message, cart(h, eid="e2"))  # the redelivery
    assert [s.request_id for s in h.outbox.by_rule("welcome")] == [
        request_id("welcome", "u1", "", "e1")
    ]


async def test_timer_survives_a_failed_fire_and_refires_with_the_same_id(h: Harness) -> None:
    await h.send(signup(h), cart(h))
    h.outbox.fail_next = True
    with pytest.raises(ConnectionError):
        await h.tick(T0 + timedelta(hours=1))
    lease = h.engine.rules.config.timer_lease
    await h.tick(T0 + timedelta(hours=1) + lease)
    [sent] = h.outbox.by_rule("cart_abandonment")
    assert sent.request_id == request_id("cart_abandonment", "u1", "", "e2")


async def test_a_corrupt_profile_does_not_block_other_users_timers(
    make_config: Callable[[str], Path], redis_client: Any, keys: Any
) -> None:
    from profiles import RedisProfileStore, RedisTimerStore

    outbox = Outbox()
    engine = Engine(
        rules=load_rules(make_config(RULES)),
        profiles=RedisProfileStore(redis_client, keys=keys),
        timers=RedisTimerStore(redis_client, keys=keys),
        outbox=outbox,
        clock=lambda: T0,
    )
    h = Messages()
    messages = [
        signup(h, user="good"),
        cart(h, user="good"),
        signup(h, user="bad"),
        cart(h, user="bad"),
    ]
    await engine.process(messages)
    await redis_client.set(keys.profile("bad"), "{not json")
    before_sweep = len(outbox.decisions)
    await engine.fire_due(0, T0 + timedelta(hours=1))
    assert [s.user_id for s in outbox.sends if s.rule_id == "cart_abandonment"] == ["good"]
    swept = outbox.decisions[before_sweep:]
    broken = [d for d in swept if d.user_id == "bad" and d.rule_id == "cart_abandonment"]
    assert [(d.outcome, d.reason) for d in broken] == [("suppressed", "corrupt_profile")]
    pending = await RedisTimerStore(redis_client, keys=keys).pending(0)
    assert [t.rule_id for t in pending if t.user_id == "bad"] == ["winback"]  # not yet due


# --- re-planning pending timers when the rules change ----------------------------------------


CART_RULE = RULES[RULES.index("  - id: cart_abandonment") : RULES.index("  - id: winback")]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda text: text.replace(CART_RULE, ""), "removed from the rules"),
        (
            lambda text: text.replace("kind: absence", "kind: absence\n    enabled: false"),
            "disabled",
        ),
    ],
)
async def test_a_removed_or_disabled_rules_timers_are_cancelled_at_reload(
    h: Harness,
    make_config: Callable[[str], Path],
    change: Callable[[str], str],
    detail: str,
) -> None:
    await h.send(signup(h), cart(h))
    previous = h.engine.rules
    h.engine.rules = load_rules(make_config(change(RULES)))
    result = await h.engine.replan(0, previous, T0 + timedelta(minutes=5))
    cancelled = [(d.rule_id, d.outcome, d.reason, d.detail) for d in result.decisions]
    assert cancelled == [("cart_abandonment", "cancelled", "rule_removed", detail)]
    assert "cart_abandonment" not in {t.rule_id for t in await h.timers.pending(0)}
    profile = (await h.profiles.load({"u1": []}))["u1"].profile
    assert profile is not None
    assert not [tid for tid in profile.timers if tid.startswith("cart_abandonment|")]
    assert profile.decisions[-1]["outcome"] == "cancelled"
    await h.tick(T0 + timedelta(hours=2))
    assert h.outbox.by_rule("cart_abandonment") == []


async def test_a_changed_wait_moves_pending_timers(
    h: Harness, make_config: Callable[[str], Path]
) -> None:
    await h.send(signup(h), cart(h))
    previous = h.engine.rules
    h.engine.rules = load_rules(
        make_config(RULES.replace("wait: 1h", "wait: 2h").replace("wait: 30d", "wait: 10d"))
    )
    result = await h.engine.replan(0, previous, T0)
    moved = {d.rule_id: d for d in result.decisions}
    assert moved["cart_abandonment"].outcome == "rescheduled"
    assert moved["cart_abandonment"].due == T0 + timedelta(hours=2)
    assert moved["winback"].due == T0 + timedelta(days=10)
    due = {t.rule_id: t.due_ms for t in await h.timers.pending(0)}
    assert due["cart_abandonment"] == int((T0 + timedelta(hours=2)).timestamp() * 1000)
    await h.tick(T0 + timedelta(hours=1, minutes=30))
    assert h.outbox.by_rule("cart_abandonment") == []
    await h.tick(T0 + timedelta(hours=2))
    assert len(h.outbox.by_rule("cart_abandonment")) == 1
    again = await h.engine.replan(0, h.engine.rules, T0 + timedelta(hours=3))
    assert again.decisions == []  # nothing changed: nothing to do


async def test_an_event_over_the_size_limit_is_dead_lettered_unparsed(h: Harness) -> None:
    good = signup(h)
    limit = h.engine.max_event_bytes = len(good.value or b"")  # just fits
    big = Incoming(b"{" + b"x" * limit, b"u1", "events", 0, 98)  # not JSON: never parsed
    await h.send(big, good)
    [letter] = h.outbox.dead_letters
    assert (letter.reason, letter.value, letter.offset) == ("too_large", big.value, 98)
    assert letter.detail == f"{limit + 1} bytes; the limit is {limit}"
    assert len(h.outbox.by_rule("welcome")) == 1


async def test_a_dead_letter_over_the_limit_keeps_only_the_start_of_its_value(h: Harness) -> None:
    huge = Incoming(b"x" * (DEAD_LETTER_KEEP + 10), b"u1", "events", 0, 5)
    h.engine.max_event_bytes = DEAD_LETTER_KEEP
    await h.send(huge)
    [letter] = h.outbox.dead_letters
    assert letter.reason == "too_large"
    assert letter.value == huge.value[:DEAD_LETTER_KEEP]
    assert letter.detail.endswith(
        f"(value cut to its first {DEAD_LETTER_KEEP} of {len(huge.value or b'')} bytes)"
    )


async def test_a_mail_too_large_for_any_mailer_is_suppressed_not_sent(h: Harness) -> None:
    # a name of 300,000 characters, shown in the welcome's HTML and text
    huge = h.message(
        "signup", email="u1@example.com", first_name="x" * 300_000, consent={"email": True}
    )
    result = await h.engine.process([huge])
    assert h.outbox.by_rule("welcome") == []
    [welcome] = [d for d in result.decisions if d.rule_id == "welcome"]
    assert (welcome.outcome, welcome.reason) == ("suppressed", "too_large")
    assert welcome.detail.endswith(f"the limit is {MAX_MAIL_BYTES}")


# --- timers overdue when a later event of their user arrives --------------------------------
# A worker behind its partition (a backlog, a stalled broker, a sweep waiting for the lock)
# gets a user's next event before its sweep fired the timers due before it; the sweep
# never runs in these tests.


def purchase(h: Messages, at: datetime) -> Incoming:
    return h.message("purchase", at, order_id="o1", total=12.0)


async def test_a_purchase_after_the_deadline_comes_after_the_cart_reminder(h: Harness) -> None:
    await h.send(signup(h), cart(h))
    h.now = T0 + timedelta(hours=3)
    result = await h.engine.process([purchase(h, T0 + timedelta(hours=2))])
    [sent] = h.outbox.by_rule("cart_abandonment")
    assert sent.request_id == request_id("cart_abandonment", "u1", "", "e2")
    assert [s.rule_id for s in result.sends] == ["cart_abandonment", "receipt"]
    due_ms = int((T0 + timedelta(hours=1)).timestamp() * 1000)
    assert result.sends_due[0] == ("timer", due_ms)
    assert (result.timers_fired, result.timer_lateness_ms) == (1, [2 * 3600 * 1000])
    assert "cart_abandonment" not in {t.rule_id for t in await h.timers.pending(0)}
    await h.tick(T0 + timedelta(hours=4))
    assert len(h.outbox.by_rule("cart_abandonment")) == 1  # the sweep has nothing left


async def test_a_cart_and_a_late_purchase_in_one_batch_send_the_reminder(h: Harness) -> None:
    h.now = T0 + timedelta(hours=3)
    await h.send(signup(h), cart(h), purchase(h, T0 + timedelta(hours=2)))
    assert len(h.outbox.by_rule("cart_abandonment")) == 1
    assert await h.timers.pending(0) != []  # the winback, re-armed by the purchase
    assert "cart_abandonment" not in {t.rule_id for t in await h.timers.pending(0)}


async def test_a_purchase_in_the_deadlines_own_second_still_cancels(h: Harness) -> None:
    # a moment's events come before its timers, in the sweep and in simulate alike
    await h.send(signup(h), cart(h))
    h.now = T0 + timedelta(hours=3)
    await h.send(purchase(h, T0 + timedelta(hours=1, milliseconds=999)))
    assert h.outbox.by_rule("cart_abandonment") == []


async def test_the_winback_due_before_a_returning_users_event_is_sent(h: Harness) -> None:
    await h.send(signup(h))
    h.now = T0 + timedelta(days=41)
    await h.send(h.message("page_view", T0 + timedelta(days=40), url="/"))
    [sent] = h.outbox.by_rule("winback")
    assert sent.trigger_event_id == "e1"
    [winback] = [t for t in await h.timers.pending(0) if t.rule_id == "winback"]
    assert winback.due_ms == int((T0 + timedelta(days=70)).timestamp() * 1000)


async def test_an_event_from_a_clock_far_ahead_fires_no_timer_early(h: Harness) -> None:
    await h.send(signup(h), cart(h))
    await h.send(h.message("page_view", T0 + timedelta(days=400), url="/"))
    assert h.outbox.by_rule("cart_abandonment") == []
    assert h.outbox.by_rule("winback") == []
    just_ahead = T0 + timedelta(hours=1, milliseconds=FUTURE_SKEW_MS)
    h.now = T0 + timedelta(hours=1)
    await h.send(purchase(h, just_ahead))  # within the skew: counts as its own time
    assert len(h.outbox.by_rule("cart_abandonment")) == 1


async def test_a_worker_behind_its_partition_sends_what_simulate_sends(
    make_config: Callable[[str], Path],
) -> None:
    config = make_config(RULES)
    h = Harness(config)
    stream = [
        signup(h),
        cart(h),
        purchase(h, T0 + timedelta(hours=2)),
        signup(h, user="u2"),
        cart(h, user="u2"),
        h.message("purchase", T0 + timedelta(minutes=30), user="u2", order_id="o2", total=1.0),
        h.message("page_view", T0 + timedelta(days=31), user="u2", url="/"),
        h.message("page_view", T0 + timedelta(days=45), url="/"),
    ]
    h.now = T0 + timedelta(days=50)
    await h.send(*stream[:4])
    await h.send(*stream[4:])
    simulated = await simulate(load_rules(config), [m.value or b"" for m in stream])
    assert sorted(s.request_id for s in h.outbox.sends) == sorted(
        s.request_id for s in simulated.sends
    )
    assert {s.rule_id for s in h.outbox.sends} == {
        "welcome",
        "receipt",
        "cart_abandonment",
        "winback",
    }


SERIES = """\
version: 1
rules:
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
"""


async def test_every_step_of_a_series_due_before_an_exit_is_sent_first(
    make_config: Callable[[str], Path],
) -> None:
    config = make_config(SERIES)
    h = Harness(config)
    stream = [signup(h), purchase(h, T0 + timedelta(days=20))]
    await h.send(stream[0])
    h.now = T0 + timedelta(days=21)
    await h.send(stream[1])
    assert [s.trigger_event_id for s in h.outbox.by_rule("series")] == ["e1"] * 3
    simulated = await simulate(load_rules(config), [m.value or b"" for m in stream])
    assert [s.request_id for s in h.outbox.sends] == [s.request_id for s in simulated.sends]

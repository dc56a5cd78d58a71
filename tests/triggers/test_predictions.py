"""Scores on the live profile: the engine scores the users a batch changed, rules read
``profile.predicted``, a re-check re-scores as time passes, and a broken model loses
nothing (in-memory stores, a fixed stand-in model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles import InMemoryProfileStore, InMemoryTimerStore, Profile, apply_event, parse_event
from profiles.predictions import feature_vector
from triggers import Engine, Incoming, InMemoryOutbox, RuleSet, load_rules, simulate
from triggers.backfill import backfill
from triggers.predict import rescore_at

from .predictions import FixedModel

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)

RULES = """\
version: 1
segments:
  cart_fillers: "profile.predicted.cluster == 'cart fillers'"
rules:
  - id: churn_risk
    kind: threshold
    value: profile.predicted.churn_probability
    above: 0.7
    template: winback
  - id: cart_filler
    kind: segment_entry
    segment: cart_fillers
    template: vip_welcome
  - id: risky_visit
    kind: on_event
    events: [page_view]
    condition: "profile.predicted.churn_probability > 0.7"
    category: transactional
    template: welcome
"""


class Shop:
    """The engine on in-memory stores, on a clock the test moves."""

    def __init__(self, rules: RuleSet) -> None:
        self.now = T0
        self.offset = 0
        self.outbox = InMemoryOutbox()
        self.profiles = InMemoryProfileStore()
        self.timers = InMemoryTimerStore()
        self.engine = Engine(
            rules=rules,
            profiles=self.profiles,
            timers=self.timers,
            outbox=self.outbox,
            clock=lambda: self.now,
        )

    async def send(
        self, *events: tuple[str, str, dict[str, Any]], at: datetime, late: timedelta = DAY * 0
    ) -> Any:
        """Events dated ``at``, processed ``late`` after."""
        self.now = at + late
        messages = []
        for kind, user, props in events:
            self.offset += 1
            event = {
                "event_id": f"e{self.offset}",
                "type": kind,
                "user_id": user,
                "ts": at.isoformat(),
                "properties": props,
            }
            messages.append(Incoming(orjson.dumps(event), user.encode(), "events", 0, self.offset))
        return await self.engine.process(messages)

    async def profile(self, user: str) -> Profile:
        profile = (await self.profiles.load({user: []}))[user].profile
        assert profile is not None
        return profile

    def fired(self, rule_id: str) -> list[str]:
        return [s.user_id for s in self.outbox.sends if s.rule_id == rule_id]


def signup(user: str) -> tuple[str, str, dict[str, Any]]:
    props = {"email": f"{user}@example.com", "consent": {"email": True}}
    return ("signup", user, props)


def purchase(user: str, total: float = 80.0) -> tuple[str, str, dict[str, Any]]:
    return ("purchase", user, {"order_id": f"o-{user}", "total": total})


def cart(user: str) -> tuple[str, str, dict[str, Any]]:
    return ("add_to_cart", user, {"product_id": "mug", "price": 12.0, "cart_id": "c1"})


@pytest.fixture
def rules(make_config: Callable[[str], Path]) -> RuleSet:
    return load_rules(make_config(RULES))


@pytest.fixture
def model() -> FixedModel:
    return FixedModel()


@pytest.fixture
def shop(rules: RuleSet, model: FixedModel) -> Shop:
    return Shop(replace(rules, model=model))


async def test_a_batch_scores_every_user_it_changed_in_one_call(
    shop: Shop, model: FixedModel
) -> None:
    await shop.send(signup("ada"), signup("bob"), purchase("bob"), cart("cy"), at=T0)
    assert model.calls == [3]
    for user in ("ada", "bob", "cy"):
        predicted = (await shop.profile(user)).predicted
        assert predicted is not None
        assert (predicted.model_version, predicted.scored_at) == ("fixed-1", T0)
    cy = (await shop.profile("cy")).predicted
    assert cy is not None and cy.cluster == "cart fillers"


async def test_a_duplicate_only_batch_scores_nobody(shop: Shop, model: FixedModel) -> None:
    await shop.send(signup("ada"), at=T0)
    shop.offset -= 1  # the same event id again
    await shop.send(signup("ada"), at=T0 + DAY)
    assert model.calls == [1]


async def test_a_threshold_on_churn_fires_in_the_batch_that_scores_it(shop: Shop) -> None:
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    assert shop.fired("churn_risk") == []
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 8 * DAY)
    assert shop.fired("churn_risk") == ["ada"]
    send = next(s for s in shop.outbox.sends if s.rule_id == "churn_risk")
    # the trigger is the user's re-scoring period, not an event of the batch
    assert send.trigger_event_type == "predicted"
    assert send.trigger_event_id.startswith("predicted:fixed-1:")
    # the on_event condition saw the scores stored before the batch (churn 0)
    risky = [d for d in shop.outbox.decisions if d.rule_id == "risky_visit"]
    assert [(d.outcome, d.reason) for d in risky] == [("suppressed", "condition_false")]


async def test_a_redelivery_cut_into_other_batches_gives_the_same_request_id(
    rules: RuleSet,
) -> None:
    visits = [("page_view", "ada", {"url": f"/{n}"}) for n in range(3)]
    ids = []
    for cuts in ([3], [1, 2], [1, 1, 1]):
        shop = Shop(replace(rules, model=FixedModel()))
        await shop.send(signup("ada"), purchase("ada"), at=T0)
        start = 0
        for size in cuts:  # the same events, processed in other batches (and later)
            shop.offset = 2 + start
            await shop.send(*visits[start : start + size], at=T0 + 8 * DAY, late=start * HOUR)
            start += size
        [send] = [s for s in shop.outbox.sends if s.rule_id == "churn_risk"]
        ids.append(send.request_id)
    assert len(set(ids)) == 1


async def test_a_failed_rescore_tries_again_at_the_next_period(
    shop: Shop, model: FixedModel
) -> None:
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    model.broken = True
    result = await shop.engine.fire_due(0, T0 + 2 * DAY)
    assert result.scored.errors == 1
    ada = await shop.profile("ada")
    assert ada.timers  # the re-check is still planned, in the future
    assert min(ada.timers.values()) > (T0 + 2 * DAY).timestamp() * 1000
    model.broken = False
    for day in range(3, 10):
        await shop.engine.fire_due(0, T0 + day * DAY)
    assert shop.fired("churn_risk") == ["ada"]


async def test_a_new_models_first_scores_are_no_crossing(shop: Shop) -> None:
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 5 * DAY)  # churn 0.5
    # a retrain: the new model's scores are the first, whatever the old ones were
    shop.engine.rules = replace(shop.engine.rules, model=FixedModel(version="fixed-2"))
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 8 * DAY)  # churn 0.8
    assert shop.fired("churn_risk") == []
    predicted = (await shop.profile("ada")).predicted
    assert predicted is not None and predicted.model_version == "fixed-2"


async def test_a_users_first_scores_are_no_crossing(shop: Shop) -> None:
    # signed up 20 days before the batch: scored churn 1.0 at once, but from no score
    await shop.send(signup("ada"), at=T0, late=20 * DAY)
    predicted = (await shop.profile("ada")).predicted
    assert predicted is not None and predicted.churn_probability > 0.7
    assert shop.fired("churn_risk") == []
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 21 * DAY)
    assert shop.fired("churn_risk") == []  # still above: no crossing either


async def test_a_segment_entry_on_a_cluster_fires_in_the_same_batch(shop: Shop) -> None:
    await shop.send(signup("ada"), at=T0)
    await shop.send(cart("ada"), at=T0 + timedelta(hours=1))
    assert shop.fired("cart_filler") == ["ada"]
    assert "cart_fillers" in (await shop.profile("ada")).segments


async def test_scores_are_refreshed_as_time_passes(shop: Shop, model: FixedModel) -> None:
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    for day in range(1, 10):
        await shop.engine.fire_due(0, T0 + day * DAY)
        if shop.fired("churn_risk"):
            break
    # re-scored once a day (refresh 1d), one call per sweep, until churn passed 0.7
    assert model.calls == [1] * 9
    assert shop.fired("churn_risk") == ["ada"]
    send = next(s for s in shop.outbox.sends if s.rule_id == "churn_risk")
    assert send.created_at == T0 + 8 * DAY
    predicted = (await shop.profile("ada")).predicted
    assert predicted is not None and predicted.scored_at == T0 + 8 * DAY


async def test_decisions_record_the_model_version_they_used(shop: Shop) -> None:
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 8 * DAY)
    assert shop.outbox.decisions
    assert {d.model_version for d in shop.outbox.decisions} == {"fixed-1"}
    stored = (await shop.profile("ada")).decisions
    assert stored and all(d["model_version"] == "fixed-1" for d in stored)


async def test_without_a_model_nothing_is_scored_and_prediction_rules_stay_quiet(
    rules: RuleSet,
) -> None:
    shop = Shop(rules)
    await shop.send(signup("ada"), purchase("ada"), cart("ada"), at=T0)
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 8 * DAY)
    profile = await shop.profile("ada")
    assert profile.predicted is None
    assert profile.timers == {}  # no re-check either: nothing can change by time alone
    assert shop.outbox.sends == []
    assert {d.model_version for d in shop.outbox.decisions} == {None}


async def test_a_broken_model_loses_no_event_and_keeps_the_old_scores(
    shop: Shop, model: FixedModel
) -> None:
    await shop.send(signup("ada"), at=T0)
    before = (await shop.profile("ada")).predicted
    model.broken = True
    result = await shop.send(cart("ada"), purchase("bob"), at=T0 + DAY)
    assert result.scored.errors == 1
    assert result.events == 2
    ada = await shop.profile("ada")
    assert ada.cart.item_count == 1  # the batch committed
    assert ada.predicted == before
    assert (await shop.profile("bob")).purchase_count == 1
    assert shop.fired("cart_filler") == []


async def test_simulate_scores_and_fires_on_virtual_time(rules: RuleSet) -> None:
    def line(n: int, kind: str, user: str, at: datetime, **props: Any) -> bytes:
        event = {"event_id": f"{user}{n}", "type": kind, "user_id": user, "ts": at.isoformat()}
        return orjson.dumps({**event, "properties": props})

    lines = [
        line(0, "signup", "ada", T0, email="ada@example.com", consent={"email": True}),
        line(1, "purchase", "ada", T0, order_id="o1", total=80.0),
        line(0, "signup", "bo", T0, email="bo@example.com", consent={"email": True}),
        line(1, "add_to_cart", "bo", T0 + DAY, product_id="mug", price=12.0),
    ]
    sim = await simulate(replace(rules, model=FixedModel()), lines, until=T0 + 10 * DAY)
    fired = {(s.rule_id, s.user_id): s.created_at for s in sim.sends}
    # a cluster segment entered with an event, at the event's time
    assert fired[("cart_filler", "bo")] == T0 + DAY
    # churn (recency / 10 here) passed 0.7 by time alone just after T0 + 7 days; ada is
    # re-scored on her daily grid, so her win-back goes at its first point after that
    assert fired[("churn_risk", "ada")] == rescore_at("ada", T0 + 7 * DAY, DAY)
    ada = (await sim.profiles.load({"ada": []}))["ada"].profile
    assert ada is not None and ada.predicted is not None
    # the last re-check: her grid's last point by `until`
    assert ada.predicted.scored_at == rescore_at("ada", T0 + 9 * DAY, DAY)


async def test_scores_a_removed_model_left_behind_are_not_read(shop: Shop, rules: RuleSet) -> None:
    visit = ("page_view", "ada", {"url": "/"})
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    await shop.send(visit, at=T0 + 8 * DAY)  # stores churn 0.8
    await shop.send(visit, at=T0 + 9 * DAY)  # reads it
    shop.engine.rules = rules  # a reload without a model
    await shop.send(visit, at=T0 + 10 * DAY)
    risky = [(d.outcome, d.reason) for d in shop.outbox.decisions if d.rule_id == "risky_visit"]
    unscored, scored, unloaded = risky
    assert unscored == unloaded == ("suppressed", "condition_false")
    assert scored == ("fired", "ok")


async def test_simulate_with_a_trained_model_fires_when_time_alone_crosses(
    make_config: Callable[[str], Path], tiny_model: Path
) -> None:
    config = make_config(f"""\
version: 1
predictions:
  model: {tiny_model}
  refresh: 7d
rules:
  - id: churn_risk
    kind: threshold
    value: profile.predicted.churn_probability
    above: 0.5
    template: winback
""")
    rules = load_rules(config)
    assert rules.model is not None
    events = [
        {"type": "signup", "properties": {"email": "ada@example.com", "consent": {"email": True}}},
        {"type": "purchase", "properties": {"order_id": "o1", "total": 40.0}},
    ]
    lines = [
        orjson.dumps({"event_id": f"e{n}", "user_id": "ada", "ts": T0.isoformat(), **event})
        for n, event in enumerate(events)
    ]
    # when the model says ada's churn passes 0.5, re-scored every 7 days with no event
    replayed = None
    for line in lines:
        replayed = apply_event(replayed, parse_event(line), rules.config.scoring)
    assert replayed is not None

    def churn(at: datetime) -> float:
        assert rules.model is not None and replayed is not None
        row = feature_vector(replayed, at, rules.config.scoring)
        return rules.model.score([row])[0].churn_probability

    assert churn(T0) < 0.5
    grid = [rescore_at("ada", T0, 7 * DAY) + 7 * k * DAY for k in range(60)]
    crossed = next(at for at in grid if churn(at) > 0.5)

    sim = await simulate(rules, lines, until=T0 + 500 * DAY)
    [send] = [s for s in sim.sends if s.rule_id == "churn_risk"]
    assert send.created_at == crossed
    ada = (await sim.profiles.load({"ada": []}))["ada"].profile
    assert ada is not None and ada.predicted is not None
    assert ada.predicted.model_version == rules.model_version


@given(
    user=st.text(min_size=1, max_size=20),
    at=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    hours=st.integers(1, 24 * 30),
)
def test_a_users_rescoring_moment_stays_put_within_a_period(
    user: str, at: datetime, hours: int
) -> None:
    refresh = timedelta(hours=hours)
    due = rescore_at(user, at, refresh)
    assert at < due <= at + refresh
    assert due.microsecond == 0  # sweeps fire whole seconds
    # scoring again before it falls due keeps the moment (no timer write per batch)
    assert rescore_at(user, due - timedelta(seconds=1), refresh) == due
    assert rescore_at(user, due, refresh) == due + refresh


async def test_a_new_models_baseline_keeps_crossings_that_are_not_about_scores(
    make_config: Callable[[str], Path],
) -> None:
    settled = RULES.replace(
        "rules:\n",
        "rules:\n  - {id: settled_in, kind: segment_entry, segment: settled, template: welcome}\n",
    ).replace("segments:\n", 'segments:\n  settled: "days_since(profile.first_seen) > 3.5"\n')
    shop = Shop(replace(load_rules(make_config(settled)), model=FixedModel()))
    await shop.send(signup("ada"), at=T0)
    shop.engine.rules = replace(shop.engine.rules, model=FixedModel(version="fixed-2"))
    # a day-3 event processed on day 4 (a backlog): ada entered `settled` meanwhile
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + 3 * DAY, late=DAY)
    assert shop.fired("settled_in") == ["ada"]


async def test_entering_a_segment_twice_in_one_period_sends_twice(shop: Shop) -> None:
    await shop.send(signup("ada"), at=T0)
    await shop.send(cart("ada"), at=T0 + HOUR)  # a cart filler
    await shop.send(purchase("ada"), at=T0 + 2 * HOUR)  # no longer
    await shop.send(cart("ada"), at=T0 + 3 * HOUR)  # again
    sends = [s for s in shop.outbox.sends if s.rule_id == "cart_filler"]
    assert len(sends) == 2
    assert len({s.request_id for s in sends}) == 2  # the mailer delivers both


async def test_a_redelivery_after_the_users_grid_point_gives_the_same_request_id(
    rules: RuleSet,
) -> None:
    visit = T0 + 8 * DAY
    grid = rescore_at("ada", visit, DAY)  # the end of ada's period after the visit
    ids = []
    for processed in (grid - timedelta(seconds=2), grid + timedelta(seconds=30)):
        shop = Shop(replace(rules, model=FixedModel()))
        await shop.send(signup("ada"), purchase("ada"), at=T0)
        # the same event from the same committed profile, processed either side of it
        await shop.send(("page_view", "ada", {"url": "/"}), at=visit, late=processed - visit)
        [send] = [s for s in shop.outbox.sends if s.rule_id == "churn_risk"]
        ids.append(send.request_id)
    assert len(set(ids)) == 1


async def test_a_user_never_scored_gets_a_rescore_when_a_model_arrives(
    rules: RuleSet, model: FixedModel
) -> None:
    shop = Shop(rules)  # no model yet
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    shop.engine.rules = replace(rules, model=model)
    model.broken = True  # the first scores fail
    await shop.send(("page_view", "ada", {"url": "/"}), at=T0 + DAY)
    ada = await shop.profile("ada")
    assert ada.predicted is None
    model.broken = False
    for day in range(2, 12):
        await shop.engine.fire_due(0, T0 + day * DAY)
    assert (await shop.profile("ada")).predicted is not None
    assert shop.fired("churn_risk") == ["ada"]


async def test_backfill_plans_the_first_scores_of_users_who_do_not_come_back(
    rules: RuleSet, model: FixedModel
) -> None:
    shop = Shop(rules)  # before the model
    await shop.send(signup("ada"), purchase("ada"), at=T0)
    assert (await shop.profile("ada")).timers == {}
    with_model = replace(rules, model=model)
    report = await backfill(with_model, shop.profiles, shop.timers, T0 + DAY)
    assert report.scheduled == 1
    due = rescore_at("ada", T0 + DAY, DAY)
    assert list((await shop.profile("ada")).timers.values()) == [int(due.timestamp() * 1000)]
    shop.engine.rules = with_model
    await shop.engine.fire_due(0, due)
    predicted = (await shop.profile("ada")).predicted
    assert predicted is not None and predicted.scored_at == due


async def test_skipping_users_whose_scores_moved_nothing_changes_no_outcome(
    rules: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcut after scoring (no full re-evaluation when no condition on scores
    changed) gives the same sends and decisions as re-evaluating every scored user."""

    async def run() -> tuple[list[str], list[tuple[str, str, str, str]]]:
        shop = Shop(replace(rules, model=FixedModel()))
        users = ["ada", "bo", "cy"]
        await shop.send(*(signup(u) for u in users), at=T0)
        for day in range(1, 14):
            at = T0 + day * DAY
            kinds = [cart, purchase, lambda u: ("page_view", u, {"url": "/"})]
            batch = [kinds[(day + n) % 3](u) for n, u in enumerate(users) if (day + n) % 4]
            if batch:
                await shop.send(*batch, at=at, late=HOUR)
            await shop.engine.fire_due(0, at + 2 * HOUR)
        sends = [s.request_id for s in shop.outbox.sends]
        decisions = [(d.rule_id, d.user_id, d.outcome, d.reason) for d in shop.outbox.decisions]
        return sends, decisions

    shortcut = await run()
    monkeypatch.setattr("triggers.fold._scores_moved_nothing", lambda *args: False)
    assert await run() == shortcut
    assert shortcut[0]  # something was sent at all

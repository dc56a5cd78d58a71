"""Trigger kinds, guards and rule tooling on a live worker (real broker, real Redis).

As in test_worker.py, "did not send" is checked after a later effect proves the worker
got past the point where it would have sent: a later send, a decision on the decisions
topic followed by a marker send, or the user's timers leaving Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from profiles import UnsubscribeSigner

from ..conftest import TEST_BRAND
from .conftest import UNSUBSCRIBE_KEY, Kafka, RedisView, WorkerEnv, WorkerProcess

Env = Callable[..., WorkerEnv]
Start = Callable[[WorkerEnv], WorkerProcess]
View = Callable[..., RedisView]
NUDGE = Path(sys.executable).parent / "nudge"

HEAD = """\
version: 1
custom_events: [marker]
rules:
  - id: marker
    kind: on_event
    events: [marker]
    category: transactional
    template: welcome
"""


def ev(kind: str, user: str, /, **props: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "user_id": user,
        "ts": datetime.now(UTC).isoformat(),
        "properties": props,
    }


def signup(user: str, **extra: Any) -> dict[str, Any]:
    return ev(
        "signup",
        user,
        email=f"{user}@example.com",
        first_name="Ada",
        consent={"email": True},
        **extra,
    )


async def marker(kafka: Kafka, env: WorkerEnv, user: str) -> None:
    """Send a marker event and wait for its (transactional) mail: everything before it is done."""
    await kafka.produce(env.events_topic, ev("marker", user))
    assert await kafka.wait_for_sends(env.send_topic, user, "marker")


async def test_absence_correlated_by_product(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(
        rules=HEAD
        + """\
  - id: browse
    kind: absence
    start: [product_view]
    cancel: [add_to_cart, purchase]
    key: product_id
    wait: 2s
    template: browse_abandonment
"""
    )
    start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(
        env.events_topic,
        signup("ann"),
        ev("product_view", "ann", product_id="p1", name="Kettle"),
        ev("product_view", "ann", product_id="p2", name="Lamp"),
        ev("add_to_cart", "ann", product_id="p1", name="Kettle", price=59.0),
    )
    [sent] = await kafka.wait_for_sends(env.send_topic, "ann", "browse")
    assert sent["subject"] == "Still thinking about Lamp?"
    await view.wait_until(lambda: _no_timer(view, "ann", "browse"))
    assert len(await kafka.sends(env.send_topic, "ann", "browse")) == 1


async def _no_timer(view: RedisView, user: str, rule: str) -> bool:
    return not [t for t in await view.pending(user) if t.rule_id == rule]


async def test_inactivity_counts_only_listed_events(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(
        rules=HEAD
        + """\
  - id: buyer_winback
    kind: inactivity
    events: [purchase]
    wait: 3s
    template: winback
"""
    )
    start_worker(env)
    purchase = ev("purchase", "bea", order_id="o1", total=10.0)
    await kafka.produce(env.events_topic, signup("bea"), purchase)
    await kafka.produce(env.events_topic, ev("page_view", "bea", url="/"))  # not activity
    [sent] = await kafka.wait_for_sends(env.send_topic, "bea", "buyer_winback")
    assert sent["trigger_event_id"] == purchase["event_id"]


async def test_quiet_hours_defer_a_send_to_their_end(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(seconds=8)
    env = worker_env(
        rules=HEAD.replace(
            "version: 1\n",
            f"""version: 1
guards:
  quiet_hours: {{start: "{start:%H:%M:%S}", end: "{end:%H:%M:%S}"}}
""",
        )
        + """\
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
"""
    )
    start_worker(env)
    await kafka.produce(env.events_topic, signup("cleo"))
    held = ("welcome", "deferred", "quiet_hours")
    assert held in await kafka.wait_for_decision(env.decisions_topic, "cleo", held)
    assert await kafka.sends(env.send_topic, "cleo", "welcome") == []
    [sent] = await kafka.wait_for_sends(env.send_topic, "cleo", "welcome")
    assert datetime.fromisoformat(sent["created_at"]) >= end.replace(microsecond=0)


async def test_frequency_cap_and_arbitration(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(
        rules=HEAD.replace(
            "version: 1\n",
            """version: 1
guards:
  frequency_cap: {max: 2, window: 1h}
""",
        )
        + """\
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
  - id: promo
    kind: on_event
    events: [page_view]
    template: welcome
"""
    )
    start_worker(env)
    cart = ev("add_to_cart", "dora", product_id="p", price=1.0)
    await kafka.produce(env.events_topic, signup("dora"), cart)  # cart_push beats cart_nudge
    await kafka.produce(env.events_topic, ev("page_view", "dora", url="/"))  # promo: send 2
    await kafka.produce(env.events_topic, ev("page_view", "dora", url="/x"))  # capped
    await marker(kafka, env, "dora")
    decisions = await kafka.decisions(env.decisions_topic, "dora")
    assert ("cart_nudge", "suppressed", "arbitration") in decisions
    assert ("promo", "suppressed", "frequency_cap") in decisions
    sent = [s["rule_id"] for s in await kafka.sends(env.send_topic, "dora")]
    assert sent == ["cart_push", "promo", "marker"]


async def test_an_invalid_address_from_profile_update_is_never_mailed(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(  # no quiet hours configured: marketing mail goes out at any hour
        rules=HEAD
        + """\
  - id: promo
    kind: on_event
    events: [page_view]
    template: welcome
"""
    )
    worker = start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(
        env.events_topic,
        signup("ivy"),
        ev("profile_update", "ivy", traits={"email": "not an email", "plan": "pro"}),
        ev("page_view", "ivy", url="/"),
    )
    held = ("promo", "suppressed", "invalid_email")
    assert held in await kafka.wait_for_decision(env.decisions_topic, "ivy", held)
    await view.wait_until(lambda: _address(view, "ivy", None, "not an email"))
    verdict = _explain_rule(env, worker, "ivy", "promo")
    assert verdict.startswith("promo: suppressed: invalid_email")
    await kafka.produce(
        env.events_topic,
        ev("profile_update", "ivy", traits={"email": " Ivy@Example.COM "}),
        ev("page_view", "ivy", url="/again"),
    )
    [sent] = await kafka.wait_for_sends(env.send_topic, "ivy", "promo")
    assert sent["to"] == "Ivy@example.com"
    assert [s["to"] for s in await kafka.sends(env.send_topic, "ivy")] == ["Ivy@example.com"]
    # the decisions topic names users by id only: no address (valid or not), no name
    published = b"".join(r.value for r in await kafka.read_all(env.decisions_topic))
    assert b'"invalid_email"' in published and b'"ok"' in published
    for personal in (b"ivy@example.com", b"Ivy@example.com", b"not an email", b"Ada"):
        assert personal not in published, personal


async def test_a_hard_bounce_holds_every_mail_until_a_new_address(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(
        rules=HEAD
        + """\
  - id: promo
    kind: on_event
    events: [page_view]
    template: welcome
"""
    )
    worker = start_worker(env)
    refused = {"email": "kit@example.com", "kind": "hard", "code": 550, "detail": "5.1.1 gone"}
    await kafka.produce(
        env.events_topic,
        signup("kit"),
        ev("bounce", "kit", **refused, message_id="m1"),
        ev("page_view", "kit", url="/"),  # marketing
        ev("marker", "kit"),  # transactional
    )
    held = ("marker", "suppressed", "undeliverable")
    found = await kafka.wait_for_decision(env.decisions_topic, "kit", held)
    assert held in found and ("promo", "suppressed", "undeliverable") in found
    run = subprocess.run(
        [str(NUDGE), "explain", "kit", "--rule", "promo", "--config", str(env.config_dir)],
        env=env.environ(worker.port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("promo: suppressed: undeliverable (hard bounce ")
    assert "email kit@example.com (undeliverable: hard bounce " in run.stdout
    await kafka.produce(
        env.events_topic,
        ev("profile_update", "kit", traits={"email": "kit@new.example"}),
        ev("marker", "kit"),
    )
    [sent] = await kafka.wait_for_sends(env.send_topic, "kit", "marker")
    assert sent["to"] == "kit@new.example"
    published = b"".join(r.value for r in await kafka.read_all(env.decisions_topic))
    assert b"kit@" not in published  # decisions name users by id only


async def _address(view: RedisView, user: str, email: str | None, invalid: str | None) -> bool:
    profile = (await view.profile(user)).profile
    return profile is not None and (profile.email, profile.email_invalid) == (email, invalid)


async def test_sequence_steps_and_exit(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(
        rules=HEAD
        + """\
  - id: series
    kind: sequence
    start: [signup]
    exit: [purchase]
    steps:
      - template: welcome
      - delay: 3s
        template: welcome_tips
"""
    )
    start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(env.events_topic, signup("eve"), signup("fay"))
    await kafka.produce(env.events_topic, ev("purchase", "eve", order_id="o", total=1.0))
    steps = await kafka.wait_for_sends(env.send_topic, "fay", "series", count=2)
    assert [s["template"] for s in steps] == ["welcome", "welcome_tips"]
    await view.wait_until(lambda: _no_timer(view, "eve", "series"))
    assert [s["template"] for s in await kafka.sends(env.send_topic, "eve", "series")] == [
        "welcome"
    ]


async def test_explain_shows_profile_timers_and_decisions(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="1h")
    worker = start_worker(env)
    await kafka.produce(
        env.events_topic,
        signup("gil"),
        ev("add_to_cart", "gil", product_id="mug", price=14.0, cart_id="c1"),
    )
    view = redis_view(env.keys)
    await view.wait_until(lambda: _has_timer(view, "gil", "cart_abandonment"))
    run = subprocess.run(
        [str(NUDGE), "explain", "gil", "--config", str(env.config_dir)],
        env=env.environ(worker.port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "email gil@example.com  consent yes" in run.stdout
    assert "cart 1 item(s), 14.00" in run.stdout
    assert "cart_abandonment" in run.stdout.split("pending timers:")[1]
    assert "welcome: fired (ok)" in run.stdout
    # the worker of this test holds no model
    assert "predictions: not scored yet (no model loaded, or no event since it was)" in run.stdout
    report = subprocess.run(
        [str(NUDGE), "explain", "gil", "--json", "--config", str(env.config_dir)],
        env=env.environ(worker.port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    data = orjson.loads(report.stdout)
    assert {t["rule_id"] for t in data["pending_timers"]} == {"cart_abandonment", "winback"}
    assert data["predictions"]["scored"] is False
    missing = subprocess.run(
        [str(NUDGE), "explain", "nobody", "--config", str(env.config_dir)],
        env=env.environ(worker.port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "no profile for user 'nobody'" in missing.stderr


async def _has_timer(view: RedisView, user: str, rule: str) -> bool:
    return not await _no_timer(view, user, rule)


async def test_hot_reload_swaps_valid_rules_and_keeps_them_on_invalid_ones(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(rules=HEAD)
    worker = start_worker(env)
    rules_file = env.config_dir / "rules.yaml"
    rules_file.write_text(
        TEST_BRAND
        + HEAD
        + """\
  - id: hello
    kind: on_event
    events: [page_view]
    template: welcome
"""
    )
    await _wait_metric(worker, "applied", 1)
    await kafka.produce(env.events_topic, signup("hal"), ev("page_view", "hal", url="/"))
    [hello] = await kafka.wait_for_sends(env.send_topic, "hal", "hello")
    # the reloaded rules sign with the worker's key, not the development one
    link = hello["headers"]["List-Unsubscribe"].strip("<>")
    assert f"<{link}>" in hello["text"]
    token = link.removeprefix("https://example.com/u/")
    signer = UnsubscribeSigner([UNSUBSCRIBE_KEY.encode()])
    assert signer.verify(token, datetime.now(UTC)).user_id == "hal"

    rules_file.write_text(
        rules_file.read_text().replace(
            "kind: on_event\n    events: [page", "kind: on_whim\n    events: [page"
        )
    )
    await _wait_metric(worker, "rejected", 1)
    assert "config reload (config changed) rejected" in worker.log.read_text()
    await kafka.produce(env.events_topic, ev("page_view", "hal", url="/again"))
    assert len(await kafka.wait_for_sends(env.send_topic, "hal", "hello", count=2)) == 2

    rules_file.write_text(HEAD)
    os.kill(worker.proc.pid, signal.SIGHUP)
    await _wait_metric(worker, "applied", 2)


async def _wait_metric(worker: WorkerProcess, result: str, value: float) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 30
    while worker.metric("nudge_config_reloads_total", result=result) < value:
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.2)


async def test_a_cart_without_cart_id_is_reminded_once(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="2s", winback_wait="1h")
    start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(
        env.events_topic,
        signup("nia"),
        ev("add_to_cart", "nia", product_id="mug", name="Mug", price=14.0),  # no cart_id
    )
    [sent] = await kafka.wait_for_sends(env.send_topic, "nia", "cart_abandonment")
    assert "Mug" in sent["text"]
    await view.wait_until(lambda: _no_timer(view, "nia", "cart_abandonment"))
    # a later send proves the worker got past any second reminder
    await kafka.produce(env.events_topic, ev("purchase", "nia", order_id="o1", total=14.0))
    assert await kafka.wait_for_sends(env.send_topic, "nia", "receipt")
    assert len(await kafka.sends(env.send_topic, "nia", "cart_abandonment")) == 1


async def test_a_time_based_segment_is_entered_with_no_event_from_the_user(
    worker_env: Env, start_worker: Start, kafka: Kafka
) -> None:
    env = worker_env(
        rules=HEAD
        + """\
  - id: gone_quiet
    kind: segment_entry
    segment: quiet
    category: transactional
    template: welcome
segments:
  quiet: "not within(profile.last_seen, '4s')"
"""
    )
    start_worker(env)
    event = signup("ola")
    await kafka.produce(env.events_topic, event)
    [sent] = await kafka.wait_for_sends(env.send_topic, "ola", "gone_quiet", timeout=60)
    crossing = datetime.fromisoformat(event["ts"]) + timedelta(seconds=4)
    late = datetime.fromisoformat(sent["created_at"]) - crossing
    # one sweep interval (1 s) and the whole-second moment (1 s) at most, with slack
    assert timedelta(0) < late < timedelta(seconds=4), late


async def test_reload_cancels_the_timers_of_a_removed_rule(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="1h", winback_wait="1h")
    worker = start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(
        env.events_topic,
        signup("pam"),
        ev("add_to_cart", "pam", product_id="mug", price=14.0, cart_id="c1"),
    )
    await view.wait_until(lambda: _has_timer(view, "pam", "cart_abandonment"))
    rules_file = env.config_dir / "rules.yaml"
    text = rules_file.read_text()
    start, end = text.index("  - id: cart_abandonment"), text.index("  - id: winback")
    rules_file.write_text(text[:start] + text[end:])
    await _wait_metric(worker, "applied", 1)
    cancelled = ("cart_abandonment", "cancelled", "rule_removed")
    assert cancelled in await kafka.wait_for_decision(env.decisions_topic, "pam", cancelled)
    assert not await _has_timer(view, "pam", "cart_abandonment")
    assert await _has_timer(view, "pam", "winback")  # the rules that stay keep theirs


def _explain_rule(env: WorkerEnv, worker: WorkerProcess, user: str, rule: str) -> str:
    run = subprocess.run(
        [str(NUDGE), "explain", user, "--rule", rule, "--config", str(env.config_dir)],
        env=env.environ(worker.port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()[0]


async def test_explain_rule_gives_a_one_line_verdict(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    env = worker_env(cart_wait="1h", winback_wait="1h")
    worker = start_worker(env)
    view = redis_view(env.keys)
    await kafka.produce(
        env.events_topic,
        signup("quin"),
        ev("add_to_cart", "quin", product_id="mug", price=14.0, cart_id="c1"),
        signup("rae"),
        ev("add_to_cart", "rae", product_id="mug", price=14.0, cart_id="c2"),
        ev("purchase", "rae", order_id="o1", total=14.0, cart_id="c2"),
        signup("sol") | {"properties": {"email": "sol@example.com", "consent": {"email": False}}},
    )
    no_consent = ("welcome", "suppressed", "no_consent")
    assert no_consent in await kafka.wait_for_decision(env.decisions_topic, "sol", no_consent)
    await view.wait_until(lambda: _has_timer(view, "quin", "cart_abandonment"))
    [timer] = [t for t in await view.pending("quin") if t.rule_id == "cart_abandonment"]
    due = datetime.fromtimestamp(timer.due_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    pending = _explain_rule(env, worker, "quin", "cart_abandonment")
    assert pending == f"cart_abandonment: pending, due {due}"
    assert _explain_rule(env, worker, "quin", "welcome").startswith("welcome: fired at ")
    cancelled = _explain_rule(env, worker, "rae", "cart_abandonment")
    assert cancelled.startswith("cart_abandonment: cancelled by purchase at ")
    suppressed = _explain_rule(env, worker, "sol", "welcome")
    assert suppressed.startswith("welcome: suppressed: no_consent")


async def test_leaving_a_subscription_stops_only_its_mail(
    worker_env: Env, start_worker: Start, kafka: Kafka, redis_view: View
) -> None:
    # no quiet hours in this config: the marketing mail goes out whatever the time of day
    env = worker_env(
        rules=HEAD.replace("rules:\n", "subscriptions: [newsletter, reminders]\nrules:\n")
        + """\
  - id: cart
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    key: cart_id
    wait: 2s
    subscription: reminders
    template: cart_abandonment
  - id: browse
    kind: on_event
    events: [product_view]
    subscription: reminders
    template: browse_abandonment
  - id: news
    kind: on_event
    events: [page_view]
    subscription: newsletter
    template: welcome
"""
    )
    start_worker(env)
    view = redis_view(env.keys)
    cart = {"product_id": "mug", "name": "Mug", "price": 14.0}
    await kafka.produce(
        env.events_topic,
        signup("uma"),
        ev("add_to_cart", "uma", cart_id="c1", **cart),
        ev("unsubscribe", "uma", category="reminders", source="unsubscribe_link"),
        ev("product_view", "uma", product_id="mug", name="Mug"),
        ev("page_view", "uma", url="/"),
        signup("val"),  # the same, without leaving reminders
        ev("add_to_cart", "val", cart_id="c2", **cart),
        ev("product_view", "val", product_id="mug", name="Mug"),
    )
    cancelled = ("cart", "cancelled", "unsubscribe")
    assert cancelled in await kafka.wait_for_decision(env.decisions_topic, "uma", cancelled)
    suppressed = ("browse", "suppressed", "unsubscribed_category")
    assert suppressed in await kafka.wait_for_decision(env.decisions_topic, "uma", suppressed)
    assert await kafka.wait_for_sends(env.send_topic, "uma", "news")
    # val's cart reminder was due after uma's would have been: by now uma's would be out
    assert await kafka.wait_for_sends(env.send_topic, "val", "cart")
    await marker(kafka, env, "uma")
    assert {s["rule_id"] for s in await kafka.sends(env.send_topic, "uma")} == {"news", "marker"}
    assert {s["rule_id"] for s in await kafka.sends(env.send_topic, "val")} == {"cart", "browse"}
    assert not await _has_timer(view, "uma", "cart")
    profile = (await view.profile("uma")).profile
    assert profile is not None
    assert (profile.email_consent, profile.unsubscribed) == (True, ["reminders"])
    assert [c.source for c in profile.consent_log] == ["signup", "unsubscribe_link"]

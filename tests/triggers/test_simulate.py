"""``nudge simulate`` on the shipped config: every kind and guard, on virtual time."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from streams.cli import cli

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def ev(n: int, kind: str, user: str, at: timedelta, /, **props: Any) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "type": kind,
        "user_id": user,
        "ts": (T0 + at).isoformat(),
        "properties": props,
    }


def signup(user: str, consent: bool = True, **extra: Any) -> dict[str, Any]:
    return ev(
        0,
        "signup",
        user,
        timedelta(0),
        email=f"{user}@example.com",
        first_name=user.title(),
        consent={"email": consent},
        **extra,
    )


def scenario() -> list[dict[str, Any]]:
    h = timedelta(hours=1)
    kettle = {"product_id": "kettle", "name": "Kettle", "category": "kitchen", "price": 59.0}
    return [
        # ada: welcome series, browse and cart abandonment, then silence (winback)
        signup("ada"),
        ev(1, "product_view", "ada", 1 * h, **kettle),
        ev(2, "add_to_cart", "ada", 1 * h, product_id="mug", price=14.0, cart_id="c1"),
        ev(3, "product_view", "ada", 50 * h, product_id="lamp"),  # browse is once only
        # grace: a big first order thanks her and ends her welcome series
        signup("grace"),
        ev(1, "purchase", "grace", 2 * h, order_id="o1", total=150.0, currency="EUR"),
        # edsger: no consent, no marketing mail
        signup("edsger", consent=False),
        ev(1, "add_to_cart", "edsger", 1 * h, product_id="mug", price=14.0, cart_id="c2"),
        # barbara: birthday at 9:00 in Paris, signs up late at night (quiet hours)
        signup("barbara", timezone="Europe/Paris") | {"ts": (T0 + 12 * h).isoformat()},
        ev(1, "profile_update", "barbara", 13 * h, traits={"birthday": "1991-03-20"}),
        # linus: a price alert and a VIP-making purchase within the frequency cap
        signup("linus"),
        ev(1, "price.alert", "linus", 1 * h, name="Kettle", price=39.0),
        ev(2, "purchase", "linus", 2 * h, order_id="o2", total=600.0),
        ev(3, "price.alert", "linus", 3 * h, name="Kettle", price=35.0),
        # kim: engaged reader, then VIP, then capped (3 marketing mails a day)
        signup("kim"),
        *[ev(n, "email_open", "kim", 1 * h, message_id="m") for n in (1, 2, 3)],
        *[ev(n, "email_click", "kim", 1 * h, message_id="m", url="/") for n in (4, 5)],
        ev(6, "purchase", "kim", 2 * h, order_id="o3", total=600.0),
        ev(7, "price.alert", "kim", 3 * h, name="Kettle", price=39.0),
        # lee: browse and cart abandonment fall due together; the cart has priority
        signup("lee"),
        ev(1, "product_view", "lee", 1 * h, product_id="kettle", name="Kettle"),
        ev(2, "add_to_cart", "lee", 24 * h, product_id="mug", price=14.0, cart_id="c9"),
        # one line that is not an event at all
        {"not": "an event"},
    ]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in scenario()))
    return path


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["simulate", "--config", str(REPO / "config"), *args])
    assert result.exit_code == 0, result.output
    return result.output


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def sends_by(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for send in read(path):
        out.setdefault(send["user_id"], []).append(send["rule_id"])
    return out


def test_every_kind_and_guard_on_virtual_time(events: Path, tmp_path: Path) -> None:
    out, decisions = tmp_path / "sends.jsonl", tmp_path / "decisions.jsonl"
    until = (T0 + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S%z")
    table = run(
        "--events", str(events), "--until", until, "--out", str(out), "--decisions", str(decisions)
    )
    assert "26 events" in table and "1 invalid" in table
    sent = sends_by(out)
    assert sent["ada"] == [
        "welcome",
        "cart_abandonment",
        "browse_abandonment",
        "welcome",
        "welcome",
        "winback",
    ]
    assert sent["grace"] == ["welcome", "order_thanks", "winback"]  # series ended by purchase
    assert "edsger" not in sent
    # each welcome step lands in her night and is deferred; the birthday is at 9:00
    assert sent["barbara"] == ["welcome", "welcome", "welcome", "birthday", "winback"]
    assert sent["linus"][:4] == ["welcome", "price_alert", "order_thanks", "vip_welcome"]
    by_user: dict[str, list[tuple[str, str, str]]] = {}
    for d in read(decisions):
        by_user.setdefault(d["user_id"], []).append((d["rule_id"], d["outcome"], d["reason"]))
    assert ("welcome", "suppressed", "no_consent") in by_user["edsger"]
    assert ("cart_abandonment", "suppressed", "no_consent") in by_user["edsger"]
    assert ("welcome", "deferred", "quiet_hours") in by_user["barbara"]
    assert ("price_alert", "suppressed", "cooldown") in by_user["linus"]
    assert ("browse_abandonment", "suppressed", "already_sent") in by_user["ada"]
    assert sent["kim"][:4] == ["welcome", "engaged_reader", "order_thanks", "vip_welcome"]
    assert ("price_alert", "suppressed", "frequency_cap") in by_user["kim"]
    # winback waits for the hour she opened mail at (send_at: best_hour); ada never
    # opened mail, so hers waits for the hour the shop's readers open it at: kim's
    assert ("winback", "deferred", "best_hour") in by_user["kim"]
    winbacks = {s["user_id"]: s["created_at"] for s in read(out) if s["rule_id"] == "winback"}
    assert winbacks["kim"] == "2026-04-02T11:00:00Z"
    [ada_waits] = [
        d for d in read(decisions) if d["user_id"] == "ada" and d["reason"] == "best_hour"
    ]
    assert "the population's best hour" in ada_waits["detail"]
    assert winbacks["ada"].endswith("T11:00:00Z")
    assert ("cart_abandonment", "fired", "ok") in by_user["lee"]
    assert ("browse_abandonment", "suppressed", "arbitration") in by_user["lee"]
    barbara_welcome = next(s for s in read(out) if s["user_id"] == "barbara")
    assert barbara_welcome["created_at"] == "2026-03-03T07:00:00Z"  # 08:00 in Paris
    birthday = next(s for s in read(out) if s["rule_id"] == "birthday")
    assert birthday["created_at"] == "2026-03-20T08:00:00Z"  # 09:00 in Paris
    assert "welcome" in table and "suppressed" in table


def test_output_is_byte_identical_across_runs(events: Path, tmp_path: Path) -> None:
    outputs = []
    for n in range(2):
        out, dec = tmp_path / f"s{n}.jsonl", tmp_path / f"d{n}.jsonl"
        table = run(
            "--events",
            str(events),
            "--until",
            "2026-05-01",
            "--out",
            str(out),
            "--decisions",
            str(dec),
        )
        outputs.append((table, out.read_bytes(), dec.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][1].count(b"\n") > 10


def test_without_until_pending_timers_do_not_fire(events: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    run("--events", str(events), "--out", str(out))
    assert "winback" not in {s["rule_id"] for s in read(out)}


def test_compare_shows_what_a_rule_change_adds_and_removes(events: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(REPO / "config", other)
    rules = yaml.safe_load((other / "rules.yaml").read_text())
    for rule in rules["rules"]:
        if rule["id"] == "browse_abandonment":
            rule["enabled"] = False
    (other / "rules.yaml").write_text(yaml.safe_dump(rules))
    table = run("--events", str(events), "--until", "2026-05-01", "--compare", str(other))
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"with {other}"))
    diff = lines[start:]
    assert diff[0].endswith(": +0 / -1 sends")
    assert any(line.startswith("  - [browse_abandonment] ada:") for line in diff)


def test_a_cart_without_cart_id_is_reminded_once(tmp_path: Path) -> None:
    events, out, decisions = tmp_path / "e.jsonl", tmp_path / "s.jsonl", tmp_path / "d.jsonl"
    ten = timedelta(minutes=10)
    lines = [
        signup("nia"),
        ev(1, "add_to_cart", "nia", ten, product_id="mug", price=14.0),
        ev(2, "add_to_cart", "nia", 2 * ten, product_id="cup", price=4.0),
    ]
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    table = run(
        "--events",
        str(events),
        "--until",
        "2026-03-03",
        "--out",
        str(out),
        "--decisions",
        str(decisions),
    )
    [cart] = [s for s in read(out) if s["rule_id"] == "cart_abandonment"]
    assert cart["created_at"] == (T0 + 2 * ten + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cart_decisions = [
        (d["outcome"], d["reason"]) for d in read(decisions) if d["rule_id"] == "cart_abandonment"
    ]
    assert cart_decisions == [
        ("scheduled", "add_to_cart"),
        ("rescheduled", "add_to_cart"),
        ("fired", "ok"),
    ]
    assert "cart_abandonment" in table


def test_leaving_reminders_stops_only_the_shipped_reminders(tmp_path: Path) -> None:
    """The shipped subscriptions: a user who leaves ``reminders`` gets neither the cart
    reminder pending then nor a later price alert, and still the welcome series."""
    events, out, decisions = tmp_path / "e.jsonl", tmp_path / "s.jsonl", tmp_path / "d.jsonl"
    minutes = timedelta(minutes=1)
    lines = [
        signup("olga"),
        ev(1, "add_to_cart", "olga", 5 * minutes, product_id="mug", price=14.0, cart_id="c1"),
        ev(2, "unsubscribe", "olga", 10 * minutes, category="reminders", source="support"),
        ev(3, "price.alert", "olga", 2 * timedelta(hours=1), name="Kettle", price=39.0),
    ]
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    args = ["--events", str(events), "--until", "2026-03-12"]
    run(*args, "--out", str(out), "--decisions", str(decisions))
    assert [s["rule_id"] for s in read(out)] == ["welcome", "welcome", "welcome"]
    olga = [(d["rule_id"], d["outcome"], d["reason"]) for d in read(decisions)]
    assert ("cart_abandonment", "cancelled", "unsubscribe") in olga
    assert ("price_alert", "suppressed", "unsubscribed_category") in olga


def simulate_with_rule(
    tmp_path: Path,
    rule: dict[str, Any],
    lines: list[dict[str, Any]],
    until: str,
    segments: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The send requests of ``lines`` through the shipped config plus ``rule`` (and
    ``segments``)."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    rules = yaml.safe_load((config / "rules.yaml").read_text())
    rules["rules"].append(rule)
    rules["segments"].update(segments or {})
    (config / "rules.yaml").write_text(yaml.safe_dump(rules))
    events, out = tmp_path / "e.jsonl", tmp_path / "s.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    args = ["--config", str(config), "--events", str(events), "--until", until]
    result = CliRunner().invoke(cli, ["simulate", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return read(out)


def test_a_time_based_segment_is_entered_with_no_event(tmp_path: Path) -> None:
    rule = {"id": "lapsed_offer", "kind": "segment_entry", "segment": "lapsed_buyer"}
    lines = [
        signup("omar"),
        ev(1, "purchase", "omar", timedelta(hours=1), order_id="o", total=20.0),
    ]
    sends = simulate_with_rule(tmp_path, {**rule, "template": "winback"}, lines, "2026-07-01")
    [offer] = [s for s in sends if s["rule_id"] == "lapsed_offer"]
    # 90 days after the purchase, within the second the segment condition turns true
    crossing = T0 + timedelta(hours=1, days=90)
    sent_at = datetime.fromisoformat(offer["created_at"])
    assert crossing < sent_at <= crossing + timedelta(seconds=1)


def test_a_lifecycle_segment_is_entered_by_time_alone(tmp_path: Path) -> None:
    rule = {"id": "at_risk_offer", "kind": "segment_entry", "segment": "at_risk"}
    lines = [
        signup("una"),
        ev(1, "purchase", "una", timedelta(hours=1), order_id="o", total=20.0),
    ]
    segments = {"at_risk": "profile.lifecycle == 'at_risk'"}
    sends = simulate_with_rule(
        tmp_path, {**rule, "template": "winback"}, lines, "2026-07-01", segments
    )
    [offer] = [s for s in sends if s["rule_id"] == "at_risk_offer"]
    # new for 30 days, active until 60 days after the purchase, then at risk: no event
    crossing = T0 + timedelta(hours=1, days=60)
    sent_at = datetime.fromisoformat(offer["created_at"])
    assert crossing < sent_at <= crossing + timedelta(seconds=1)


def test_an_invalid_address_from_profile_update_is_never_mailed(tmp_path: Path) -> None:
    h = timedelta(hours=1)
    mug = {"product_id": "mug", "price": 14.0, "cart_id": "c1"}
    events = [
        signup("ivy"),
        ev(1, "profile_update", "ivy", 1 * h, traits={"email": "not an email", "plan": "pro"}),
        ev(2, "add_to_cart", "ivy", 1 * h, **mug),
        signup("jo"),
        ev(1, "profile_update", "jo", 1 * h, traits={"email": " Jo@Example.COM "}),
        ev(2, "add_to_cart", "jo", 1 * h, **mug),
    ]
    path, out, decisions = tmp_path / "e.jsonl", tmp_path / "s.jsonl", tmp_path / "d.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    until = (T0 + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%S%z")
    run("--events", str(path), "--until", until, "--out", str(out), "--decisions", str(decisions))
    sends = read(out)
    assert [(s["rule_id"], s["to"]) for s in sends if s["user_id"] == "ivy"] == [
        ("welcome", "ivy@example.com")  # sent at signup, before the address changed
    ]
    assert [(s["rule_id"], s["to"]) for s in sends if s["user_id"] == "jo"] == [
        ("welcome", "jo@example.com"),
        ("cart_abandonment", "Jo@example.com"),  # normalised: the local part keeps its case
        ("welcome", "Jo@example.com"),
    ]
    held = [
        (d["rule_id"], d["outcome"], d["reason"], d["detail"])
        for d in read(decisions)
        if d["user_id"] == "ivy" and d["reason"] == "invalid_email"
    ]
    assert held == [
        ("cart_abandonment", "suppressed", "invalid_email", "not an address: 'n***'"),
        ("welcome", "suppressed", "invalid_email", "not an address: 'n***'"),
    ]


def test_a_below_threshold_waits_for_a_real_crossing(tmp_path: Path) -> None:
    rule = {"id": "cooling_off", "kind": "threshold", "value": "profile.score", "below": 10}
    lines = [
        signup("pia"),  # score 0: below 10 from the start, which is no crossing
        signup("ron"),
        ev(1, "email_click", "ron", timedelta(hours=1), message_id="m", url="/"),  # 15
    ]
    sends = simulate_with_rule(tmp_path, {**rule, "template": "winback"}, lines, "2026-04-01")
    cooling = [s for s in sends if s["rule_id"] == "cooling_off"]
    assert [s["user_id"] for s in cooling] == ["ron"]
    # 15 decays to 10 after 14 * log2(1.5) days, with no event from ron
    crossing = T0 + timedelta(hours=1, days=14 * math.log2(1.5))
    sent_at = datetime.fromisoformat(cooling[0]["created_at"])
    assert crossing < sent_at <= crossing + timedelta(seconds=1)


def test_a_hard_bounce_holds_every_mail_until_a_new_address(tmp_path: Path) -> None:
    """``simulate`` folds a bounce and decides on it as the worker does: the cart reminder
    falling due after it and a transactional receipt are held; a new address is mailed."""
    h = timedelta(hours=1)
    mug = {"product_id": "mug", "price": 14.0, "cart_id": "c1"}
    refused = {"email": "kai@example.com", "kind": "hard", "code": 550, "message_id": "m"}
    events = [
        signup("kai"),
        ev(1, "add_to_cart", "kai", 0.5 * h, **mug),
        ev(2, "bounce", "kai", 0.6 * h, **refused),
        ev(3, "purchase", "kai", 2 * h, order_id="o1", total=150.0),
        ev(4, "profile_update", "kai", 3 * h, traits={"email": "kai@new.example"}),
        ev(5, "add_to_cart", "kai", 4 * h, product_id="cup", price=4.0, cart_id="c2"),
        signup("lin"),
        ev(1, "bounce", "lin", 0.5 * h, **refused | {"email": "lin@example.com", "kind": "soft"}),
        ev(2, "purchase", "lin", 2 * h, order_id="o2", total=150.0),
    ]
    path, out, decisions = tmp_path / "e.jsonl", tmp_path / "s.jsonl", tmp_path / "d.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    until = (T0 + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S%z")
    run("--events", str(path), "--until", until, "--out", str(out), "--decisions", str(decisions))
    sends = [(s["user_id"], s["rule_id"], s["to"]) for s in read(out)]
    # only the welcome reached the refused address, sent at signup before the bounce
    assert [rule for _, rule, to in sends if to == "kai@example.com"] == ["welcome"]
    assert ("kai", "cart_abandonment", "kai@new.example") in sends  # the second cart
    assert ("lin", "order_thanks", "lin@example.com") in sends  # a soft bounce holds nothing
    held = {
        (d["rule_id"], d["reason"])
        for d in read(decisions)
        if d["user_id"] == "kai" and d["outcome"] == "suppressed"
    }
    assert {("cart_abandonment", "undeliverable"), ("order_thanks", "undeliverable")} <= held


@pytest.mark.parametrize(
    ("after_deadline", "reminded"),
    [
        (timedelta(0), False),  # at the deadline: same moment, the purchase comes first
        (timedelta(milliseconds=999), False),  # still the deadline's second
        (timedelta(seconds=1), True),  # the next second: the reminder fired before it
    ],
)
def test_a_moments_events_come_before_the_timers_due_in_it(
    tmp_path: Path, after_deadline: timedelta, reminded: bool
) -> None:
    """As on a live worker, which sweeps a second's timers once that second has ended."""
    events, out = tmp_path / "e.jsonl", tmp_path / "s.jsonl"
    deadline = timedelta(minutes=5, hours=1)  # the shipped cart wait after the add
    lines = [
        signup("ola"),
        ev(1, "add_to_cart", "ola", timedelta(minutes=5), product_id="mug", price=14.0),
        ev(2, "purchase", "ola", deadline + after_deadline, order_id="o1", total=14.0),
    ]
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    run("--events", str(events), "--until", "2026-03-03", "--out", str(out))
    carts = [s for s in read(out) if s["rule_id"] == "cart_abandonment"]
    assert len(carts) == int(reminded)

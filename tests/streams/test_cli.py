"""The ``nudge`` command line as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import orjson
import pytest
import redis
from click.testing import CliRunner

from profiles import Keys, Product
from streams.cli import cli
from streams.embedded import free_port, is_listening
from triggers import Decision

from .conftest import ERASURE_KEY, UNSUBSCRIBE_KEY, Kafka

NUDGE = Path(sys.executable).parent / "nudge"
REPO = Path(__file__).resolve().parents[2]


def schema(contract: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["schema", contract])
    assert result.exit_code == 0, result.output
    document: dict[str, object] = orjson.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(document)
    return document


def test_event_schema_accepts_the_contract_and_rejects_violations() -> None:
    validator = jsonschema.Draft202012Validator(schema("event"))
    good = {
        "event_id": "e1",
        "type": "add_to_cart",
        "user_id": "u1",
        "ts": 1772366400000,
        "properties": {"product_id": "p1", "price": 3.5, "quantity": 2},
    }
    assert list(validator.iter_errors(good)) == []
    assert (
        list(validator.iter_errors({**good, "type": "custom.thing", "properties": {"x": 1}})) == []
    )
    missing_price = {**good, "properties": {"product_id": "p1"}}
    assert [e.message for e in validator.iter_errors(missing_price)] == [
        "'price' is a required property"
    ]
    assert list(validator.iter_errors({**good, "user_id": None}))


def test_send_request_schema_lists_the_mailer_fields() -> None:
    document = schema("send-request")
    assert set(document["required"]) >= {  # type: ignore[call-overload]
        "request_id",
        "user_id",
        "to",
        "rule_id",
        "template",
        "subject",
        "html",
        "text",
        "headers",
        "category",
        "trigger_event_id",
        "created_at",
    }


def test_decision_schema_accepts_what_the_engine_publishes() -> None:
    validator = jsonschema.Draft202012Validator(schema("decision"))
    at = datetime(2026, 3, 1, tzinfo=UTC)
    plain = Decision("welcome", "u1", "fired", "ok", "e1", at, request_id="r1")
    scored = Decision("churn_risk", "u1", "suppressed", "no_consent", "e2", at, model_version="v3")
    for decision in (plain, scored):
        assert list(validator.iter_errors(orjson.loads(decision.to_json()))) == []
    assert orjson.loads(scored.to_json())["model_version"] == "v3"
    assert list(validator.iter_errors({**orjson.loads(plain.to_json()), "outcome": "maybe"}))


def test_every_verb_has_help() -> None:
    verbs = [[name] for name in cli.commands]
    verbs += [
        [name, sub]
        for name, group in cli.commands.items()
        for sub in getattr(group, "commands", {})
    ]
    assert ["catalog", "load"] in verbs
    for verb in verbs:
        result = CliRunner().invoke(cli, [*verb, "--help"])
        assert result.exit_code == 0, verb
        assert "Usage: " in result.output


def test_catalog_load_puts_a_file_into_redis(tmp_path: Path, redis_url: str, keys: Keys) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text(
        '{"product_id": "mug", "name": "Mug", "price": 14, "category": "kitchen"}\n'
        '{"product_id": "lamp", "name": "Lamp", "price": 39.9}\n'
    )
    env = {"NUDGE_REDIS_URL": redis_url, "NUDGE_REDIS_PREFIX": keys.prefix}
    result = CliRunner().invoke(cli, ["catalog", "load", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert "loaded 2 products" in result.output
    client = redis.Redis.from_url(redis_url)
    try:
        stored = client.hmget(keys.catalog(), ["mug", "lamp"])
        mug, lamp = (Product.model_validate_json(doc) for doc in stored)  # type: ignore[union-attr]
        assert (mug.category, lamp.price) == ("kitchen", 39.9)
    finally:
        client.delete(keys.catalog())


def test_catalog_load_refuses_a_bad_file_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text('{"product_id": "mug", "name": "Mug", "price": 14}\n{"product_id": "x"}\n')
    result = CliRunner().invoke(cli, ["catalog", "load", str(path)])
    assert result.exit_code == 1
    assert f"error: {path}:2: name: Field required" in result.output
    assert "nothing loaded" in result.output


def test_worker_refuses_invalid_config_with_file_and_line(
    make_config: Callable[[str], Path],
) -> None:
    config = make_config(
        "version: 1\nrules:\n  - id: x\n    kind: absence\n    template: welcome\n"
    )
    run = subprocess.run(
        [str(NUDGE), "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "NUDGE_UNSUBSCRIBE_KEY": UNSUBSCRIBE_KEY,
            "NUDGE_ERASURE_KEY": ERASURE_KEY,
        },
    )
    assert run.returncode == 2
    assert f"{config}/rules.yaml:3: rules[0] (x).start: Field required" in run.stderr


async def test_produce_publishes_jsonl_keyed_by_user(
    kafka: Kafka, tmp_path: Path, unique: str
) -> None:
    topic = f"produce-{unique}"
    lines = [
        {
            "event_id": f"e{i}",
            "type": "page_view",
            "user_id": f"u{i}",
            "ts": 0,
            "properties": {"url": "/"},
        }
        for i in range(3)
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n\n{broken\n")
    env = {**os.environ, "NUDGE_KAFKA_BOOTSTRAP": kafka.bootstrap}
    run = subprocess.run(
        [str(NUDGE), "produce", str(path), "--topic", topic],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert f"published 4 message(s) to {topic}" in run.stdout
    records = await kafka.read_all(topic)
    assert sorted((r.key, r.value) for r in records if r.key) == [
        (f"u{i}".encode(), orjson.dumps(line)) for i, line in enumerate(lines)
    ]
    assert [r.value for r in records if r.key is None] == [b"{broken"]


@pytest.mark.integration
def test_dev_demo_starts_its_own_services_and_prints_emails(tmp_path: Path) -> None:
    """What ``make run`` does on a fresh machine: nothing running, emails within a minute."""
    env = {
        **os.environ,
        # nothing listens on these ports, so dev must start tansu and redis-server itself
        "NUDGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "NUDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "NUDGE_WEB_PORT": str(free_port()),
        "NUDGE_DATA_DIR": str(tmp_path / "data"),
        "NUDGE_CONFIG_DIR": str(REPO / "config"),
    }
    for made in ("NUDGE_UNSUBSCRIBE_KEY", "NUDGE_ERASURE_KEY"):
        env.pop(made, None)  # dev makes the keys for the run
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(NUDGE), "dev", "--demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    try:
        deadline = time.monotonic() + 60
        wanted = (  # as the SMTP sink received them, through the collector and the mailer
            "mail to Ada <ada@example.com>: Welcome, Ada!",
            "mail to Ada <ada@example.com>: Ada, you left 3 items in your cart",
        )
        while time.monotonic() < deadline and not all(w in log.read_text() for w in wanted):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        assert all(w in text for w in wanted), text
        assert "started tansu broker" in text
        assert "started redis-server" in text
        assert "edsger@example.com" not in text  # no consent, no marketing email
        assert "NUDGE_UNSUBSCRIBE_KEY is not set; using a key made for this run" in text
        assert "will not verify after it stops" in text
        [collector] = re.findall(r"collector at http://127\.0\.0\.1:(\d+)", text)
        # the mail's unsubscribe link leads to the collector
        assert f"Unsubscribe <http://127.0.0.1:{collector}/u/" in text
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at the terminal
        proc.wait(timeout=60)
    text = log.read_text()
    assert proc.returncode == 0, text
    # one clean line: no traceback, no reconnect errors, no terminal control codes
    after = text[text.index("mail to Ada <ada@example.com>: Ada, you left") :]
    assert text.rstrip().endswith("nudge dev: stopped"), text[-3000:]
    assert "Traceback" not in text and "ERROR" not in after and "\x1b" not in text, text[-3000:]
    assert not is_listening("127.0.0.1", int(collector))  # the collector stopped with it


def test_worker_without_a_broker_says_so(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NUDGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "NUDGE_CONFIG_DIR": str(REPO / "config"),
        "NUDGE_UNSUBSCRIBE_KEY": UNSUBSCRIBE_KEY,
        "NUDGE_ERASURE_KEY": ERASURE_KEY,
    }
    run = subprocess.run(
        [str(NUDGE), "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "Error: cannot reach Kafka at 127.0.0.1:" in run.stderr


EXPERIMENT_RULES = """\
version: 1
rules:
  - id: hello
    kind: on_event
    events: [signup]
    template: welcome
    holdout: 0.3
    variants:
      - {name: plain}
      - {name: tips, template: welcome_tips}
"""


def _signups(count: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"s{n}",
                "type": "signup",
                "user_id": f"user-{n}",
                "ts": f"2026-03-02T12:{n // 60:02d}:{n % 60:02d}+00:00",
                "properties": {"email": f"u{n}@example.com", "consent": {"email": True}},
            }
        )
        for n in range(count)
    ]


def test_nudge_simulate_prints_each_experiments_split(
    make_config: Callable[[str], Path], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(_signups(200)))
    config = make_config(EXPERIMENT_RULES)
    result = CliRunner().invoke(cli, ["simulate", "--events", str(events), "--config", str(config)])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("experiment hello:")]
    for arm in ("holdout", "plain", "tips"):
        assert f" {arm} " in line

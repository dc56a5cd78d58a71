"""Secret keys in the settings, the signer built from them, and the commands that need them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from profiles import InvalidToken, UnsubscribeSigner
from streams.cli import cli
from streams.settings import Settings
from streams.signing import (
    REQUIRED_SECRETS,
    missing_secrets,
    missing_secrets_message,
    unsubscribe_signer,
    with_ephemeral_secrets,
)

NUDGE = Path(sys.executable).parent / "nudge"
REPO = Path(__file__).resolve().parents[2]
KEY = "current-unsubscribe-key-0123456789abcdef"
OLD = "previous-unsubscribe-key-0123456789abcdef"
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NUDGE_UNSUBSCRIBE_KEY", "NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS", "NUDGE_ERASURE_KEY"):
        monkeypatch.delenv(name, raising=False)


# --- settings ------------------------------------------------------------------------------


def test_keys_never_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEY", KEY)
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS", OLD)
    monkeypatch.setenv("NUDGE_ERASURE_KEY", OLD + "-erasure")
    settings = Settings()
    assert settings.unsubscribe_key == SecretStr(KEY)
    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert KEY not in shown and OLD not in shown


@pytest.mark.parametrize(
    "env",
    [
        {"NUDGE_UNSUBSCRIBE_KEY": "too-short-but-secret"},
        {
            "NUDGE_UNSUBSCRIBE_KEY": KEY,
            "NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS": f"{OLD},too-short-secret",
        },
        {"NUDGE_UNSUBSCRIBE_KEY": KEY, "NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS": '["too-short-secret"]'},
    ],
)
def test_a_short_key_is_refused_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    text = f"{caught.value}\n{caught.value.errors()!r}\n{caught.value.json()}"
    assert "at least 32 characters" in text and MAKE_A_KEY in text
    assert "secret" not in text.replace("secrets", "")  # neither key appears


def test_no_validation_error_repeats_an_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_TOKEN_TTL", "sixty-days-of-secret")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "sixty-days-of-secret" not in f"{caught.value}{caught.value.errors()!r}"


def test_previous_keys_are_a_comma_separated_or_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEY", KEY)
    for value in (f"{OLD}, {KEY}", f'["{OLD}", "{KEY}"]'):
        monkeypatch.setenv("NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS", value)
        keys = Settings().unsubscribe_previous_keys
        assert [k.get_secret_value() for k in keys] == [OLD, KEY]
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS", "")
    assert Settings().unsubscribe_previous_keys == []


def test_previous_keys_need_a_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_PREVIOUS_KEYS", OLD)
    with pytest.raises(ValidationError, match="set NUDGE_UNSUBSCRIBE_KEY too") as caught:
        Settings()
    # an error about the whole model would otherwise carry every setting as its input
    assert OLD not in f"{caught.value.errors()!r}{caught.value.json()}"
    assert caught.value.__context__ is None  # nor does a traceback show the original error


# --- the signer ----------------------------------------------------------------------------


def test_the_current_key_signs_and_the_previous_ones_verify() -> None:
    settings = Settings(
        unsubscribe_key=KEY, unsubscribe_previous_keys=[OLD], unsubscribe_token_ttl=3600
    )
    signer = unsubscribe_signer(settings)
    assert signer.ttl == timedelta(hours=1)
    old_link = UnsubscribeSigner([OLD.encode()]).sign("ada", None, T0)
    assert signer.verify(old_link, T0).user_id == "ada"
    new_link = signer.sign("ada", None, T0)
    assert UnsubscribeSigner([KEY.encode()]).verify(new_link, T0).user_id == "ada"
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(new_link, T0 + timedelta(hours=2))  # NUDGE_UNSUBSCRIBE_TOKEN_TTL


def test_without_a_key_the_signer_is_the_development_one() -> None:
    signer = unsubscribe_signer(Settings())
    assert signer.development
    assert signer.ttl == timedelta(days=60)


def test_missing_secrets_are_listed_with_how_to_make_them() -> None:
    assert [s.variable for s in missing_secrets(Settings())] == [
        "NUDGE_UNSUBSCRIBE_KEY",
        "NUDGE_ERASURE_KEY",
    ]
    assert [s.variable for s in missing_secrets(Settings(unsubscribe_key=KEY))] == [
        "NUDGE_ERASURE_KEY"
    ]
    assert missing_secrets(Settings(unsubscribe_key=KEY, erasure_key=KEY)) == []
    assert missing_secrets(Settings(), "no_such_key") == []  # only those asked about
    message = missing_secrets_message(list(REQUIRED_SECRETS))
    assert "NUDGE_UNSUBSCRIBE_KEY is not set" in message and MAKE_A_KEY in message
    assert "NUDGE_ERASURE_KEY is not set" in message


def test_ephemeral_secrets_fill_what_is_missing_only() -> None:
    settings, made = with_ephemeral_secrets(Settings())
    assert made == list(REQUIRED_SECRETS) and missing_secrets(settings) == []
    assert settings.unsubscribe_key is not None
    assert len(settings.unsubscribe_key.get_secret_value()) >= 32
    assert not unsubscribe_signer(settings).development
    assert settings.erasure_key is not None
    assert settings.pseudonyms.user("u1") != Settings().pseudonyms.user("u1")
    kept, made = with_ephemeral_secrets(Settings(unsubscribe_key=KEY, erasure_key=KEY))
    assert made == [] and kept.unsubscribe_key == SecretStr(KEY)


# --- commands ------------------------------------------------------------------------------


def test_worker_refuses_to_start_without_its_keys_and_says_how_to_make_one() -> None:
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 2
    assert "error: NUDGE_UNSUBSCRIBE_KEY is not set" in result.output
    assert "NUDGE_ERASURE_KEY is not set" in result.output
    assert MAKE_A_KEY in result.output


def test_a_bad_setting_is_one_line_per_problem_and_never_the_value(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env["NUDGE_UNSUBSCRIBE_KEY"] = "short-secret-value"
    run = subprocess.run(
        [str(NUDGE), "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: NUDGE_UNSUBSCRIBE_KEY: a key must be at least 32")
    assert "Traceback" not in run.stderr and "short-secret-value" not in run.stderr


def test_unsubscribe_url_and_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEY", KEY)
    made = CliRunner().invoke(cli, ["unsubscribe", "url", "ada:{1}", "--category", "offers"])
    assert made.exit_code == 0, made.output
    url = made.output.strip()
    assert url.startswith("https://shop.example/u/")
    token = url.removeprefix("https://shop.example/u/")
    checked = CliRunner().invoke(cli, ["unsubscribe", "verify", token])
    assert checked.exit_code == 0, checked.output
    lines = checked.output.splitlines()
    assert lines[:2] == ["user_id   ada:{1}", "category  offers"]
    assert lines[2].startswith("issued    20")
    everything = CliRunner().invoke(cli, ["unsubscribe", "url", "ada"]).output.strip()
    verified = CliRunner().invoke(cli, ["unsubscribe", "verify", everything.rsplit("/", 1)[1]])
    assert "category  (none: every marketing mail)" in verified.output


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("nonsense!", "malformed"),
        (UnsubscribeSigner([OLD.encode()]).sign("ada", None, datetime.now(UTC)), "bad_signature"),
        (UnsubscribeSigner([KEY.encode()]).sign("ada", None, T0 - timedelta(days=400)), "expired"),
        (
            UnsubscribeSigner([KEY.encode()]).sign("ada", None, datetime(2100, 1, 1, tzinfo=UTC)),
            "from_future",
        ),
    ],
)
def test_unsubscribe_verify_exits_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, token: str, reason: str
) -> None:
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEY", KEY)
    result = CliRunner().invoke(cli, ["unsubscribe", "verify", token])
    assert result.exit_code == 2
    assert result.output.startswith(f"invalid token: {reason}")


def test_unsubscribe_commands_need_the_key_and_a_valid_category(
    monkeypatch: pytest.MonkeyPatch, make_config: Callable[[str], Path]
) -> None:
    result = CliRunner().invoke(cli, ["unsubscribe", "url", "ada"])
    assert result.exit_code == 2 and "NUDGE_UNSUBSCRIBE_KEY is not set" in result.output
    monkeypatch.setenv("NUDGE_UNSUBSCRIBE_KEY", KEY)
    config = make_config("version: 1\nsender:\n  unsubscribe_url: https://x.example/?t={token}\n")
    result = CliRunner().invoke(cli, ["unsubscribe", "url", "ada", "--config", str(config)])
    assert result.output.startswith("https://x.example/?t=")
    bad = ["unsubscribe", "url", "ada", "--config", str(config), "--category", "Not A Name"]
    result = CliRunner().invoke(cli, bad)
    assert result.exit_code == 2 and "is not a subscription name" in result.output

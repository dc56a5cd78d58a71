"""``nudge preview``: a template rendered for one profile by the worker's compose step."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner, Result

from profiles import Cart, CartLine, Keys, Profile, ProfileWrite, RedisProfileStore
from streams.cli import cli
from streams.preview import PreviewError, target
from triggers import load_rules

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ada(**fields: Any) -> Profile:
    cart = Cart(
        cart_id="c1",
        items={"sku-mug": CartLine(product_id="sku-mug", name="Enamel mug", price=14.0)},
    )
    base: dict[str, Any] = {
        "user_id": "ada",
        "email": "ada@example.com",
        "first_name": "Ada",
        "first_seen": T0,
        "last_seen": T0,
        "cart": cart,
    }
    return Profile(**(base | fields))


def preview(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["preview", *args, "--config", str(CONFIG)], env=env)


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "ada.json"
    path.write_text(ada().model_dump_json())
    return path


def test_a_profile_file_previews_subject_preheader_text_and_html(profile_file: Path) -> None:
    result = preview("cart_abandonment", "--profile", str(profile_file))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == [
        "Subject:   Ada, you left 1 item in your cart",
        "Preheader: 1 item still in your cart, $14.00 in total.",
    ]
    assert "--- text ---" in lines and "--- html ---" in lines
    # the catalog of the config directory: the item's link
    assert "Enamel mug <https://giftshop.example/kitchen/enamel-mug>" in result.output
    assert '<html lang="en-US">' in result.output


def test_out_writes_the_html_and_the_text_for_a_browser(profile_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = preview("cart_abandonment", "--profile", str(profile_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'preview.html'}" in result.output
    html = (out / "preview.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "Your cart is waiting" not in html
    assert "your cart is waiting" in html and 'style="' in html
    text = (out / "preview.txt").read_text()
    assert text.startswith("Subject: Ada, you left 1 item in your cart\nPreheader: 1 item")
    assert "--- html ---" not in result.output


def test_the_profiles_locale_picks_the_german_variant(tmp_path: Path) -> None:
    path = tmp_path / "ada.json"
    path.write_text(ada(locale="de-DE").model_dump_json())
    result = preview("cart_abandonment", "--profile", str(path))
    assert result.exit_code == 0, result.output
    assert "Subject:   Ada, in Ihrem Warenkorb liegt noch 1 Artikel" in result.output
    assert "14,00\xa0$" in result.output


def test_an_export_document_and_an_event(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    document = {"format": "nudge-export/1", "profile": ada().model_dump(mode="json")}
    export.write_bytes(orjson.dumps(document))
    event = tmp_path / "event.json"
    purchase = {
        "event_id": "e1",
        "type": "purchase",
        "user_id": "ada",
        "ts": "2026-03-01T12:00:00Z",
        "properties": {"order_id": "o-42", "total": 120.5, "currency": "EUR"},
    }
    event.write_bytes(orjson.dumps(purchase))
    result = preview("order_thanks", "--profile", str(export), "--event", str(event))
    assert result.exit_code == 0, result.output
    assert "Subject:   Thank you for your order o-42" in result.output
    assert "Preheader: €120.50, and we are packing it now." in result.output
    # transactional: no unsubscribe link
    assert "Unsubscribe" not in result.output


def test_missing_data_is_a_clear_error_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bob.json"
    path.write_text(Profile(user_id="bob", first_seen=T0, last_seen=T0).model_dump_json())
    result = preview("cart_abandonment", "--profile", str(path))
    assert result.exit_code == 1
    assert result.output == (
        "Error: cannot preview 'cart_abandonment': template 'cart_abandonment' requires "
        "cart.items, which is empty\n"
    )
    no_event = preview("order_thanks", "--profile", str(path))
    assert no_event.exit_code == 1
    assert "requires event.properties.order_id, which is not set" in no_event.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["welcome"], "give one of --user or --profile"),
        (["welcome", "--user", "u", "--profile", "{profile}"], "give one of --user or --profile"),
        (["welcome", "--profile", "{profile}", "--variant", "b"], "has a variant 'b'"),
        (["nonesuch", "--profile", "{profile}"], "template 'nonesuch' has no body.html"),
        (["welcome", "--profile", "{event}"], "not a profile"),
        (["welcome", "--profile", "{profile}", "--event", "{profile}"], "not an event"),
    ],
)
def test_bad_input_is_an_error_not_a_traceback(
    profile_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"event_id": "e", "type": "signup"}')
    filled = [a.format(profile=profile_file, event=event) for a in args]
    result = preview(*filled)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_variant_gives_its_subject_and_template() -> None:
    """Rules gain ``variants`` with experiments; the lookup reads them by name."""
    rules: Any = SimpleNamespace(
        config=SimpleNamespace(
            rules=[
                SimpleNamespace(id="other", template="welcome", variants=None),
                SimpleNamespace(
                    id="cart",
                    template="cart_abandonment",
                    variants=[
                        SimpleNamespace(name="a", subject=None, template=None),
                        {"name": "b", "subject": "Still there?"},
                        SimpleNamespace(name="c", subject=None, template="cart_c"),
                    ],
                ),
            ]
        )
    )
    b = target(rules, "cart_abandonment", "b")
    assert (b.rule.id, b.template, b.subject) == ("cart", "cart_abandonment", "Still there?")
    c = target(rules, "cart_abandonment", "c")
    assert (c.template, c.subject) == ("cart_c", None)
    with pytest.raises(PreviewError, match="no rule sending template 'welcome' has a variant"):
        target(rules, "welcome", "b")


def test_a_template_no_rule_sends_previews_as_marketing_mail() -> None:
    rules = load_rules(CONFIG, with_model=False)
    stand_in = target(rules, "brand_new")
    assert (stand_in.rule.id, stand_in.rule.category) == ("preview", "marketing")
    step = target(rules, "welcome_offer")
    assert (step.rule.id, step.step) == ("welcome", 2)


async def _store(redis_url: str, keys: Keys, profile: Profile) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert (
            await RedisProfileStore(client, keys=keys).save([ProfileWrite("ada", 0, profile)]) == []
        )
    finally:
        await client.aclose()


@pytest.mark.integration
def test_a_live_users_stored_profile(redis_url: str, keys: Keys) -> None:
    asyncio.run(_store(redis_url, keys, ada()))
    client = redis.Redis.from_url(redis_url)
    try:
        env = {"NUDGE_REDIS_URL": redis_url, "NUDGE_REDIS_PREFIX": keys.prefix}
        result = preview("cart_abandonment", "--user", "ada", env=env)
        assert result.exit_code == 0, result.output
        assert "Subject:   Ada, you left 1 item in your cart" in result.output
        nobody = preview("welcome", "--user", "nobody", env=env)
        assert nobody.exit_code == 1
        assert "no profile for user 'nobody'" in nobody.output
    finally:
        for key in client.scan_iter(match=f"{keys.prefix}:*"):
            client.delete(key)
        client.close()

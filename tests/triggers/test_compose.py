"""Composing a send's mail: every shipped template, for a full and an empty profile, and
missing required data suppressing the send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from profiles import (
    NO_LOOKUPS,
    Cart,
    CartLine,
    InMemoryProfileStore,
    InMemoryTimerStore,
    Lookups,
    Predicted,
    Profile,
    load_catalog,
)
from render import MissingData, RenderError
from triggers import Engine, Incoming, InMemoryOutbox, RuleSet, load_rules
from triggers.compose import compose
from triggers.firing import Firing
from triggers.rules import OnEventRule, Rule

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return load_rules(REPO / "config", with_model=False)


def full_profile(locale: str | None) -> Profile:
    catalog = {p.product_id: p for p in load_catalog(REPO / "config" / "catalog.jsonl")}
    mug, kettle = catalog["sku-mug"], catalog["sku-kettle"]
    return Profile(
        user_id="ada",
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        locale=locale,
        timezone="Europe/Vienna",
        email_consent=True,
        first_seen=T0 - timedelta(days=400),
        last_seen=T0,
        signed_up_at=T0 - timedelta(days=364),
        traits={"birthday": "1990-03-02"},
        cart=Cart(
            cart_id="c1",
            items={
                mug.product_id: CartLine(product_id=mug.product_id, name=mug.name, price=14.0),
                kettle.product_id: CartLine(product_id=kettle.product_id, price=59.0, quantity=2),
            },
        ),
        purchase_count=3,
        total_spent=1234.5,
        last_purchase_at=T0 - timedelta(days=40),
        recently_viewed=["sku-lamp"],
        predicted=Predicted(
            purchase_probability=0.2,
            churn_probability=0.8,
            expected_value=120.0,
            cluster="c",
            model_version="v1",
            scored_at=T0,
        ),
    )


FULL_EVENT: dict[str, Any] = {
    "event_id": "e1",
    "type": "purchase",
    "user_id": "ada",
    "ts": "2026-03-01T12:00:00Z",
    "properties": {
        "product_id": "sku-kettle",
        "name": "Gooseneck kettle",
        "price": 49.0,
        "previous_price": 59.0,
        "currency": "EUR",
        "url": "https://giftshop.example/kitchen/gooseneck-kettle",
        "image_url": "https://giftshop.example/img/kettle.jpg",
        "order_id": "o-1",
        "total": 1234.5,
        "items": [{"product_id": "sku-mug", "name": "Enamel mug", "price": 14.0, "quantity": 2}],
    },
    "context": None,
}


def full_lookups() -> Lookups:
    catalog = {p.product_id: p for p in load_catalog(REPO / "config" / "catalog.jsonl")}
    return Lookups(products=catalog, popular=tuple((p, 1.0) for p in sorted(catalog)[:8]))


def sender(rules: RuleSet, template: str) -> tuple[Rule, int | None]:
    """The rule (and step) that sends ``template``; a marketing stand-in if none does."""
    for rule in rules.config.rules:
        steps = getattr(rule, "steps", None)
        if steps is not None:
            for step, spec in enumerate(steps):
                if spec.template == template:
                    return rule, step
        elif rule.template == template:
            return rule, None
    return OnEventRule(id="x", kind="on_event", events=["x"], template=template), None


def every_template_and_locale(rules: RuleSet) -> list[tuple[str, str | None]]:
    renderer = rules.renderer
    return [
        (name, locale)
        for name in renderer.templates()
        for locale in (None, *renderer.locales(name))
    ]


SHIPPED = every_template_and_locale(load_rules(REPO / "config", with_model=False))


def test_german_variants_are_shipped() -> None:
    assert {("welcome", "de"), ("cart_abandonment", "de")} <= set(SHIPPED)


@pytest.mark.parametrize(("name", "locale"), SHIPPED)
def test_every_shipped_template_renders_for_a_full_profile(
    shipped: RuleSet, name: str, locale: str | None
) -> None:
    rule, step = sender(shipped, name)
    firing = Firing(rule, "ada", FULL_EVENT, step=step)
    composed = compose(shipped, full_profile(locale), firing, T0, full_lookups())
    email = composed.email
    assert email.subject and email.preheader and email.text.strip()
    for part in (email.subject, email.preheader, email.text, email.html):
        assert "None" not in part and "{{" not in part and "Undefined" not in part
    address = shipped.config.brand.address
    assert address is not None and address in email.html and address in email.text
    if rule.category == "marketing":
        assert f"<{composed.unsubscribe_url}>" in email.text
    assert 'style="' in email.html and "<style" in email.html  # inlined, @media kept
    assert "<head><style>@media" in email.html.replace("\n", "")
    assert 'lang="' in email.html


@pytest.mark.parametrize(("name", "locale"), SHIPPED)
def test_every_shipped_template_renders_or_aborts_whole_for_an_empty_profile(
    shipped: RuleSet, name: str, locale: str | None
) -> None:
    rule, step = sender(shipped, name)
    empty = Profile(user_id="nobody", locale=locale, first_seen=T0, last_seen=T0)
    try:
        email = compose(shipped, empty, Firing(rule, "nobody", {}, step=step), T0, NO_LOOKUPS).email
    except MissingData as exc:
        assert exc.field in shipped.renderer.spec(name).requires
        return
    assert email.subject and email.html and email.text.strip()
    assert "None" not in email.subject + email.preheader + email.text


def test_the_german_welcome_is_german_throughout(shipped: RuleSet) -> None:
    rule, step = sender(shipped, "welcome")
    firing = Firing(rule, "ada", {}, step=step)
    email = compose(shipped, full_profile("de-AT"), firing, T0, NO_LOOKUPS).email
    assert email.subject == "Willkommen, Ada!"
    assert "Abmelden" in email.html and "Unsubscribe" not in email.html
    assert 'lang="de-AT"' in email.html


def test_the_german_cart_formats_money_the_german_way(shipped: RuleSet) -> None:
    rule, _ = sender(shipped, "cart_abandonment")
    email = compose(shipped, full_profile("de_DE"), Firing(rule, "ada", {}), T0, NO_LOOKUPS).email
    # 14 + 2 x 59 in the brand's currency, written the German way
    assert "132,00&nbsp;$" in email.html and "Summe           132,00\xa0$" in email.text
    assert email.preheader == "3 Artikel im Wert von 132,00\xa0$ warten auf Sie."


def test_the_shipped_cart_reminders_text_part_reads_as_the_mail_does(shipped: RuleSet) -> None:
    """The text part a reader gets, through the shipped layout: the logo's alt text and
    link, the heading, the cart as aligned columns, the button's link and the footer; the
    hidden preheader and the layout's tables leave no trace."""
    rule, _ = sender(shipped, "cart_abandonment")
    email = compose(shipped, full_profile("en_US"), Firing(rule, "ada", {}), T0, NO_LOOKUPS).email
    paragraphs = email.text.split("\n\n")
    assert paragraphs[:5] == [
        "[The Shop] <https://shop.example>",
        "Ada, your cart is waiting",
        "You left 3 items behind. We have kept them for you.",
        "1 \u00d7 Enamel mug  $14.00\n2 \u00d7 sku-kettle  $118.00\nTotal           $132.00",
        "Complete your order <https://shop.example>",
    ]
    assert paragraphs[5].startswith("You are receiving this email because you signed up at")
    assert " Unsubscribe <https://shop.example/u/" in paragraphs[5]
    assert paragraphs[6:] == [
        "The Shop Ltd, 12 Harbour Street, Portsmouth PO1 2AB, United Kingdom\n"
    ]
    assert email.preheader not in email.text


def test_a_variant_subject_replaces_the_templates(shipped: RuleSet) -> None:
    rule, _ = sender(shipped, "cart_abandonment")
    override = "Still thinking it over, {{ user.first_name | default('friend', true) }}?"
    firing = Firing(rule, "ada", {})
    email = compose(shipped, full_profile(None), firing, T0, NO_LOOKUPS, subject=override).email
    assert email.subject == "Still thinking it over, Ada?"


# --- missing data on the engine --------------------------------------------------------------

RULES = """\
version: 1
rules:
  - id: greet
    kind: on_event
    events: [signup]
    template: greet
"""


def message(offset: int, **props: Any) -> Incoming:
    event = {
        "event_id": f"e{offset}",
        "type": "signup",
        "user_id": f"u{offset}",
        "ts": T0.isoformat(),
        "properties": {"email": f"u{offset}@example.com", "consent": {"email": True}, **props},
    }
    return Incoming(orjson.dumps(event), f"u{offset}".encode(), "events", 0, offset)


async def test_missing_required_data_suppresses_the_send_naming_the_field(
    make_config: Callable[[str], Path],
) -> None:
    config = make_config(RULES)
    greet = config / "templates" / "greet"
    greet.mkdir()
    (greet / "subject.txt").write_text("Hi {{ user.first_name }}")
    (greet / "preheader.txt").write_text("For {{ user.first_name }}")
    (greet / "body.html").write_text("<p>Hi {{ user.first_name }}</p>")
    (greet / "template.yaml").write_text("requires: [user.first_name]\n")
    outbox = InMemoryOutbox()
    engine = Engine(
        rules=load_rules(config),
        profiles=InMemoryProfileStore(),
        timers=InMemoryTimerStore(),
        outbox=outbox,
        clock=lambda: T0,
    )
    await engine.process([message(1, first_name="Ada"), message(2)])
    [sent] = outbox.sends
    assert (sent.user_id, sent.subject, sent.preheader) == ("u1", "Hi Ada", "For Ada")
    assert sent.text == "Hi Ada\n"
    [held] = [d for d in outbox.decisions if d.user_id == "u2"]
    assert (held.outcome, held.reason) == ("suppressed", "missing_data")
    assert held.detail == "template 'greet' requires user.first_name, which is not set"


def test_a_render_error_is_not_missing_data(shipped: RuleSet) -> None:
    rule, _ = sender(shipped, "welcome")
    with pytest.raises(RenderError) as caught:
        compose(
            shipped,
            full_profile(None),
            Firing(rule, "ada", {}),
            T0,
            NO_LOOKUPS,
            subject="{{ x.y }}",
        )
    assert not isinstance(caught.value, MissingData)

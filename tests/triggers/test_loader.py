from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli import cli
from triggers import AbsenceRule, ConfigError, load_rules

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
version: 1
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: welcome
  - id: cart_abandonment
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    wait: 1h30m
    template: cart_abandonment
"""


def issues(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules(config)
    return [str(issue) for issue in caught.value.issues]


def test_shipped_config_is_valid() -> None:
    rules = load_rules(REPO / "config")
    assert {r.id for r in rules.rules} >= {"welcome", "cart_abandonment", "winback"}


def test_every_shipped_marketing_rule_belongs_to_a_subscription() -> None:
    rules = load_rules(REPO / "config")
    assert rules.config.subscriptions == ["newsletter", "offers", "reminders"]
    marketing = [r for r in rules.rules if r.category == "marketing"]
    assert marketing and all(r.subscription is not None for r in marketing)
    assert rules.subscribed("reminders") == [
        rules.rule(rid) for rid in ("price_alert", "cart_abandonment", "browse_abandonment")
    ]


def test_valid_config_parses_durations(make_config: Callable[[str], Path]) -> None:
    rule = load_rules(make_config(GOOD)).rule("cart_abandonment")
    assert isinstance(rule, AbsenceRule)
    assert rule.wait.total_seconds() == 5400


def test_bad_duration_names_file_line_and_field(make_config: Callable[[str], Path]) -> None:
    config = make_config(GOOD.replace("wait: 1h30m", "wait: soon"))
    assert issues(config) == [
        f"{config}/rules.yaml:11: rules[1] (cart_abandonment).wait: "
        "invalid duration 'soon': use e.g. '90s', '15m', '1h30m', '30d'"
    ]


def test_every_problem_is_reported_at_once(make_config: Callable[[str], Path]) -> None:
    broken = GOOD.replace("events: [signup]", "events: [Sign Up]").replace(
        "    template: cart_abandonment", "    template: cart_abandonment\n    colour: red"
    )
    found = issues(make_config(broken))
    assert len(found) == 2
    assert ":5: rules[0] (welcome).events: " in found[0]
    assert ":13: rules[1] (cart_abandonment).colour: unknown field" in found[1]


def test_missing_required_field_points_at_the_rule(make_config: Callable[[str], Path]) -> None:
    found = issues(make_config(GOOD.replace("    wait: 1h30m\n", "")))
    assert found == [found[0]]
    assert ":7: rules[1] (cart_abandonment).wait: Field required" in found[0]


def test_unknown_kind_is_reported(make_config: Callable[[str], Path]) -> None:
    found = issues(make_config(GOOD.replace("kind: on_event", "kind: on_whim")))
    assert ":3: rules[0] (welcome): Input tag 'on_whim' found using 'kind'" in found[0]


def test_missing_template_and_bad_condition(make_config: Callable[[str], Path]) -> None:
    broken = GOOD.replace("template: welcome", "template: nowhere\n    condition: 'a ==== b'")
    found = issues(make_config(broken))
    assert ":6: rules[0] (welcome).template: missing template files" in found[0]
    assert ":7: rules[0] (welcome).condition: invalid expression" in found[1]


def test_yaml_syntax_error_has_a_line(make_config: Callable[[str], Path]) -> None:
    found = issues(make_config(GOOD + "  - id: [unclosed\n"))
    assert ":14: invalid YAML: expected ',' or ']'" in found[0]


def test_duplicate_rule_ids(make_config: Callable[[str], Path]) -> None:
    found = issues(make_config(GOOD.replace("id: cart_abandonment", "id: welcome")))
    assert "duplicate rule id 'welcome'" in found[0]


def test_validate_cli_exit_codes(make_config: Callable[[str], Path]) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(make_config(GOOD))])
    assert ok.exit_code == 0, ok.output
    assert "OK (2 rules: welcome, cart_abandonment)" in ok.output
    bad = make_config(GOOD.replace("wait: 1h30m", "wait: -5m"))
    result = runner.invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"error: {bad}/rules.yaml:11: rules[1] (cart_abandonment).wait:" in result.output


def test_unknown_event_type_is_reported_unless_declared(
    make_config: Callable[[str], Path],
) -> None:
    typo = GOOD.replace("cancel: [purchase]", "cancel: [purchse]")
    [found] = issues(make_config(typo))
    assert ":10: rules[1] (cart_abandonment).cancel: unknown event type 'purchse'" in found
    declared = typo.replace("version: 1\n", "version: 1\ncustom_events: [purchse]\n")
    assert load_rules(make_config(declared)).rule("cart_abandonment") is not None


def test_unknown_profile_field_in_a_condition(make_config: Callable[[str], Path]) -> None:
    text = GOOD.replace(
        "    template: welcome\n",
        "    template: welcome\n    condition:\n      any:\n"
        '        - "profile.totl_spent > 5"\n        - "profile.cart.item_count > 0"\n',
    )
    [found] = issues(make_config(text))
    assert ":7: rules[0] (welcome).condition: unknown field 'profile.totl_spent'" in found


def test_sequence_steps_out_of_order_are_unreachable(make_config: Callable[[str], Path]) -> None:
    text = """\
version: 1
rules:
  - id: series
    kind: sequence
    start: [signup]
    steps:
      - template: welcome
      - delay: 7d
        template: nowhere
      - delay: 3d
        template: welcome
"""
    [order, missing] = issues(make_config(text))
    assert order.endswith(
        "rules.yaml:3: rules[0] (series): step 2 (delay 3d) would come before step 1 "
        "(delay 7d): steps must be in delay order"
    )
    assert ":9: rules[0] (series).steps[1].template: missing template files" in missing


def test_segment_names_must_exist(make_config: Callable[[str], Path]) -> None:
    text = "version: 1\nrules:\n  - id: v\n    kind: segment_entry\n    segment: vip\n"
    text += "    template: welcome\n"
    [found] = issues(make_config(text))
    assert "rule 'v' names unknown segment 'vip' (none defined)" in found


def test_frequency_cap_beyond_the_kept_send_history_is_refused(
    make_config: Callable[[str], Path],
) -> None:
    text = GOOD.replace(
        "version: 1\n", "version: 1\nguards:\n  frequency_cap: {max: 51, window: 1d}\n"
    )
    [found] = issues(make_config(text))
    assert ":3: guards.frequency_cap.max: Input should be less than or equal to 50" in found


# --- every problem at once: schema errors hide no semantic ones ---------------------------


def test_bad_duration_unknown_event_type_and_missing_template_at_once(
    make_config: Callable[[str], Path],
) -> None:
    text = (
        GOOD.replace("wait: 1h30m", "wait: soon")
        .replace("events: [signup]", "events: [sign_upp]")
        .replace("template: welcome", "template: nope")
    )
    found = issues(make_config(text))
    assert len(found) == 3, found
    assert ":5: rules[0] (welcome).events: unknown event type 'sign_upp'" in found[0]
    assert ":6: rules[0] (welcome).template: missing template files" in found[1]
    assert ":11: rules[1] (cart_abandonment).wait: invalid duration 'soon'" in found[2]


def test_three_problems_in_one_rule(make_config: Callable[[str], Path]) -> None:
    text = (
        GOOD.replace("wait: 1h30m", "wait: soon")
        .replace("start: [add_to_cart]", "start: [add_to_kart]")
        .replace("template: cart_abandonment", "template: nope")
    )
    config = make_config(text)
    found = issues(config)
    expected = [
        "9: rules[1] (cart_abandonment).start: unknown event type 'add_to_kart'",
        "11: rules[1] (cart_abandonment).wait: invalid duration 'soon'",
        "12: rules[1] (cart_abandonment).template: missing template files",
    ]
    assert len(found) == len(expected), found
    for issue, start in zip(found, expected, strict=True):
        assert issue.startswith(f"{config}/rules.yaml:{start}"), issue


def test_schema_error_and_unknown_event_type_in_another_rule(
    make_config: Callable[[str], Path],
) -> None:
    text = GOOD.replace("events: [signup]", "events: [signupp]").replace(
        "    template: cart_abandonment", "    template: cart_abandonment\n    colour: red"
    )
    found = issues(make_config(text))
    assert len(found) == 2, found
    assert ":5: rules[0] (welcome).events: unknown event type 'signupp'" in found[0]
    assert ":13: rules[1] (cart_abandonment).colour: unknown field" in found[1]


def test_duplicate_ids_and_unknown_segments_beside_schema_errors(
    make_config: Callable[[str], Path],
) -> None:
    text = GOOD.replace("wait: 1h30m", "wait: soon").replace(
        "rules:\n",
        "rules:\n  - {id: cart_abandonment, kind: segment_entry, segment: vip,"
        " template: vip_welcome}\n",
    )
    found = issues(make_config(text))
    assert len(found) == 3, found
    assert (
        ":3: rules[0] (cart_abandonment).segment: rule 'cart_abandonment' names unknown "
        "segment 'vip' (none defined)" in found[0]
    )
    assert ":8: rules[2] (cart_abandonment).id: duplicate rule id 'cart_abandonment'" in found[1]
    assert ":12: rules[2] (cart_abandonment).wait: invalid duration 'soon'" in found[2]


# --- fields that exist ----------------------------------------------------------------------

PURCHASE = """\
version: 1
custom_events: [price.alert]
rules:
  - id: thanks
    kind: on_event
    events: [{events}]
    condition: "{condition}"
    template: order_thanks
"""


def with_condition(condition: str, events: str = "purchase") -> str:
    return PURCHASE.format(events=events, condition=condition)


@pytest.mark.parametrize(
    "condition",
    [
        "event.properties.total >= 100",
        "event.properties.items and event.type == 'purchase' and event.ts",
        "profile.cart.item_count > 0 and user.cart.total > 5 and cart.lines",
        "profile.traits.anything == 'x' and profile['traits']['plan'] and profile.counts.x",
        "profile.score > 50 and profile.fired.welcome and profile.affinity.kitchen > 1",
        "'offers' not in profile.unsubscribed and profile.consent_log[-1].source == 'signup'",
    ],
)
def test_fields_that_exist(make_config: Callable[[str], Path], condition: str) -> None:
    assert load_rules(make_config(with_condition(condition))).rule("thanks") is not None


@pytest.mark.parametrize(
    ("condition", "unknown"),
    [
        ("event.properties.totl > 5", "'event.properties.totl' (did you mean 'total'?)"),
        ("event.propertys.total > 5", "'event.propertys' (did you mean 'properties'?)"),
        ("profile.cart.itemcount > 0", "'profile.cart.itemcount' (did you mean 'item_count'?)"),
        ("user['cart']['totl'] > 0", "'user.cart.totl' (did you mean 'total'?)"),
        ("cart.itms", "'cart.itms' (did you mean 'items'?)"),
        ("profile.tratis.plan", "'profile.tratis' (did you mean 'traits'?)"),
    ],
)
def test_fields_that_do_not_exist(
    make_config: Callable[[str], Path], condition: str, unknown: str
) -> None:
    [found] = issues(make_config(with_condition(condition)))
    assert found.endswith(
        f":7: rules[0] (thanks).condition: unknown field {unknown} in {condition!r}"
    )


def test_event_properties_of_any_of_the_rule_event_types(
    make_config: Callable[[str], Path],
) -> None:
    either = with_condition(
        "event.properties.order_id or event.properties.url", "purchase, page_view"
    )
    assert load_rules(make_config(either)).rule("thanks") is not None
    neither = with_condition("event.properties.colour", "purchase, page_view")
    [found] = issues(make_config(neither))
    assert "unknown field 'event.properties.colour'" in found


@pytest.mark.parametrize(
    "rule",
    [
        "kind: on_event\n    events: [purchase, price.alert]",  # a custom event: free
        "kind: inactivity\n    wait: 30d",  # any event
        "kind: date\n    field: signed_up_at",  # no event
    ],
)
def test_event_properties_are_free_when_not_known_statically(
    make_config: Callable[[str], Path], rule: str
) -> None:
    text = with_condition("event.properties.anything", "purchase").replace(
        "kind: on_event\n    events: [purchase]", rule
    )
    assert load_rules(make_config(text)).rule("thanks") is not None


def test_cancel_when_conditions_are_checked(make_config: Callable[[str], Path]) -> None:
    text = GOOD.replace(
        "    wait: 1h30m\n",
        "    wait: 1h30m\n    cancel_when:\n      cart_emptied: 'profile.cart.item_count == 0'\n"
        "      typo: 'profile.cart.itemcount == 0'\n      broken: 'a ==== b'\n",
    )
    found = issues(make_config(text))
    assert len(found) == 2, found
    assert ":14: rules[1] (cart_abandonment).cancel_when.typo: unknown field " in found[0]
    assert ":15: rules[1] (cart_abandonment).cancel_when.broken: invalid expression" in found[1]


def test_template_fields_are_checked_per_file(make_config: Callable[[str], Path]) -> None:
    config = make_config(GOOD.replace("template: welcome", "template: thanks"))
    files = {
        "subject.txt": "Thanks {{ user.first_name | default('there', true) }}",
        "body.html": "{% set total = cart.total %}{{ total }}\n"
        "{% for line in cart.lines %}{{ line.anything }}{% endfor %}\n"
        "{{ cart.itms }} {{ event.properties.first_name }} {{ profile.traits.x }}",
        "body.txt": "{{ event.properties.colour }}",
    }
    for filename, text in files.items():
        path = config / "templates" / "thanks" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    found = issues(config)
    assert [f.split(".template: ")[1] for f in found] == [
        "thanks/body.html:3: unknown field 'cart.itms' (did you mean 'items'?)",
        "thanks/body.txt:1: unknown field 'event.properties.colour'",
    ]
    assert ":6: rules[0] (welcome).template" in found[0]


def test_cancel_when_conditions_see_the_profile_not_the_event(
    make_config: Callable[[str], Path],
) -> None:
    text = GOOD.replace(
        "    wait: 1h30m\n",
        "    wait: 1h30m\n    cancel_when:\n      gone: \"event.type == 'remove_from_cart'\"\n",
    )
    [found] = issues(make_config(text))
    assert "cancel_when.gone: unknown field 'event.type'" in found


# --- send_at: best_hour -------------------------------------------------------------------

SEND_AT = """\
version: 1
rules:
  - id: news
    kind: on_event
    events: [signup]
    send_at: best_hour
    max_delay: 12h
    template: welcome
  - id: series
    kind: sequence
    start: [signup]
    steps:
      - template: welcome
      - delay: 3d
        template: welcome
        send_at: best_hour
"""


def test_send_at_best_hour_on_rules_and_sequence_steps(make_config: Callable[[str], Path]) -> None:
    rules = load_rules(make_config(SEND_AT))
    news, series = rules.rule("news"), rules.rule("series")
    assert news is not None and series is not None
    assert news.best_hour_delay() == timedelta(hours=12)
    assert (series.best_hour_delay(0), series.best_hour_delay(1)) == (None, timedelta(hours=24))


def test_send_at_knows_only_best_hour_and_max_delay_is_a_duration(
    make_config: Callable[[str], Path],
) -> None:
    text = SEND_AT.replace("send_at: best_hour\n    max", "send_at: evening\n    max")
    found = issues(make_config(text.replace("max_delay: 12h", "max_delay: later")))
    assert [f.split("rules.yaml:")[1] for f in found] == [
        "6: rules[0] (news).send_at: Input should be 'best_hour'",
        "7: rules[0] (news).max_delay: invalid duration 'later': "
        "use e.g. '90s', '15m', '1h30m', '30d'",
    ]
    [long] = issues(make_config(SEND_AT.replace("max_delay: 12h", "max_delay: 8d")))
    assert long.endswith(":7: rules[0] (news).max_delay: max_delay 8d is longer than 7d")


def test_send_at_only_on_marketing_mail_and_max_delay_only_with_it(
    make_config: Callable[[str], Path],
) -> None:
    text = SEND_AT.replace(
        "    send_at: best_hour\n    max", "    category: transactional\n    max"
    )
    text = text.replace("    steps:", "    category: transactional\n    steps:")
    found = issues(make_config(text))
    assert [f.split("rules.yaml:")[1] for f in found] == [
        "7: rules[0] (news).max_delay: max_delay without send_at: nothing waits for it",
        "17: rules[1] (series).steps[1].send_at: send_at applies to marketing mail only; "
        "this rule is transactional",
    ]


# --- subscriptions ---------------------------------------------------------------------------

SUBSCRIBED = """\
version: 1
subscriptions: [newsletter, reminders]
rules:
  - id: news
    kind: on_event
    events: [signup]
    subscription: newsletter
    template: welcome
  - id: series
    kind: sequence
    start: [signup]
    subscription: newsletter
    steps:
      - template: welcome
  - id: cart
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    wait: 1h
    subscription: reminders
    template: cart_abandonment
"""


def test_rules_name_the_subscription_their_mail_belongs_to(
    make_config: Callable[[str], Path],
) -> None:
    rules = load_rules(make_config(SUBSCRIBED))
    assert rules.config.subscriptions == ["newsletter", "reminders"]
    assert [r.id for r in rules.subscribed("newsletter")] == ["news", "series"]
    assert [r.id for r in rules.subscribed("reminders")] == ["cart"]
    assert rules.subscribed("offers") == []


def test_an_unknown_subscription_and_one_on_transactional_mail_are_refused(
    make_config: Callable[[str], Path],
) -> None:
    text = SUBSCRIBED.replace("subscription: reminders", "subscription: remindres").replace(
        "    subscription: newsletter\n    steps:",
        "    category: transactional\n    subscription: newsletter\n    steps:",
    )
    config = make_config(text)
    assert issues(config) == [
        f"{config}/rules.yaml:13: rules[1] (series).subscription: subscription applies to "
        "marketing mail only; this rule is transactional",
        f"{config}/rules.yaml:21: rules[2] (cart).subscription: rule 'cart' names unknown "
        "subscription 'remindres' (newsletter, reminders)",
    ]


def test_a_subscription_needs_the_list_and_a_name_of_the_right_shape(
    make_config: Callable[[str], Path],
) -> None:
    text = SUBSCRIBED.replace("subscriptions: [newsletter, reminders]\n", "").replace(
        "subscription: reminders", "subscription: Reminders!"
    )
    found = issues(make_config(text))
    assert [f.split("rules.yaml:")[1] for f in found] == [
        "6: rules[0] (news).subscription: rule 'news' names unknown subscription "
        "'newsletter' (none declared under subscriptions)",
        "11: rules[1] (series).subscription: rule 'series' names unknown subscription "
        "'newsletter' (none declared under subscriptions)",
        "19: rules[2] (cart).subscription: 'Reminders!' is not a subscription name "
        "(lowercase [a-z0-9_], at most 40)",
    ]


def test_subscription_names_are_checked_and_unique(make_config: Callable[[str], Path]) -> None:
    text = SUBSCRIBED.replace("[newsletter, reminders]", "[newsletter, reminders, newsletter, Bad]")
    found = issues(make_config(text))
    assert [f.split("rules.yaml:")[1] for f in found] == [
        "2: subscriptions: 'Bad' is not a subscription name (lowercase [a-z0-9_], at most 40)",
    ]
    text = SUBSCRIBED.replace("[newsletter, reminders]", "[newsletter, reminders, newsletter]")
    [repeated] = issues(make_config(text))
    assert repeated.endswith(
        "rules.yaml:2: subscriptions: subscriptions named more than once: ['newsletter']"
    )


# --- templates: brand, template.yaml, variants, layouts ---------------------------------------


def test_marketing_rules_need_the_brands_postal_address(make_config: Callable[[str], Path]) -> None:
    without = GOOD.replace("rules:\n", "brand: {name: Shop}\nrules:\n", 1)
    [found] = issues(make_config(without))
    assert ":2: brand.address: marketing mail must show the sender's postal address " in found
    assert "(CAN-SPAM)" in found and "(marketing rules: welcome, cart_abandonment)" in found
    # without a brand block at all: at the top of the file
    bare = make_config(GOOD)
    (bare / "rules.yaml").write_text(GOOD)
    assert ":1: brand.address: marketing mail must show" in issues(bare)[0]


def test_transactional_or_disabled_rules_need_no_postal_address(
    make_config: Callable[[str], Path],
) -> None:
    text = (
        GOOD.replace("template: welcome", "template: welcome\n    category: transactional")
        .replace("template: cart_abandonment", "template: cart_abandonment\n    enabled: false")
        .replace("rules:\n", "brand: {name: Shop}\nrules:\n", 1)
    )
    assert load_rules(make_config(text)).config.brand.address is None


def test_the_brand_block_is_checked(make_config: Callable[[str], Path]) -> None:
    brand = (
        "brand:\n  address: 1 Main St\n  locale: klingon\n  currency: EURO\n"
        "  colors: {primary: red}\n  logo_url: http://x/logo.png\n  colour: blue\n"
    )
    found = issues(make_config(GOOD.replace("rules:\n", brand + "rules:\n", 1)))
    assert [f.split("rules.yaml:")[1] for f in found] == [
        "4: brand.locale: 'klingon' is not a locale Babel knows (en_US, de_DE, ...)",
        "5: brand.currency: String should match pattern '^[A-Z]{3}$'",
        "6: brand.colors.primary: String should match pattern '^#([0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$'",
        "7: brand.logo_url: String should match pattern '^https://\\S+$'",
        "8: brand.colour: unknown field",
    ]


def test_the_brand_names_the_shop_after_the_sender_by_default(
    make_config: Callable[[str], Path],
) -> None:
    text = "version: 1\nsender: {from_name: Corner Shop}\nbrand: {address: 1 Main St}\n"
    brand = load_rules(make_config(text)).config.brand
    assert (brand.name, brand.locale, brand.currency) == ("Corner Shop", "en_US", "USD")


def spec_config(make_config: Callable[[str], Path], spec: str) -> Path:
    config = make_config(GOOD)
    (config / "templates" / "welcome" / "template.yaml").write_text(spec)
    return config


def test_template_yaml_problems_name_its_file_and_line(make_config: Callable[[str], Path]) -> None:
    spec = (
        "requires:\n"
        "  - profile.first_name\n"
        "  - profile.frist_name\n"
        "  - event.properties.total\n"
        "  - basket.items\n"
        "  - profile.__class__\n"
    )
    config = spec_config(make_config, spec + "optional: [x]\n")
    where = config / "templates" / "welcome" / "template.yaml"
    assert issues(config) == [
        f"{where}:6: requires[4]: String should match pattern "
        "'^[A-Za-z][A-Za-z0-9_]*(\\.[A-Za-z][A-Za-z0-9_]*)*$'",
        f"{where}:7: optional: unknown field",
    ]
    config = spec_config(make_config, spec.replace("  - profile.__class__\n", ""))
    where = config / "templates" / "welcome" / "template.yaml"
    assert issues(config) == [
        f"{where}:3: requires[1]: unknown field 'profile.frist_name' (did you mean 'first_name'?)",
        f"{where}:4: requires[2]: unknown field 'event.properties.total'",
        f"{where}:5: requires[3]: 'basket.items' is not in the render context (profile, user, "
        "cart, event, brand, rule, segments, recently_viewed)",
    ]


def test_template_yaml_that_is_no_yaml(make_config: Callable[[str], Path]) -> None:
    config = spec_config(make_config, "requires: [unclosed\n")
    [found] = issues(config)
    assert found.startswith(f"{config}/templates/welcome/template.yaml:2: invalid YAML")


def test_shared_files_are_not_templates(make_config: Callable[[str], Path]) -> None:
    found = issues(make_config(GOOD.replace("template: welcome", "template: _layouts")))
    assert found == [
        f"{found[0].split(': ')[0]}: rules[0] (welcome).template: '_layouts': names starting "
        "with '_' are shared layouts and partials"
    ]


def test_variant_directories_must_be_locales(make_config: Callable[[str], Path]) -> None:
    config = make_config(GOOD)
    (config / "templates" / "welcome" / "old").mkdir()
    (config / "templates" / "welcome" / "de" / "template.yaml").write_text("requires: []\n")
    found = issues(config)
    assert [f.split(".template: ")[1] for f in found] == [
        f"{config}/templates/welcome/old: 'old' is not a locale (de, de_AT, ...)",
        f"{config}/templates/welcome/de/template.yaml: template.yaml belongs in the template's "
        "own directory",
    ]


def test_variants_and_layouts_are_checked_too(make_config: Callable[[str], Path]) -> None:
    config = make_config(GOOD)
    templates = config / "templates"
    (templates / "welcome" / "de" / "subject.txt").write_text("{{ user.vorname }}")
    (templates / "cart_abandonment" / "de" / "body.html").write_text("{% if %}")
    (templates / "_partials" / "footer.html").write_text("{{ brand.adress }}\n{{ brand.name }}")
    (templates / "_partials" / "broken.html").write_text("{% for %}")
    # rules.yaml's first (a problem of a shared file without a line among them), then
    # those located in other files
    broken, vorname, syntax, adress = issues(config)
    assert broken == (
        f"{templates}: _partials/broken.html:1: Expected an expression, "
        "got 'end of statement block'"
    )
    assert vorname.endswith(
        ":6: rules[0] (welcome).template: welcome/de/subject.txt:1: unknown field 'user.vorname'"
    )
    assert syntax.endswith(
        ":12: rules[1] (cart_abandonment).template: cart_abandonment/de/body.html:1: "
        "Expected an expression, got 'end of statement block'"
    )
    assert adress == (
        f"{templates}/_partials/footer.html:1: unknown field 'brand.adress' "
        "(did you mean 'address'?)"
    )

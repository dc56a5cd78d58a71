from __future__ import annotations

from pathlib import Path

import pytest

from render import MissingData, Renderer, RenderError, TemplateMissing


def write(root: Path, files: dict[str, str]) -> Path:
    """``files`` (paths under ``root``, e.g. ``hello/subject.txt``) written out."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def template(root: Path, name: str, subject: str, html: str, text: str | None = None) -> None:
    files = {f"{name}/subject.txt": subject, f"{name}/body.html": html}
    if text is not None:
        files[f"{name}/body.txt"] = text
    write(root, files)


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    template(
        tmp_path,
        "hello",
        "Hi {{ user.name | default('there') }}\n  !",
        "<p>{{ event.note }}</p>",
        "{{ event.note }}",
    )
    return Renderer(tmp_path)


def test_html_is_autoescaped_text_is_not(renderer: Renderer) -> None:
    email = renderer.render("hello", {"user": {"name": "Ada"}, "event": {"note": "<b>&</b>"}})
    assert email.html == "<p>&lt;b&gt;&amp;&lt;/b&gt;</p>"
    assert email.text == "<b>&</b>\n"


def test_subject_is_one_line_and_default_fills_missing_values(renderer: Renderer) -> None:
    assert renderer.render("hello", {"user": {}, "event": {"note": ""}}).subject == "Hi there !"


def test_event_data_is_never_template_source(renderer: Renderer) -> None:
    email = renderer.render("hello", {"user": {}, "event": {"note": "{{ 7 * 7 }}"}})
    assert "49" not in email.text
    assert "{{ 7 * 7 }}" in email.text


def test_undefined_variable_fails_loudly(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match="event"):
        renderer.render("hello", {"user": {}})


def test_sandbox_blocks_attribute_escapes(tmp_path: Path) -> None:
    template(tmp_path, "evil", "{{ ''.__class__.__mro__ }}", "x")
    with pytest.raises(RenderError):
        Renderer(tmp_path).render("evil", {})


def test_missing_template_files_are_reported(tmp_path: Path) -> None:
    write(tmp_path, {"half/subject.txt": "s"})
    renderer = Renderer(tmp_path)
    assert [p.name for p in renderer.missing_files("half")] == ["body.html"]
    with pytest.raises(TemplateMissing):
        renderer.render("half", {})


def test_a_filter_given_what_it_cannot_take_is_a_render_error(tmp_path: Path) -> None:
    """``money`` on a word raises ValueError inside the template: that mail fails to
    render (a RenderError the engine suppresses), not the batch around it."""
    template(tmp_path, "bad", "{{ 'soon' | money }}", "x")
    with pytest.raises(RenderError, match=r"bad/subject.txt: ValueError"):
        Renderer(tmp_path).render("bad", {})


# --- preheader and text part ---------------------------------------------------------------


def test_the_preheader_is_optional_and_the_html_sees_it(tmp_path: Path) -> None:
    template(tmp_path, "plain", "s", "<p>[{{ preheader }}]</p>", "t")
    template(tmp_path, "teaser", "s", "<p>[{{ preheader }}]</p>", "t")
    write(tmp_path, {"teaser/preheader.txt": "  Two {{ n }}\n items  "})
    renderer = Renderer(tmp_path)
    assert renderer.render("plain", {}).preheader == ""
    teaser = renderer.render("teaser", {"n": 2})
    assert (teaser.preheader, teaser.html) == ("Two 2 items", "<p>[Two 2 items]</p>")


def test_without_body_txt_the_text_part_is_made_from_the_html(tmp_path: Path) -> None:
    html = (
        '<div style="display:none">hidden preheader</div>'
        "<h1>Hi {{ name }}</h1><p>Your <a href='https://x.example/c?a=1&amp;b=2'>cart</a></p>"
        "<ul><li>one</li><li>two</li></ul>"
        '<p><img src="logo.png" alt="The Shop"><img src="deco.png" alt=""></p>'
    )
    template(tmp_path, "made", "s", html)
    text = Renderer(tmp_path).render("made", {"name": "Ada & Bo"}).text
    assert text == (
        "Hi Ada & Bo\n\nYour cart <https://x.example/c?a=1&b=2>\n\n  * one\n  * two\n\n[The Shop]\n"
    )


def test_body_txt_goes_with_the_body_html_of_its_directory(tmp_path: Path) -> None:
    """A German variant with its own body.html but no body.txt gets a text part made from
    its German HTML, never the English body.txt of the template root."""
    template(tmp_path, "t", "s", "<p>English</p>", "English text")
    write(tmp_path, {"t/de/body.html": "<p>Deutsch</p>"})
    renderer = Renderer(tmp_path)
    assert renderer.render("t", {}).text == "English text\n"
    assert renderer.render("t", {}, locale="de").text == "Deutsch\n"


# --- CSS inlining ----------------------------------------------------------------------------


def test_style_rules_are_inlined_and_media_queries_kept(tmp_path: Path) -> None:
    html = (
        "<html><head><style>p.note { color: #c00; } "
        "@media (max-width: 600px) { p { font-size: 14px; } }</style></head>"
        '<body><p class="note" style="margin: 0">{{ word }}</p></body></html>'
    )
    template(tmp_path, "styled", "s", html, "t")
    email = Renderer(tmp_path).render("styled", {"word": "hi"})
    assert 'style="color: #c00;margin: 0"' in email.html
    assert "@media (max-width: 600px)" in email.html
    assert "p.note" not in email.html


def test_html_without_style_is_left_as_rendered(renderer: Renderer) -> None:
    email = renderer.render("hello", {"user": {}, "event": {"note": "x"}})
    assert email.html == "<p>x</p>"  # no document wrapped around a fragment


def test_remote_stylesheets_are_never_fetched(tmp_path: Path) -> None:
    html = '<link rel="stylesheet" href="https://127.0.0.1:9/x.css"><style>p{color:red}</style><p>x'
    template(tmp_path, "remote", "s", html, "t")
    assert '<p style="color: red;">x</p>' in Renderer(tmp_path).render("remote", {}).html


# --- requires --------------------------------------------------------------------------------


@pytest.fixture
def needy(tmp_path: Path) -> Renderer:
    # the subject would fail on an empty cart: MissingData comes first, nothing renders
    template(tmp_path, "needy", "{{ profile.first_name }}: {{ cart['items'][0] }}", "x", "t")
    write(tmp_path, {"needy/template.yaml": "requires: [profile.first_name, cart.items]\n"})
    return Renderer(tmp_path)


@pytest.mark.parametrize(
    ("context", "field", "why"),
    [
        ({"cart": {"items": [1]}}, "profile.first_name", "not set"),
        ({"profile": {}, "cart": {"items": [1]}}, "profile.first_name", "not set"),
        (
            {"profile": {"first_name": None}, "cart": {"items": [1]}},
            "profile.first_name",
            "not set",
        ),
        ({"profile": {"first_name": " "}, "cart": {"items": [1]}}, "profile.first_name", "empty"),
        ({"profile": {"first_name": "Ada"}, "cart": {"items": []}}, "cart.items", "empty"),
        ({"profile": {"first_name": "Ada"}, "cart": {"items": {}}}, "cart.items", "empty"),
    ],
)
def test_missing_required_data_aborts_before_rendering(
    needy: Renderer, context: dict[str, object], field: str, why: str
) -> None:
    with pytest.raises(MissingData) as caught:
        needy.render("needy", context)
    assert caught.value.field == field
    assert str(caught.value) == f"template 'needy' requires {field}, which is {why}"
    assert isinstance(caught.value, RenderError)


def test_required_data_present_renders_and_attributes_count(needy: Renderer) -> None:
    class Profile:
        first_name = "Ada"

    email = needy.render("needy", {"profile": Profile(), "cart": {"items": [0, 1]}})
    assert email.subject == "Ada: 0"


def test_an_invalid_template_yaml_is_a_render_error(tmp_path: Path) -> None:
    template(tmp_path, "t", "s", "x", "t")
    write(tmp_path, {"t/template.yaml": "requires: [profile.__class__]\ncolour: red\n"})
    with pytest.raises(RenderError, match=r"t/template\.yaml"):
        Renderer(tmp_path).render("t", {})


# --- locales, layouts and partials -------------------------------------------------------------


EXTENDS = '{{% extends "_layouts/base.html" %}}{{% block content %}}{}{{% endblock %}}'


@pytest.fixture
def shop(tmp_path: Path) -> Renderer:
    return Renderer(
        write(
            tmp_path,
            {
                "_layouts/base.html": (
                    '<html lang="{{ locale }}">{% block content %}{% endblock %}'
                    '{% include "_partials/footer.html" %}</html>'
                ),
                "_partials/footer.html": "<footer>Unsubscribe</footer>",
                "_partials/de/footer.html": "<footer>Abmelden</footer>",
                "hi/subject.txt": "Hello",
                "hi/preheader.txt": "Read on",
                "hi/body.html": EXTENDS.format("<p>Hello</p>"),
                "hi/de/subject.txt": "Hallo",
                "hi/de/body.html": EXTENDS.format("<p>Hallo</p>"),
                "hi/de-AT/subject.txt": "Servus",
                "only_en/subject.txt": "Hello",
                "only_en/body.html": '{% extends "_layouts/base.html" %}',
            },
        )
    )


@pytest.mark.parametrize(
    ("locale", "subject", "html"),
    [
        ("de_AT", "Servus", '<html lang="de_AT"><p>Hallo</p><footer>Abmelden</footer></html>'),
        ("de-at", "Servus", '<html lang="de_AT"><p>Hallo</p><footer>Abmelden</footer></html>'),
        ("de_CH", "Hallo", '<html lang="de_CH"><p>Hallo</p><footer>Abmelden</footer></html>'),
        ("de", "Hallo", '<html lang="de"><p>Hallo</p><footer>Abmelden</footer></html>'),
        ("fr_FR", "Hello", '<html lang="fr_FR"><p>Hello</p><footer>Unsubscribe</footer></html>'),
        (None, "Hello", '<html lang="en_US"><p>Hello</p><footer>Unsubscribe</footer></html>'),
        ("", "Hello", '<html lang="en_US"><p>Hello</p><footer>Unsubscribe</footer></html>'),
        ("12", "Hello", '<html lang="en_US"><p>Hello</p><footer>Unsubscribe</footer></html>'),
    ],
)
def test_the_locale_picks_each_file_exact_then_language_then_root(
    shop: Renderer, locale: str | None, subject: str, html: str
) -> None:
    email = shop.render("hi", {}, locale=locale)
    assert (email.subject, email.html) == (subject, html)
    assert email.preheader == "Read on"  # no variant has one: the root's


def test_a_template_without_the_language_is_english_to_the_footer(shop: Renderer) -> None:
    assert "Unsubscribe" in shop.render("only_en", {}, locale="de_DE").html


def test_locales_lists_the_variants_of_a_template(shop: Renderer) -> None:
    assert shop.locales("hi") == {"de": "de", "de_AT": "de-AT"}
    assert shop.templates() == ["hi", "only_en"]
    assert shop.problems("hi") == []


def test_directories_that_are_no_locale_are_problems(tmp_path: Path) -> None:
    template(tmp_path, "t", "s", "x")
    write(tmp_path, {"t/drafts/subject.txt": "s", "t/de_DE/x": "", "t/de-DE/x": ""})
    problems = [(path.name, message) for path, message in Renderer(tmp_path).problems("t")]
    assert problems == [
        ("de_DE", "the same locale as t/de-DE"),
        ("drafts", "'drafts' is not a locale (de, de_AT, ...)"),
    ]


def test_templates_are_compiled_once_per_locale(tmp_path: Path) -> None:
    template(tmp_path, "t", "s {{ n }}", "<p>{{ n }}</p>", "t")
    write(tmp_path, {"t/de/subject.txt": "d {{ n }}"})
    renderer = Renderer(tmp_path)
    assert renderer.render("t", {"n": 1}).subject == "s 1"
    assert renderer.render("t", {"n": 1}, locale="de").subject == "d 1"
    for path in tmp_path.rglob("*.txt"):
        path.write_text("changed")  # compiled already: what is on disk is not read again
    assert renderer.render("t", {"n": 2}).subject == "s 2"
    assert renderer.render("t", {"n": 2}, locale="de_AT").subject == "d 2"


def test_a_subject_override_replaces_subject_txt(renderer: Renderer) -> None:
    context = {"user": {"name": "Ada"}, "event": {"note": "n"}}
    override = "Still there, {{ user.name }}?"
    assert renderer.render("hello", context, subject=override).subject == "Still there, Ada?"
    assert renderer.render("hello", context).subject == "Hi Ada !"
    with pytest.raises(RenderError, match="hello: subject"):
        renderer.render("hello", {}, subject="{{ nobody.name }}")
    with pytest.raises(RenderError, match="subject"):
        renderer.render("hello", context, subject="{% if %}")


def test_check_compiles_every_variant(tmp_path: Path) -> None:
    template(tmp_path, "t", "s", "x", "t")
    write(tmp_path, {"t/de/body.html": "{% if %}"})
    renderer = Renderer(tmp_path)
    renderer.render("t", {})  # the root is fine
    with pytest.raises(RenderError, match=r"t/de/body.html"):
        renderer.check("t")

from __future__ import annotations

from pathlib import Path

import pytest

from render import Renderer, RenderError, TemplateMissing

REPO = Path(__file__).resolve().parents[2]


def write_template(root: Path, name: str, subject: str, html: str, text: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "subject.txt").write_text(subject)
    (root / name / "body.html").write_text(html)
    (root / name / "body.txt").write_text(text)


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    write_template(
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
    write_template(tmp_path, "evil", "{{ ''.__class__.__mro__ }}", "x", "x")
    with pytest.raises(RenderError):
        Renderer(tmp_path).render("evil", {})


def test_missing_template_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "subject.txt").write_text("s")
    renderer = Renderer(tmp_path)
    assert [p.name for p in renderer.missing_files("half")] == ["body.html"]
    with pytest.raises(TemplateMissing):
        renderer.render("half", {})


def test_shipped_templates_render_a_cart(tmp_path: Path) -> None:
    renderer = Renderer(REPO / "config" / "templates")
    cart = {
        "item_count": 2,
        "total": 20.0,
        "lines": [{"product_id": "p", "name": "Mug <3", "price": 10.0, "quantity": 2}],
    }
    context = {
        "user": {"first_name": "Ada", "locale": None},
        "cart": cart,
        "unsubscribe_url": "https://u.example/?a=1&b=2",
        "catalog": lambda product_id: None,  # a shop without a catalog
        "recommend": lambda n=4, strategy="auto": [],
    }
    email = renderer.render("cart_abandonment", context)
    assert email.subject == "Ada, you left 2 items in your cart"
    assert "2 x Mug <3: $20.00" in email.text
    assert "Mug &lt;3" in email.html
    assert 'href="https://u.example/?a=1&amp;b=2"' in email.html


def test_a_filter_given_what_it_cannot_take_is_a_render_error(tmp_path: Path) -> None:
    """``money`` on a word raises ValueError inside the template: that mail fails to
    render (a RenderError the engine suppresses), not the batch around it."""
    (tmp_path / "bad").mkdir()
    for part in ("subject.txt", "body.html", "body.txt"):
        (tmp_path / "bad" / part).write_text("{{ 'soon' | money }}")
    with pytest.raises(RenderError, match=r"bad/subject.txt: ValueError"):
        Renderer(tmp_path).render("bad", {})

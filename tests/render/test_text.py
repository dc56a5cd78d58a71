"""The text part made from a mail's HTML (``render.text.html_to_text``)."""

from __future__ import annotations

import html as html_lib

from hypothesis import given, settings
from hypothesis import strategies as st

from render.text import html_to_text


def test_blocks_are_lines_and_paragraphs_are_set_apart() -> None:
    html = "<h1>Hi  Ada</h1><p>First\n   line</p><div>one</div><div>two</div><p>last</p>"
    assert html_to_text(html) == "Hi Ada\n\nFirst line\n\none\ntwo\n\nlast"


def test_inline_markup_joins_words_as_written() -> None:
    assert html_to_text("<p>caf&eacute; &amp; <b>bold</b>text <i>and</i> <em>more</em></p>") == (
        "café & boldtext and more"
    )


def test_hidden_elements_are_left_out_but_what_follows_them_is_not() -> None:
    html = (
        "<head><title>T</title><style>p { color: red }</style></head><body>"
        '<div style="display:none;max-height:0">the preheader</div>after'
        '<p>a<span style="DISPLAY : none">secret</span> b<span hidden>x</span></p>'
        "<script>alert(1)</script><!-- a comment -->end</body>"
    )
    assert html_to_text(html) == "after\n\na b\n\nend"


def test_links_show_their_url_and_images_their_alt() -> None:
    html = (
        '<p><a href="https://shop.example/c?a=1&amp;b=2">your cart</a> '
        '<a href="https://shop.example"><img src="logo.png" alt="The Shop"></a>'
        '<img src="spacer.gif" alt=""><a name="top">no link</a></p>'
    )
    assert html_to_text(html) == (
        "your cart <https://shop.example/c?a=1&b=2> [The Shop] <https://shop.example>no link"
    )


def test_lists_get_markers_and_nest() -> None:
    html = (
        "<ul><li>one<ul><li>inner</li></ul></li><li>two</li></ul>"
        "<ol><li>first</li><li>second</li></ol>"
    )
    assert html_to_text(html) == "  * one\n      * inner\n  * two\n  1. first\n  2. second"


def test_table_cells_sit_side_by_side_in_columns() -> None:
    html = (
        "<p>Your order:</p><table><caption>Order 17</caption>"
        '<tr><td><img src="mug.png" alt=""></td><td>1 x Mug</td><td>$14.00</td></tr>'
        "<tr><td>&nbsp;</td><td>2 x Teapot, large</td><td>$118.00</td></tr>"
        "<tbody><tr><td></td><th>Total</th><td>$132.00</td></tr></tbody>"
        "</table><p>Thanks</p>"
    )
    # the image and spacer column is blank in every row, so it is left out
    assert html_to_text(html) == (
        "Your order:\n\n"
        "Order 17\n\n"
        "1 x Mug            $14.00\n"
        "2 x Teapot, large  $118.00\n"
        "Total              $132.00\n\n"
        "Thanks"
    )


def test_a_cell_of_several_lines_keeps_its_column() -> None:
    html = "<table><tr><td>Mug<br>blue</td><td>$14.00</td></tr></table>"
    assert html_to_text(html) == "Mug   $14.00\nblue"


def test_layout_tables_of_one_column_read_as_their_content() -> None:
    """Mail layouts nest one-column tables; their cells read like blocks, paragraphs keep
    their blank lines, and a table of columns inside them is laid out as one."""
    html = (
        '<table role="presentation"><tr><td><table><tr><td><a href="https://s.example">S</a></td></tr>'
        "<tr><td><h1>Hello</h1><p>Text</p><table><tr><td>a</td><td>b</td></tr></table></td></tr>"
        "<tr><td><p>Footer</p></td></tr></table></td></tr></table>"
    )
    assert html_to_text(html) == "S <https://s.example>\n\nHello\n\nText\n\na  b\n\nFooter"


def test_what_a_table_holds_outside_its_cells_comes_before_it() -> None:
    html = (
        "<table>Dear Ada,<tr><td>a</td> tail <td>b</td></tr><div>Note</div>"
        "<tr><td hidden>hidden cell</td><td>cc</td><td>d</td></tr></table>"
    )
    assert html_to_text(html) == "Dear Ada, tail\nNote\n\na   b\ncc  d"


def test_list_items_wrap_under_their_text_and_numbers_start_where_told() -> None:
    html = '<ul><li>one<br>two</li></ul><ol start="3"><li>c</li><li>d</li></ol>'
    assert html_to_text(html) == "  * one\n    two\n  3. c\n  4. d"


def test_a_link_text_ending_in_a_blank_keeps_it_after_the_url() -> None:
    assert html_to_text('Read <a href="https://x.example">our blog </a>today') == (
        "Read our blog <https://x.example> today"
    )


def test_blocks_of_nothing_but_no_break_spaces_are_blank_lines() -> None:
    html = "<p>a</p><p>&nbsp;</p><p>&nbsp;</p><div>&nbsp;</div><p>b</p>"
    assert html_to_text(html) == "a\n\nb"


def test_preformatted_text_keeps_its_blanks_and_lines_but_not_hidden_parts() -> None:
    html = (
        '<pre>  keep\n    this<span style="display:none">SECRET</span><br>'
        '<a href="https://x.example">link</a> <img src="i.png" alt="img"></pre>'
    )
    assert html_to_text(html) == "  keep\n    this\nlink <https://x.example> [img]"


def test_line_breaks_and_preformatted_text() -> None:
    html = "<p>one<br>two<br><br>four</p><pre>  keep\n    this</pre>"
    assert html_to_text(html) == "one\ntwo\n\nfour\n\n  keep\n    this"


def test_no_break_spaces_stay() -> None:
    assert html_to_text("<p>132,00&nbsp;$</p>") == "132,00\xa0$"


def test_whatever_the_parser_is_given_it_answers() -> None:
    assert html_to_text("") == ""
    assert html_to_text("  \n") == ""
    assert html_to_text("<!-- only a comment -->") == ""
    assert html_to_text('<?xml version="1.0" encoding="utf-8"?><p>hi</p>') == "hi"
    assert html_to_text('<meta charset="iso-8859-1"><p>h\xe9</p>') == "h\xe9"
    assert html_to_text("plain text, no markup") == "plain text, no markup"


WORDS = st.text(alphabet="abcdefghij", min_size=1, max_size=8)
INLINE = st.sampled_from(["b", "span", "a", "em"])
BLOCK = st.sampled_from(["p", "div", "li", "h2", "td"])


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """HTML of nested blocks and inline elements, some hidden; its shown and hidden words
    in document order."""
    shown: list[str] = []
    hidden: list[str] = []
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 12))):
        word = draw(WORDS)
        kind = draw(st.sampled_from(["text", "inline", "block", "hidden", "table"]))
        if kind == "hidden":
            hidden.append(f"zz{word}")
            parts.append(f'<span style="display:none">zz{word}</span>')
            continue
        shown.append(word)
        if kind == "text":
            parts.append(f" {html_lib.escape(word)} ")
        elif kind == "inline":
            tag = draw(INLINE)
            parts.append(f"<{tag}> {word}</{tag}> ")
        elif kind == "block":
            tag = draw(BLOCK)
            parts.append(f"<{tag}>{word}</{tag}>")
        else:  # rows of cells (an empty one here and there), each word once, row by row
            rows = draw(st.lists(st.lists(WORDS | st.just(""), min_size=1, max_size=3), max_size=3))
            cells = ["".join(f"<td>{cell}</td>" for cell in row) for row in rows]
            parts.append(
                f"<table><tr><td>{word}</td></tr>{''.join(f'<tr>{c}</tr>' for c in cells)}</table>"
            )
            shown += [cell for row in rows for cell in row if cell]
    return "<body>" + "".join(parts) + "</body>", shown, hidden


@settings(max_examples=200, deadline=None)
@given(documents())
def test_every_shown_word_comes_out_in_order_and_no_hidden_one(
    document: tuple[str, list[str], list[str]],
) -> None:
    html, shown, hidden = document
    text = html_to_text(html)
    assert text.split() == shown
    assert not any(word in text for word in hidden)
    lines = text.split("\n")
    assert all(line == line.rstrip() for line in lines)
    assert "\n\n\n" not in text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_converts_without_error(html: str) -> None:
    assert isinstance(html_to_text(html), str)

"""The text part of a mail whose template has no ``body.txt``: made from its HTML.

The HTML is parsed by lxml (libxml2's HTML parser, which takes what browsers take) and
laid out as plain text in one walk over the tree:

- block elements (``p``, headings, ``div``, list items, table rows...) start a line of
  their own; paragraphs, headings and figures are set apart by a blank line;
- list items get ``*`` (``ul``) or their number (``ol``, from its ``start``), indented two
  spaces a level, their further lines under their text;
- a table's cells sit side by side, two spaces apart, each column as wide as its widest
  line; a column blank in every row, or a hidden cell, is left out, so a layout table of
  one column (the ones mail layouts nest) reads as its cells, one after the other; what a
  table holds outside its cells comes before it, as browsers show it (``colspan`` and
  ``rowspan`` are not followed: such a row's cells take the next columns);
- a link is written ``text <url>``: angle brackets are the delimiters RFC 3986 suggests
  for a URL in text, which no mail client takes for part of the URL;
- an image is its ``alt`` text in brackets, ``[The Shop]``; one with an empty ``alt``
  (decoration) not at all;
- ``<head>``, scripts, styles, comments and elements with ``display: none`` or
  ``hidden`` (the preheader) are left out; ``<br>`` breaks a line; ``<pre>`` keeps its
  blanks and lines;
- runs of blanks in text become one space (a no-break space stays), trailing blanks are
  trimmed, a line of nothing but blanks is empty and runs of empty lines are shortened to
  one;
- what libxml2 does not parse is not shown: past ~255 levels of nesting it stops, and the
  rest of the mail is lost (as it was with inscriptis, on the same parser).

It replaced inscriptis, whose general CSS layout took ~0.7 ms of a shipped mail's ~1.2 ms
render; this walk takes ~0.2 ms (bench/README.md, timers).
"""

from __future__ import annotations

import re
from itertools import chain, zip_longest

from lxml import etree

__all__ = ["html_to_text"]

#: elements whose content is never text
_SKIPPED = frozenset({"head", "script", "style", "template", "title", "meta", "link"})
#: elements set apart from what is around them by a blank line
_SPACED = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "figure", "blockquote", "hr"})
#: elements that start and end a line
_BLOCKS = _SPACED | {
    "address", "article", "aside", "body", "center", "dd", "div", "dl", "dt", "figcaption",
    "footer", "form", "header", "hgroup", "html", "li", "main", "nav", "ol", "section", "ul",
    "pre", "table", "tr", "td", "th", "caption",
}  # fmt: skip
_CELLS = frozenset({"td", "th"})
#: elements laid out by a rule of their own, not as their children in a row
_OWN_LAYOUT = frozenset({"br", "img", "table", "pre", "ul", "ol"})
_ROW_GROUPS = frozenset({"thead", "tbody", "tfoot"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_ASCII_BLANKS = " \t\n\r\f\v"
_BLANKS = re.compile(f"[{_ASCII_BLANKS}]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_CELL_GAP = "  "
_INDENT = "  "


def html_to_text(html: str) -> str:
    # bytes, so an encoding declaration in the HTML cannot contradict the parser; a parser
    # per call (half a microsecond), since one parser must not parse in two threads at once
    parser = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    root = etree.HTML(html.encode("utf-8", "replace"), parser)
    if root is None:  # nothing but blanks, a comment or a doctype
        return ""
    # a line of nothing but blanks (a paragraph holding only &nbsp;) is a blank line
    text = "\n".join(line.rstrip() for line in _Canvas().element(root).lines())
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _hidden(element: etree._Element) -> bool:
    if element.tag in _SKIPPED or element.get("hidden") is not None:
        return True
    style = element.get("style")
    return style is not None and _HIDDEN_STYLE.search(style) is not None


class _Canvas:
    """Lines of text being laid out: finished lines, the line being filled, and how many
    blank lines the next line asks to be preceded by."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._words: list[str] = []
        self._space = False  # a blank is owed before the next word on this line
        self._blank = 0  # blank lines owed before the next line
        self._prefix = ""  # written before the next line (a list item's marker)
        self._indent = ""
        self._pre = 0  # inside this many <pre>: blanks and line breaks kept

    def lines(self) -> list[str]:
        self._break()
        return self._lines

    # --- writing ------------------------------------------------------------------------

    def text(self, text: str | None) -> None:
        if not text:
            return
        if self._pre:
            self._preformatted(text)
            return
        if not text.strip(_ASCII_BLANKS):  # a no-break space is not a blank here
            self._space = True
            return
        collapsed = _BLANKS.sub(" ", text)
        if collapsed[0] == " ":
            self._space = True
            collapsed = collapsed.lstrip(" ")
        if not collapsed:
            return
        if self._space and self._words:
            self._words.append(" ")
        self._words.append(collapsed.rstrip(" "))
        self._space = collapsed[-1] == " "

    def _preformatted(self, text: str) -> None:
        for n, line in enumerate(text.split("\n")):
            if n:
                self._break(keep_empty=True)
            if line:
                self._words.append(line)
        self._space = False

    def _break(self, *, keep_empty: bool = False) -> None:
        """End the line being filled, if it has anything on it (or, with ``keep_empty``,
        even if not: ``<br><br>``)."""
        line = "".join(self._words)
        self._words, self._space = [], False
        if keep_empty or line.strip():
            self._put([line])

    def _put(self, lines: list[str]) -> None:
        if self._lines and self._blank:
            self._lines += [""] * self._blank
        self._blank = 0
        indent, first = self._indent, self._prefix
        self._prefix = ""  # a list item's marker stands in the indent of its first line
        head = indent[: len(indent) - len(first)] + first
        self._lines += [head + lines[0], *(indent + line for line in lines[1:])]

    def _gap(self, blank: int) -> None:
        if self._words:
            self._break()
        if blank > self._blank:
            self._blank = blank

    # --- the walk -----------------------------------------------------------------------

    def element(self, element: etree._Element) -> _Canvas:
        tag = element.tag
        if not isinstance(tag, str) or _hidden(element):
            return self  # a comment or processing instruction, or nothing to show
        if tag not in _OWN_LAYOUT:
            self._children(element)
        elif tag == "br":
            self._break(keep_empty=True)
        elif tag == "img":
            if alt := (element.get("alt") or "").strip():
                self.text(f"[{alt}]")
        elif tag == "table":
            self._gap(0)
            self._table(element)
            self._gap(0)
        elif tag == "pre":
            self._pre += 1
            self._children(element)
            self._pre -= 1
        else:  # ul, ol
            self._list(element)
        return self

    def _children(self, element: etree._Element) -> None:
        tag = element.tag
        blank = 1 if tag in _SPACED else 0
        block = tag in _BLOCKS
        if block:
            self._gap(blank)
        text, walk = self.text, self.element
        text(element.text)
        for child in element:
            walk(child)
            text(child.tail)
        if tag == "a" and (href := (element.get("href") or "").strip()):
            owed = self._space  # the link's text ended in a blank: it goes after the URL
            self.text(f" <{href}>")
            self._space = owed
        if block:
            self._gap(blank)

    def _list(self, element: etree._Element) -> None:
        """Items marked ``*`` or numbered (from ``start``), their lines indented past the
        marker."""
        self._gap(0)
        outer = self._indent
        self._indent = outer + _INDENT
        number = _start(element) - 1
        self.text(element.text)
        for child in element:
            if child.tag == "li" and not _hidden(child):
                number += 1
                self._gap(0)
                self._prefix = f"{number}. " if element.tag == "ol" else "* "
                self._indent = outer + _INDENT + " " * len(self._prefix)
            self.element(child)
            self.text(child.tail)
        self._gap(0)
        self._indent, self._prefix = outer, ""

    def _table(self, table: etree._Element) -> None:
        for caption in table.iterchildren("caption"):
            self.element(caption)
        rows = [
            [cell for cell in row if cell.tag in _CELLS and not _hidden(cell)]
            for row in self._stray(table)
        ]
        if all(len(cells) <= 1 for cells in rows):
            # a layout table: its cells one after the other, each a block
            for cells in rows:
                for cell in cells:
                    self.element(cell)
            return
        self._gap(1)  # a table of columns is set apart, like a paragraph
        self._columns([[_Canvas().element(cell).lines() for cell in cells] for cells in rows])
        self._gap(1)

    def _stray(self, table: etree._Element) -> list[etree._Element]:
        """Lay out what a table holds outside its cells (text, a ``form`` around rows):
        browsers show it above the table, so it comes first. The shown rows of the table
        itself (in its row groups too, not in tables nested in it), in one pass."""
        rows: list[etree._Element] = []
        self.text(table.text)
        for child in table:
            if child.tag == "tr":
                self._stray_in_row(child)
                rows.append(child)
            elif child.tag in _ROW_GROUPS:
                self.text(child.text)
                for row in child:
                    if row.tag == "tr":
                        self._stray_in_row(row)
                        if not _hidden(child):
                            rows.append(row)
                    else:
                        self.element(row)
                    self.text(row.tail)
            elif child.tag != "caption":
                self.element(child)
            self.text(child.tail)
        self._gap(0)
        return [row for row in rows if not _hidden(row)]

    def _stray_in_row(self, row: etree._Element) -> None:
        self.text(row.text)
        for cell in row:
            if cell.tag not in _CELLS:
                self.element(cell)
            self.text(cell.tail)

    def _columns(self, rows: list[list[list[str]]]) -> None:
        """Rows of cells, each cell's lines, side by side."""
        columns = list(zip_longest(*rows, fillvalue=[]))
        widths = [max((len(line) for cell in col for line in cell), default=0) for col in columns]
        # a column of nothing but blanks (spacer cells, images without alt) is left out
        shown = [i for i, column in enumerate(columns) if any(map(str.strip, chain(*column)))]
        for row in rows:
            cells = [(row[i] if i < len(row) else [], widths[i]) for i in shown]
            for n in range(max((len(cell) for cell, _ in cells), default=0)):
                parts = [(cell[n] if n < len(cell) else "").ljust(width) for cell, width in cells]
                self._put([_CELL_GAP.join(parts).rstrip(" ")])


def _start(ordered: etree._Element) -> int:
    """The number of a list's first item (``<ol start>``; 1 when it is absent or no number)."""
    try:
        return int(ordered.get("start") or 1)
    except ValueError:
        return 1

"""The text part of a mail whose template has no ``body.txt``: made from its HTML.

inscriptis lays the HTML out as text (block elements on their own lines, list bullets,
table cells side by side, ``display: none`` left out, so the hidden preheader is not
repeated, images shown by their ``alt`` text). A link is written ``text <url>``: angle
brackets are the delimiters RFC 3986 suggests for a URL in text, which no mail client
takes for part of the URL. Trailing blanks are trimmed and runs of blank lines
shortened to one.
"""

from __future__ import annotations

import re
from typing import Any

from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from inscriptis.model.tag import CustomHtmlTagHandlerMapping

__all__ = ["html_to_text"]


def _link_start(state: Any, attrs: dict[str, str]) -> None:
    state.link_target = attrs.get("href", "")


def _link_end(state: Any) -> None:
    if state.link_target:
        state.tags[-1].write(f" <{state.link_target}>")


_CONFIG = ParserConfig(
    display_images=True,  # as ``[alt]``; images with an empty alt (decoration) not at all
    custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
        start_tag_mapping={"a": _link_start}, end_tag_mapping={"a": _link_end}
    ),
)
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    # line by line, not a regex: `[ \t]+$` is quadratic in a long run of blanks, which a
    # table cell with a long value pads its column with
    lines = get_text(html, _CONFIG).split("\n")
    text = "\n".join(line.rstrip(" \t") for line in lines)
    return _BLANK_RUNS.sub("\n\n", text).strip()

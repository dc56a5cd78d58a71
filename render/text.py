"""The text part of a mail whose template has no ``body.txt``: made from its HTML.

inscriptis lays the HTML out as text (block elements on their own lines, list bullets,
table cells side by side, ``display: none`` left out, so the hidden preheader is not
repeated) and writes each link as ``[text](url)``. Links without text (an image that
links to the product whose name follows) are dropped, trailing blanks trimmed and runs
of blank lines shortened to one.
"""

from __future__ import annotations

import re

from inscriptis import get_text
from inscriptis.model.config import ParserConfig

__all__ = ["html_to_text"]

_CONFIG = ParserConfig(display_links=True)
_EMPTY_LINK = re.compile(r"\[\s*\]\([^)]*\)")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    text = get_text(html, _CONFIG)
    text = _TRAILING.sub("", _EMPTY_LINK.sub("", text))
    return _BLANK_RUNS.sub("\n\n", text).strip()

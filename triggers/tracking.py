"""Click and open tracking in a rendered mail's HTML (the tokens: :mod:`profiles.links`).

:func:`track` points every ``<a href="http(s)://...">`` at ``tracking.click_url``, with a
signed token naming the user, the message and the link's own URL, and adds the open
pixel (``tracking.open_url``, a 1x1 image) just before ``</body>`` (at the end without
one). It leaves alone:

- links that are not http(s): ``mailto:``, ``tel:``, ``#anchors``, relative ones;
- the URLs in ``keep``: the unsubscribe link (a redirect in front of it would hide it from
  the mailbox providers that look for it, and it is no click to count);
- links marked ``data-nudge-track="false"`` (a preferences page, a legal notice);
- links already through ``click_url``;
- URLs a token cannot carry (:func:`profiles.links.signable`: longer than 2,000
  characters, not printable ASCII): the link still works, untracked.

The attribute value is unescaped (``&amp;`` is ``&``) before it is signed, so the reader
lands on the URL the browser would have opened, and the new value is escaped. The text
part of a mail is not touched.

It runs per send on the worker's hot path: one regular-expression pass over the HTML finds
each ``<a`` tag with an ``href`` and its value (a ``>`` inside a quoted attribute value
does not end a tag); the user and message part of the MAC is computed once per mail, and
each distinct URL is signed once (about 8 µs per link, 160 µs for a 16 kB mail with 21
links). A tag that pass cannot read (no space between two attributes, a stray quote) is
left as it is: its link works, untracked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Set
from html import escape, unescape

from profiles import LinkSigner
from profiles.links import signable
from triggers.rules import Tracking

__all__ = ["track"]

#: an attribute: a name, and a value double-quoted, single-quoted or bare (as browsers read it)
_ATTRIBUTE = r"""[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>][^\s>]*))?"""
#: an ``<a>`` tag with an ``href`` (the first counts, as in browsers), its value in ``dq``,
#: ``sq`` or ``bare``; one pass in the regular-expression engine finds tag and value
_LINK = re.compile(
    rf"""<a(?:\s+(?!href[\s=/>]){_ATTRIBUTE})*"""
    r"""\s+(?P<href>href\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'>][^\s>]*)))"""
    rf"""(?:\s+{_ATTRIBUTE})*\s*/?>""",
    re.IGNORECASE,
)
_OPT_OUT = re.compile(r"""\sdata-nudge-track\s*=\s*["']?\s*false\b""", re.IGNORECASE)
_HTML_SPACE = " \t\n\r\f"  # stripped from both ends of a URL attribute


def track(
    html: str,
    *,
    user_id: str,
    message_id: str,
    tracking_config: Tracking,
    signer: LinkSigner,
    keep: Set[str] = frozenset(),
) -> str:
    """``html`` with its links through ``tracking_config.click_url`` and the open pixel
    of ``tracking_config.open_url`` (either unset: that part is left out)."""
    click_url, open_url = tracking_config.click_url, tracking_config.open_url
    if click_url is not None:
        html = _wrap_links(html, click_url, user_id, message_id, signer, keep)
    if open_url is not None:
        token = signer.sign_open(user_id, message_id)  # URL-safe, as a click token
        html = _with_pixel(html, open_url.replace("{token}", token))
    return html


def _wrap_links(
    html: str, click_url: str, user_id: str, message_id: str, signer: LinkSigner, keep: Set[str]
) -> str:
    tracked = click_url.split("{token}", 1)[0]
    done: dict[str, str] = {}  # URL -> new attribute: a URL repeated is signed once
    sign: Callable[[str], str] | None = None  # prepared at the first link to sign

    def rewrite(link: re.Match[str]) -> str:
        nonlocal sign
        tag = link.group(0)
        url = unescape(_value(link)).strip(_HTML_SPACE)
        if url in keep or url.startswith(tracked) or not signable(url) or _OPT_OUT.search(tag):
            return tag
        attribute = done.get(url)
        if attribute is None:
            sign = sign or signer.clicks(user_id, message_id)
            # a token is URL-safe ([A-Za-z0-9_-], "dev."): it goes in as it is
            attribute = done[url] = f'href="{escape(click_url.replace("{token}", sign(url)))}"'
        start, end = link.start("href") - link.start(), link.end("href") - link.start()
        return tag[:start] + attribute + tag[end:]

    return _LINK.sub(rewrite, html)


def _value(link: re.Match[str]) -> str:
    double, single, bare = link.group("dq", "sq", "bare")
    return double if double is not None else single if single is not None else bare


def _with_pixel(html: str, src: str) -> str:
    """``html`` with a 1x1 image of ``src`` just before its last ``</body>``."""
    pixel = (
        f'<img src="{escape(src)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    at = html.lower().rfind("</body")
    if at < 0:
        return html + pixel
    return html[:at] + pixel + html[at:]

"""Click links and the open pixel in a mail's HTML, on their own and on the engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import orjson
import pytest

from profiles import (
    InMemoryProfileStore,
    InMemoryTimerStore,
    LinkSigner,
    UnsubscribeSigner,
    development_link_signer,
)
from profiles.links import MAX_URL_LENGTH
from triggers import ConfigError, Engine, Incoming, InMemoryOutbox, load_rules
from triggers.rules import Tracking
from triggers.tracking import track

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEY = b"tracking-test-key-0123456789abcdef"
SIGNER = LinkSigner([KEY])
RID = "3f2a9c0d8e7b6a5f4e3d2c1b0a998877"
CLICK = "https://t.shop.example/c/{token}"
OPEN = "https://t.shop.example/o/{token}.gif"
BOTH = Tracking(click_url=CLICK, open_url=OPEN)
CLICKS = Tracking(click_url=CLICK)
UNSUBSCRIBE = "https://shop.example/u/dev.AQBppXvA?via=mail&x=1"
TRACKED = re.compile(r'href="https://t\.shop\.example/c/([A-Za-z0-9_.-]+)"')


def tracked(html: str, tracking: Tracking = CLICKS, *, keep: frozenset[str] = frozenset()) -> str:
    return track(
        html, user_id="ada", message_id=RID, tracking_config=tracking, signer=SIGNER, keep=keep
    )


def clicked(html: str) -> list[str]:
    """The URLs the tracked links of ``html`` lead to, in order."""
    links = [SIGNER.verify_click(token) for token in TRACKED.findall(html)]
    assert all((link.user_id, link.message_id) == ("ada", RID) for link in links)
    return [link.url for link in links]


def test_every_http_link_goes_through_the_click_url() -> None:
    html = (
        '<p><a href="https://shop.example/p/tent">Tent</a> and '
        "<a class='x' href='http://shop.example/p/stove' title=\"a > b\">Stove</a>, "
        '<A\n  TARGET="_blank"\n  HREF=https://shop.example/p/mug>Mug</A></p>'
    )
    out = tracked(html)
    assert clicked(out) == [
        "https://shop.example/p/tent",
        "http://shop.example/p/stove",
        "https://shop.example/p/mug",
    ]
    # only the href changed: the rest of each tag, and the text between, stay
    assert TRACKED.sub('href="X"', out) == (
        '<p><a href="X">Tent</a> and '
        '<a class=\'x\' href="X" title="a > b">Stove</a>, '
        '<A\n  TARGET="_blank"\n  href="X">Mug</A></p>'
    )


@pytest.mark.parametrize(
    "anchor",
    [
        '<a href="mailto:help@shop.example">Mail us</a>',
        '<a href="tel:+441234567">Call us</a>',
        '<a href="#top">Top</a>',
        '<a href="/relative">Relative</a>',
        '<a href="javascript:alert(1)">Script</a>',
        '<a href="">Empty</a>',
        "<a href>No value</a>",
        '<a class="x"href="https://shop.example/">No space between attributes</a>',
        '<a href="https://shop.example/" title="stray " quote">Stray quote</a>',
        '<a name="top">No href</a>',
        '<a href="https://shop.example/legal" data-nudge-track="false">Legal</a>',
        "<a data-nudge-track='FALSE' href='https://shop.example/prefs'>Preferences</a>",
        '<a href="https://t.shop.example/c/already">Tracked already</a>',
        '<a href="https://shop.example/caf\u00e9">Not ASCII</a>',
        f'<a href="https://shop.example/{"x" * MAX_URL_LENGTH}">Too long</a>',
        '<abbr title="https://shop.example/">Not a link</abbr>',
        '<area href="https://shop.example/map">',
        '<a-b href="https://shop.example/custom">Custom element</a-b>',
    ],
)
def test_what_is_left_alone(anchor: str) -> None:
    html = f"<p>{anchor}</p>"
    assert tracked(html) == html


def test_a_closing_bracket_in_a_quoted_value_does_not_end_the_tag() -> None:
    out = tracked('<a title=\'a > b\' data-x="<" href="https://shop.example/">Shop</a>')
    assert clicked(out) == ["https://shop.example/"]
    assert out.startswith('<a title=\'a > b\' data-x="<" href="https://t.shop.example/c/')


def test_the_unsubscribe_link_is_kept() -> None:
    html = (
        '<a href="https://shop.example/">Shop</a> '
        f'<a href="{UNSUBSCRIBE.replace("&", "&amp;")}">Unsubscribe</a>'
    )
    out = tracked(html, keep=frozenset({UNSUBSCRIBE}))
    assert clicked(out) == ["https://shop.example/"]
    assert out.endswith(
        '<a href="https://shop.example/u/dev.AQBppXvA?via=mail&amp;x=1">Unsubscribe</a>'
    )
    assert clicked(tracked(html)) == ["https://shop.example/", UNSUBSCRIBE]  # without keep


def test_a_marked_link_is_left_and_a_later_one_tracked() -> None:
    html = (
        '<a href="https://shop.example/a" data-nudge-track="false">A</a>'
        '<a href="https://shop.example/b" data-nudge-track="true">B</a>'
    )
    assert clicked(tracked(html)) == ["https://shop.example/b"]


def test_escaping_round_trips_a_url_with_a_query_and_ampersands() -> None:
    url = "https://shop.example/search?q=tent&amp;size=2&#38;colour=green&lt;x#reviews"
    out = tracked(f'<a href=" {url}\n">Search</a>')
    assert clicked(out) == ["https://shop.example/search?q=tent&size=2&colour=green<x#reviews"]


def test_a_click_url_with_a_query_is_escaped_in_the_attribute() -> None:
    tracking = Tracking(click_url="https://t.shop.example/c?t={token}&v=1")
    out = tracked('<a href="https://shop.example/">Shop</a>', tracking)
    [href] = re.findall(r'href="([^"]*)"', out)
    assert "&amp;v=1" in href and "&v=" not in href
    url = unescape(href)
    token = url.removeprefix("https://t.shop.example/c?t=").removesuffix("&v=1")
    assert SIGNER.verify_click(token).url == "https://shop.example/"


def test_one_url_twice_is_one_token() -> None:
    out = tracked('<a href="https://shop.example/">a</a><a href="https://shop.example/">b</a>')
    first, second = TRACKED.findall(out)
    assert first == second


def test_the_first_href_counts() -> None:
    out = tracked('<a href="https://shop.example/one" href="https://evil.example/">x</a>')
    assert clicked(out) == ["https://shop.example/one"]
    assert 'href="https://evil.example/"' in out


def test_the_open_pixel_goes_before_the_end_of_the_body() -> None:
    out = tracked("<html><body><p>Hi</p></body>\n</html>", BOTH)
    before, after = out.split("</body>")
    assert after == "\n</html>"
    [src] = re.findall(r'<img src="https://t\.shop\.example/o/([A-Za-z0-9_.-]+)\.gif" ', before)
    pixel = SIGNER.verify_open(src)
    assert (pixel.user_id, pixel.message_id) == ("ada", RID)
    assert before.endswith(
        'width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    )


def test_the_open_pixel_goes_to_the_end_without_a_body_and_before_an_upper_case_one() -> None:
    assert tracked("<p>Hi</p>", Tracking(open_url=OPEN)).startswith("<p>Hi</p><img ")
    assert tracked("<BODY>Hi</BODY>", Tracking(open_url=OPEN)).endswith('1px">' + "</BODY>")


def test_without_a_tracking_block_nothing_changes() -> None:
    html = '<html><body><a href="https://shop.example/">Shop</a></body></html>'
    assert tracked(html, Tracking()) is html


def test_development_links_say_so() -> None:
    out = track(
        '<a href="https://shop.example/">Shop</a>',
        user_id="ada",
        message_id=RID,
        tracking_config=CLICKS,
        signer=development_link_signer(),
    )
    assert TRACKED.findall(out)[0].startswith("dev.")


# --- on the engine --------------------------------------------------------------------------

RULES = f"""\
version: 1
sender:
  from_email: hello@shop.example
  unsubscribe_url: https://shop.example/u/{{token}}
tracking:
  click_url: {CLICK}
  open_url: {OPEN}
rules:
  - id: welcome
    kind: on_event
    events: [signup]
    template: links
  - id: receipt
    kind: on_event
    events: [purchase]
    category: transactional
    template: links
"""

LINKS_HTML = """\
<html><body>
<p><a href="https://shop.example/p/tent?size=2&amp;colour=green">Tent</a></p>
<p><a href="mailto:help@shop.example">Help</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


def with_template(config: Path) -> Path:
    """``config`` with the ``links`` template the rules above name."""
    template = config / "templates" / "links"
    template.mkdir()
    (template / "subject.txt").write_text("Hello")
    (template / "body.txt").write_text("https://shop.example/p/tent\n{{ unsubscribe_url }}\n")
    (template / "body.html").write_text(LINKS_HTML)
    return config


def message(offset: int, kind: str, user: str, **props: object) -> Incoming:
    event = {
        "event_id": f"{user}-{offset}",
        "type": kind,
        "user_id": user,
        "ts": (T0 + timedelta(minutes=offset)).isoformat(),
        "properties": props,
    }
    return Incoming(orjson.dumps(event), user.encode(), "events", 0, offset)


async def test_a_send_carries_links_whose_tokens_verify_to_its_request(
    make_config: Callable[[str], Path],
) -> None:
    config = with_template(make_config(RULES))
    outbox = InMemoryOutbox()
    engine = Engine(
        rules=load_rules(config, unsubscribe=UnsubscribeSigner([KEY])),
        profiles=InMemoryProfileStore(),
        timers=InMemoryTimerStore(),
        outbox=outbox,
        clock=lambda: T0,
    )
    consent = {"email": True}
    await engine.process(
        [
            message(1, "signup", "ada", email="ada@example.com", consent=consent),
            message(2, "purchase", "ada", order_id="o1", total=5.0),
        ]
    )
    assert sorted(s.category for s in outbox.sends) == ["marketing", "transactional"]
    for send in outbox.sends:
        [token] = TRACKED.findall(send.html)
        link = SIGNER.verify_click(token)  # the collector's keys: the unsubscribe keys
        assert (link.user_id, link.message_id) == ("ada", send.request_id)
        assert link.url == "https://shop.example/p/tent?size=2&colour=green"
        [pixel] = re.findall(r'src="https://t\.shop\.example/o/([^"]+)\.gif"', send.html)
        assert SIGNER.verify_open(pixel).message_id == send.request_id
        assert 'href="mailto:help@shop.example"' in send.html
        unsubscribe = re.findall(r'href="(https://shop\.example/u/[^"]+)"', send.html)
        assert len(unsubscribe) == 1  # kept, not wrapped
        assert send.text.startswith("https://shop.example/p/tent\n")  # the text part as it was


@pytest.mark.parametrize(
    ("field", "url", "message"),
    [
        ("click_url", "https://t.shop.example/c/", "must contain {token}"),
        ("click_url", "http://t.shop.example/c/{token}", "must be an https:// URL"),
        ("open_url", "https://t.shop.example/o/{token}.gif?u={user_id}", "unknown placeholder"),
        ("open_url", "https://t.shop.example/o.gif", "https://t.shop.example/o/{token}.gif"),
    ],
)
def test_validate_refuses_a_tracking_url_without_a_signed_token(
    make_config: Callable[[str], Path], field: str, url: str, message: str
) -> None:
    config = with_template(make_config(RULES.replace(CLICK if field == "click_url" else OPEN, url)))
    with pytest.raises(ConfigError) as caught:
        load_rules(config)
    [issue] = caught.value.issues
    assert f"tracking.{field}: " in str(issue) and message in str(issue)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://127.0.0.1:8080/c/{token}", True),
        ("http://localhost/c/{token}", True),
        ("http://[::1]:8080/c/{token}", True),
        ("http://127.0.0.1.shop.example/c/{token}", False),
        ("http://localhost@shop.example/c/{token}", False),
    ],
)
def test_plain_http_only_to_the_loopback_address(
    make_config: Callable[[str], Path], url: str, accepted: bool
) -> None:
    config = with_template(make_config(RULES.replace(CLICK, url)))
    if accepted:
        assert load_rules(config).config.tracking.click_url == url
    else:
        with pytest.raises(ConfigError, match="must be an https:// URL"):
            load_rules(config)


async def test_a_public_url_serves_every_link_from_the_collector(
    make_config: Callable[[str], Path],
) -> None:
    rules = RULES.replace(f"tracking:\n  click_url: {CLICK}\n  open_url: {OPEN}\n", "")
    config = with_template(make_config(rules))
    loaded = load_rules(
        config, public_url="https://t.shop.example/", unsubscribe=UnsubscribeSigner([KEY])
    )
    outbox = InMemoryOutbox()
    engine = Engine(
        rules=loaded,
        profiles=InMemoryProfileStore(),
        timers=InMemoryTimerStore(),
        outbox=outbox,
        clock=lambda: T0,
    )
    consent = {"email": True}
    await engine.process([message(1, "signup", "ada", email="ada@example.com", consent=consent)])
    [send] = outbox.sends
    [token] = TRACKED.findall(send.html)
    assert SIGNER.verify_click(token).url == "https://shop.example/p/tent?size=2&colour=green"
    assert re.search(r'src="https://t\.shop\.example/o/[A-Za-z0-9_.-]+\.gif"', send.html)
    [unsubscribe] = re.findall(r'href="(https://t\.shop\.example/u/[^"]+)"', send.html)
    assert send.headers["List-Unsubscribe"] == f"<{unsubscribe}>"

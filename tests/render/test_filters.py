"""money, number, date and datetime format for the reader: their locale and time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from render import Renderer, RenderError, build_expression_environment

AT = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)


def render(tmp_path: Path, source: str, locale: str | None = None, **context: Any) -> str:
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "t" / "subject.txt").write_text(source)
    (tmp_path / "t" / "body.html").write_text("x")
    renderer = Renderer(tmp_path, locale="en_US", currency="EUR", timezone="Europe/London")
    return renderer.render("t", context, locale=locale).subject


@pytest.mark.parametrize(
    ("source", "locale", "expected"),
    [
        ("{{ 1234.5 | money('EUR') }}", "de_DE", "1.234,50 €"),
        ("{{ 1234.5 | money('EUR') }}", "de-AT", "€ 1.234,50"),
        ("{{ 1234.5 | money('EUR') }}", "en_US", "€1,234.50"),
        ("{{ 1234.5 | money('USD') }}", "en_US", "$1,234.50"),
        ("{{ 1234.5 | money('USD') }}", "de_DE", "1.234,50 $"),
        ("{{ 1234.5 | money }}", "de_DE", "1.234,50 €"),  # the renderer's currency
        ("{{ 1234.5 | money }}", None, "€1,234.50"),  # and its locale
        ("{{ 1234.5 | money }}", "xx_YY", "€1,234.50"),  # nobody knows it: the default
        ("{{ 1234.5 | money }}", "de_XX", "1.234,50 €"),  # the language is known
        ("{{ '12.5' | money }}", "en_US", "€12.50"),
        ("{{ 1234.5678 | number }}", "de_DE", "1.234,568"),
        ("{{ 1234.5 | number(2) }}", "de_DE", "1.234,50"),
        ("{{ 1234.5 | number(0) }}", "en_US", "1,234"),
        ("{{ 3 | number(2) }}", "en_US", "3.00"),
    ],
)
def test_numbers_in_the_readers_locale(
    tmp_path: Path, source: str, locale: str | None, expected: str
) -> None:
    assert render(tmp_path, source, locale).replace("\xa0", " ") == expected


@pytest.mark.parametrize(
    ("source", "locale", "zone", "expected"),
    [
        # 23:30 UTC is already the 2nd in Vienna
        ("{{ at | date }}", "de_AT", "Europe/Vienna", "02.03.2026"),
        ("{{ at | date('long') }}", "de_DE", "Europe/Vienna", "2. März 2026"),
        ("{{ at | date('long') }}", "en_US", None, "March 1, 2026"),  # London: still the 1st
        ("{{ at | date('d MMM') }}", "en_US", "Asia/Tokyo", "2 Mar"),
        ("{{ at | datetime('short') }}", "de_DE", "Europe/Berlin", "02.03.26, 00:30"),
        ("{{ '2026-03-01T23:30:00Z' | datetime('short') }}", "en_US", "UTC", "3/1/26, 11:30 PM"),
        ("{{ '2026-03-01' | date('long') }}", "de", "Asia/Tokyo", "1. März 2026"),
        ("{{ day | date('long') }}", "en_US", "Asia/Tokyo", "March 1, 2026"),
    ],
)
def test_dates_in_the_readers_locale_and_zone(
    tmp_path: Path, source: str, locale: str, zone: str | None, expected: str
) -> None:
    context: dict[str, Any] = {"at": AT, "day": date(2026, 3, 1)}
    if zone is not None:
        context["timezone"] = zone
    rendered = render(tmp_path, source, locale, **context)
    assert rendered.replace("\u202f", " ").replace("\xa0", " ") == expected


def test_a_zone_object_and_an_unknown_zone_name(tmp_path: Path) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    assert render(tmp_path, "{{ at | date }}", "en_US", at=AT, timezone=tokyo) == "Mar 2, 2026"
    unknown = render(tmp_path, "{{ at | date }}", "en_US", at=AT, timezone="Mars/Olympus")
    assert unknown == "Mar 1, 2026"  # the default zone, London


@pytest.mark.parametrize(
    "source",
    ["{{ 'soon' | money }}", "{{ true | money }}", "{{ 'soon' | date }}", "{{ 3 | date }}"],
)
def test_what_is_no_amount_or_date_fails_the_render(tmp_path: Path, source: str) -> None:
    with pytest.raises(RenderError):
        render(tmp_path, source)


def test_conditions_keep_the_filters() -> None:
    env = build_expression_environment()
    money = env.compile_expression("total | money('USD')")
    assert money(total=Decimal("9.5")) == "$9.50"
    assert env.compile_expression("total | number(1)")(total=2) == "2.0"

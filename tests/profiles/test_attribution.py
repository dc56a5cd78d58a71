"""Opens, clicks and purchases are counted once, for the mail they belong to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from profiles import Credit, Event, Exposure, attribute, expose

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=5)


def _event(kind: str, at: datetime, **props: Any) -> Event:
    return Event(
        event_id=f"{kind}-{at.isoformat()}", type=kind, user_id="u1", ts=at, properties=props
    )


def _exposed(*sends: tuple[str, str, datetime]) -> list[Exposure]:
    exposures: list[Exposure] = []
    for message_id, arm, at in sends:
        exposures, _ = expose(
            exposures, Exposure(message_id=message_id, experiment="e", arm=arm, at=at)
        )
    return exposures


def test_an_exposure_counts_once_even_when_the_send_repeats() -> None:
    exposure = Exposure(message_id="m1", experiment="e", arm="a", at=T0)
    exposures, first = expose([], exposure)
    again, second = expose(exposures, exposure)
    assert first == Credit("e", "a", "exposed")
    assert second is None and again == exposures


def test_the_first_open_counts_and_a_click_counts_as_an_open_too() -> None:
    exposures = _exposed(("m1", "a", T0), ("m2", "b", T0))
    assert attribute(
        exposures, _event("email_click", T0, message_id="m2", url="https://x"), WINDOW
    ) == [
        Credit("e", "b", "opened"),
        Credit("e", "b", "clicked"),
    ]
    assert attribute(exposures, _event("email_open", T0, message_id="m2"), WINDOW) == []
    assert attribute(exposures, _event("email_open", T0, message_id="m1"), WINDOW) == [
        Credit("e", "a", "opened")
    ]
    assert attribute(exposures, _event("email_open", T0, message_id="unknown"), WINDOW) == []


def test_a_purchase_counts_for_the_latest_mail_before_it_within_the_window() -> None:
    exposures = _exposed(("m1", "a", T0), ("m2", "holdout", T0 + timedelta(days=1)))
    bought = attribute(
        exposures, _event("purchase", T0 + timedelta(days=2), order_id="o", total=30.0), WINDOW
    )
    assert bought == [
        Credit("e", "holdout", "converted"),
        Credit("e", "holdout", "revenue", 30.0),
        Credit("e", "holdout", "revenue_sq", 900.0),
    ]
    # a second purchase adds revenue (and the square grows to the new total's) only
    again = attribute(
        exposures, _event("purchase", T0 + timedelta(days=3), order_id="p", total=10.0), WINDOW
    )
    assert again == [
        Credit("e", "holdout", "revenue", 10.0),
        Credit("e", "holdout", "revenue_sq", 40.0**2 - 30.0**2),
    ]


def test_purchases_before_any_mail_or_past_the_window_count_for_none() -> None:
    exposures = _exposed(("m1", "a", T0))
    early = _event("purchase", T0 - timedelta(seconds=1), order_id="o", total=5.0)
    late = _event("purchase", T0 + WINDOW + timedelta(seconds=1), order_id="p", total=5.0)
    assert attribute(exposures, early, WINDOW) == []
    assert attribute(exposures, late, WINDOW) == []

"""Reading a history, rolling-origin examples and the planted-truth generator."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from profiles import ScoringConfig, apply_event
from profiles.predictions import FEATURES
from profiles.predictions.examples import build_examples, cutoff_times, row_offset
from profiles.predictions.features import feature_vector
from profiles.predictions.history import EventFile, HistoryError, parse_events, write_events
from profiles.predictions.synthetic import SyntheticHistory

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SCORING = ScoringConfig()


def event(user: str, kind: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{kind}-{at.isoformat()}",
        "type": kind,
        "user_id": user,
        "ts": at.isoformat(),
        "properties": props,
    }


def purchase(user: str, at: datetime, total: float) -> dict[str, Any]:
    return event(user, "purchase", at, order_id=f"o-{user}-{at.isoformat()}", total=total)


# -- reading ---------------------------------------------------------------------------


def test_an_invalid_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = orjson.dumps(event("u1", "page_view", AS_OF, url="/"))
    path.write_bytes(good + b"\n\n" + b'{"type": "page_view"}\n')
    with pytest.raises(HistoryError, match=r"events\.jsonl:3: schema_violation"):
        list(EventFile(path))


def test_skip_invalid_skips_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(orjson.dumps(event("u1", "page_view", AS_OF, url="/")) + b"\n")
        out.write(b"not json\n")
    history = EventFile(path, skip_invalid=True)
    assert [e.user_id for e in history] == ["u1"]
    assert (history.read, history.skipped) == (1, 1)


def test_a_missing_file_is_a_history_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot read"):
        list(EventFile(tmp_path / "none.jsonl"))


def test_written_events_read_back(tmp_path: Path) -> None:
    events = [event("u1", "page_view", AS_OF, url="/"), purchase("u1", AS_OF, 12.5)]
    assert write_events(events, tmp_path / "e.jsonl.gz") == 2
    assert [e.type for e in EventFile(tmp_path / "e.jsonl.gz")] == ["page_view", "purchase"]


# -- examples --------------------------------------------------------------------------


def test_every_label_window_ends_by_as_of() -> None:
    times = cutoff_times(AS_OF, horizon_days=30, count=4)
    assert times == sorted(times)
    assert times[-1] + timedelta(days=30) == AS_OF
    assert {b - a for a, b in pairwise(times)} == {timedelta(days=30)}


def _examples(events: list[dict[str, Any]]) -> Any:
    return build_examples(
        parse_events(events), as_of=AS_OF, horizon_days=30, cutoffs=3, scoring=SCORING
    )


def test_labels_come_from_the_horizon_after_the_cutoff() -> None:
    cut = AS_OF - timedelta(days=30)
    events = [
        purchase("buyer", cut - 40 * DAY, 10.0),  # before: last period's revenue
        purchase("buyer", cut - 5 * DAY, 20.0),
        event("visitor", "page_view", cut - 3 * DAY, url="/"),
        purchase("quiet", cut - 50 * DAY, 30.0),
        event("buyer", "page_view", cut + DAY, url="/"),
        purchase("buyer", cut + 2 * DAY, 15.0),
        purchase("buyer", cut + 3 * DAY, 5.0),
        event("visitor", "page_view", cut + 4 * DAY, url="/"),
        event("quiet", "email_open", cut + 5 * DAY, message_id="m"),  # mail is not activity
        event("newcomer", "page_view", cut + 6 * DAY, url="/"),
    ]
    test = _examples(events).cutoffs[-1]
    assert test.rows.at == cut
    row = {u: i for i, u in enumerate(test.rows.user_ids)}
    assert set(row) == {"buyer", "visitor", "quiet"}  # newcomer was not known yet
    b, v, q = row["buyer"], row["visitor"], row["quiet"]
    assert (test.purchased[b], test.orders[b], test.revenue[b]) == (True, 2, 20.0)
    assert test.prior_revenue[b] == 20.0  # the order 40 days before is outside
    assert (test.purchased[v], test.active[v]) == (False, True)
    assert (test.active[q], test.churned[q], test.past_buyers[q]) == (False, True, True)
    assert not test.past_buyers[v]
    assert test.rows.features.shape == (3, len(FEATURES))
    # the row sees what came before the cutoff, none of what it is labelled with
    assert test.rows.features[b, FEATURES.index("orders_lifetime")] == 2
    assert test.rows.features[b, FEATURES.index("revenue_lifetime")] == 30.0
    assert test.rows.features[q, FEATURES.index("orders_lifetime")] == 1
    assert test.rows.features[v, FEATURES.index("active_days_7d")] == 1


def test_a_users_row_and_labels_start_at_their_own_moment_of_the_day() -> None:
    cut = AS_OF - timedelta(days=30)
    moment = cut - row_offset("u1")
    events = [
        purchase("u1", moment - DAY, 10.0),
        purchase("u1", moment, 20.0),  # at the moment: in the row
        purchase("u1", moment + timedelta(seconds=1), 40.0),  # before the cutoff: a label
        purchase("u1", moment + timedelta(days=30), 80.0),  # the label window's last second
        purchase("u1", moment + timedelta(days=30, seconds=1), 160.0),  # after it
    ]
    test = _examples(events).cutoffs[-1]
    assert test.rows.features[0, FEATURES.index("revenue_lifetime")] == 30.0
    assert (test.orders[0], test.revenue[0], test.prior_revenue[0]) == (2, 120.0, 30.0)


def test_offsets_spread_rows_over_the_day() -> None:
    offsets = [row_offset(f"u{i}") for i in range(500)]
    assert all(timedelta(0) <= o < DAY for o in offsets)
    hours = Counter(int(o.total_seconds() // 3600) for o in offsets)
    assert len(hours) == 24 and max(hours.values()) < 3 * 500 / 24


def test_each_training_row_is_the_users_features_at_their_own_moment() -> None:
    """Folded independently, event by event: a row is the user's profile with exactly the
    events up to their moment, as of that moment."""
    history = SyntheticHistory(users=150, days=100, seed=2)
    events = list(parse_events(history.events()))
    as_of = history.end
    examples = build_examples(events, as_of=as_of, horizon_days=20, cutoffs=3, scoring=SCORING)
    for labelled in examples.cutoffs:
        assert len(labelled.rows.user_ids) > 50
        for user, row in zip(labelled.rows.user_ids, labelled.rows.features, strict=True):
            moment = labelled.rows.at - row_offset(user)
            profile = None
            for e in events:
                if e.user_id == user and e.ts <= moment:
                    profile = apply_event(profile, e, SCORING)
            assert profile is not None
            assert row.tolist() == feature_vector(profile, moment, SCORING)


def test_events_after_as_of_are_not_read() -> None:
    events = [
        event("u1", "page_view", AS_OF - 10 * DAY, url="/"),
        purchase("u1", AS_OF + DAY, 99.0),
        event("u2", "page_view", AS_OF + 2 * DAY, url="/"),
    ]
    examples = _examples(events)
    assert (examples.events_read, examples.future_events) == (1, 2)
    assert examples.current.user_ids == ("u1",)
    assert examples.current.features[0, FEATURES.index("orders_lifetime")] == 0


def test_a_late_event_is_counted_and_kept_out_of_rows_already_taken() -> None:
    cut = AS_OF - timedelta(days=30)
    events = [
        event("u1", "page_view", cut - 2 * DAY, url="/"),
        event("u1", "page_view", cut + DAY, url="/"),
        purchase("u1", cut - DAY, 10.0),  # arrives after the cutoff was taken
    ]
    examples = _examples(events)
    test = examples.cutoffs[-1]
    assert examples.late_events == 1  # older than the page view read before it
    assert test.rows.features[0, FEATURES.index("orders_lifetime")] == 0
    assert examples.current.features[0, FEATURES.index("orders_lifetime")] == 1


# -- the planted-truth generator -------------------------------------------------------


@pytest.fixture(scope="module")
def shop() -> tuple[SyntheticHistory, list[dict[str, Any]]]:
    history = SyntheticHistory(users=2000, days=365, seed=11)
    return history, list(history.events())


def test_generated_events_are_valid_ordered_and_repeatable(
    shop: tuple[SyntheticHistory, list[dict[str, Any]]],
) -> None:
    history, events = shop
    times = [e["ts"] for e in events]
    assert times == sorted(times)
    assert all(history.start <= t <= history.end for t in times)
    assert sum(1 for _ in parse_events(events[:3000])) == 3000
    again = SyntheticHistory(users=2000, days=365, seed=11).events()
    assert [next(again) for _ in range(500)] == events[:500]


def test_the_shop_looks_like_a_gift_shop(
    shop: tuple[SyntheticHistory, list[dict[str, Any]]],
) -> None:
    """README's figures: 35% buy once, median 2 orders (p90 9), median 22 days between
    orders (p90 104), ~15 lines an order, the top tenth of items make ~45% of lines."""
    _, events = shop
    orders: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["type"] == "purchase":
            orders.setdefault(e["user_id"], []).append(e)
    per_buyer = np.array([len(o) for o in orders.values()])
    assert 0.28 <= (per_buyer == 1).mean() <= 0.45
    assert np.median(per_buyer) == 2
    assert 6 <= np.percentile(per_buyer, 90) <= 12
    gaps = np.concatenate(
        [np.diff([e["ts"].timestamp() for e in o]) / 86400 for o in orders.values() if len(o) > 1]
    )
    assert 14 <= np.median(gaps) <= 30
    lines = [len(e["properties"]["items"]) for o in orders.values() for e in o]
    assert 12 <= np.mean(lines) <= 18
    items = Counter(
        i["product_id"] for o in orders.values() for e in o for i in e["properties"]["items"]
    )
    counts = sorted(items.values(), reverse=True)
    assert 0.38 <= sum(counts[: len(counts) // 10]) / sum(counts) <= 0.55


def test_truth_is_probabilities_of_known_users(
    shop: tuple[SyntheticHistory, list[dict[str, Any]]],
) -> None:
    history, _ = shop
    at = history.end - timedelta(days=30)
    truth = history.truth(at, 30)
    assert all(history.users[int(u[1:])].signup <= at.timestamp() for u in truth.user_ids)
    for p in (truth.purchase, truth.churn):
        assert ((p >= 0) & (p <= 1)).all()
    # browsers never buy; users who have churned are not alive
    browsers = truth.group == 3
    assert (truth.purchase[browsers] == 0).all()

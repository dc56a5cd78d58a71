"""Experiment counter fields: written by the engine, read back per arm by the report."""

from __future__ import annotations

import pytest

from triggers.arms import ArmCounts, arm_counts, counter_field, parse_counter_field


def test_a_field_reads_back_as_what_named_it() -> None:
    field = counter_field("cart_subjects", "b", "clicked")
    assert parse_counter_field(field) == ("cart_subjects", "b", "clicked")


def test_other_counters_and_unknown_metrics_are_not_experiment_counts() -> None:
    assert parse_counter_field("y\x1fsomething") is None
    assert parse_counter_field("x\x1fexp\x1farm\x1fbogus") is None
    with pytest.raises(ValueError, match="unknown metric"):
        counter_field("exp", "a", "bogus")


def test_counts_are_summed_per_experiment_and_arm() -> None:
    counters = {
        counter_field("e", "a", "exposed"): 10.0,
        counter_field("e", "a", "opened"): 4.0,
        counter_field("e", "a", "revenue"): 99.5,
        counter_field("e", "holdout", "exposed"): 2.0,
        counter_field("f", "default", "clicked"): 1.0,
        "unrelated": 7.0,
    }
    assert arm_counts(counters) == {
        "e": {
            "a": ArmCounts(exposed=10, opened=4, revenue=99.5),
            "holdout": ArmCounts(exposed=2),
        },
        "f": {"default": ArmCounts(clicked=1)},
    }

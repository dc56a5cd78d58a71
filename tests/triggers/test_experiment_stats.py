"""Experiment statistics against reference values: scipy and statsmodels on fixed counts,
a few computed by hand, and properties over arbitrary counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from triggers.arms import ArmCounts
from triggers.experiment_stats import (
    Z95,
    Mean,
    Proportion,
    difference_interval,
    format_p,
    holm,
    mean_interval,
    proportion,
    summarise,
    two_proportion_test,
    wilson_interval,
)

#: (successes, trials): small n, rates at and near 0 and 1, typical mail rates
COUNTS = [(0, 1), (1, 1), (0, 10), (1, 10), (3, 10), (10, 10), (21, 1000), (420, 1000)]
#: (x1, n1, x2, n2)
PAIRS = [
    (60, 1000, 40, 1000),
    (1, 10, 0, 12),
    (21, 1000, 3, 220),
    (450, 1000, 420, 1000),
    (5, 50, 5, 50),
    (0, 300, 2, 40),
]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# --- rates ---------------------------------------------------------------------------------


def test_the_quantile_is_the_normal_one() -> None:
    assert close(Z95, float(stats.norm.ppf(0.975)))


@pytest.mark.parametrize(("successes", "trials"), COUNTS)
def test_wilson_interval_matches_statsmodels_and_scipy(successes: int, trials: int) -> None:
    low, high = wilson_interval(successes, trials) or (math.nan, math.nan)
    ref_low, ref_high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    assert close(low, float(ref_low))
    assert close(high, float(ref_high))
    scipy_ci = stats.binomtest(successes, trials).proportion_ci(method="wilson")
    assert close(low, scipy_ci.low)
    assert close(high, scipy_ci.high)


def test_wilson_interval_by_hand() -> None:
    # z = 1.959964, z^2 = 3.841459; 1 + z^2/n = 1.3841459 for n = 10
    # 0 of 10: centre = (0 + z^2/20) / 1.3841459 = 0.1920729 / 1.3841459 = 0.1387664,
    # half = z * sqrt(0 + z^2/400) / 1.3841459 = the same, so [0, 0.2775328]
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775328), abs=1e-7)
    # 5 of 10: centre 0.5; half = 1.959964 * sqrt(0.025 + 0.0096036) / 1.3841459
    #        = 1.959964 * 0.1860204 / 1.3841459 = 0.2634069, so [0.2365931, 0.7634069]
    assert wilson_interval(5, 10) == pytest.approx((0.2365931, 0.7634069), abs=1e-7)


def test_a_rate_without_trials_is_none_not_an_error() -> None:
    assert wilson_interval(0, 0) is None
    assert proportion(0, 0) == Proportion(0, 0, None, None, None)
    with pytest.raises(ValueError, match="3 successes of 2 trials"):
        wilson_interval(3, 2)


@given(st.integers(1, 10**7).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_rate_and_stays_in_0_1(counts: tuple[int, int]) -> None:
    successes, trials = counts
    low, high = wilson_interval(successes, trials) or (math.nan, math.nan)
    assert 0.0 <= low <= successes / trials <= high <= 1.0


# --- revenue per exposure ------------------------------------------------------------------


@pytest.mark.parametrize(
    "revenues",
    [
        [0.0] * 95 + [20.0, 35.5, 12.0, 80.0, 42.25],
        [19.99, 25.0, 0.0, 0.0, 310.0, 0.0, 45.5],
        [10.0, 10.0, 10.0],
    ],
)
def test_revenue_per_exposure_matches_a_normal_interval_on_the_values(
    revenues: list[float],
) -> None:
    values = np.array(revenues)
    mean = mean_interval(float(values.sum()), float((values**2).sum()), len(values))
    sem = float(stats.sem(values))
    ref_low, ref_high = (
        stats.norm.interval(0.95, loc=values.mean(), scale=sem)
        if sem
        else (
            values.mean(),
            values.mean(),
        )
    )
    assert mean.value is not None and close(mean.value, float(values.mean()))
    assert mean.low == pytest.approx(max(0.0, float(ref_low)), rel=1e-9, abs=1e-9)
    assert mean.high == pytest.approx(float(ref_high), rel=1e-9)


def test_revenue_per_exposure_by_hand() -> None:
    # revenues 0, 0, 10, 20: sum 30, squares 500; mean 7.5;
    # variance (500 - 30^2/4) / 3 = 91.6667; se = sqrt(91.6667 / 4) = 4.787136;
    # 1.959964 * 4.787136 = 9.382613: [7.5 - 9.38 -> 0 (cut), 16.882613]
    assert mean_interval(30.0, 500.0, 4) == Mean(7.5, 0.0, pytest.approx(16.882613, abs=1e-6))


def test_revenue_per_exposure_without_enough_exposures() -> None:
    assert mean_interval(0.0, 0.0, 0) == Mean(None, None, None)
    assert mean_interval(12.0, 144.0, 1) == Mean(12.0, None, None)


# --- two proportions -----------------------------------------------------------------------


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), PAIRS)
def test_z_test_matches_statsmodels_and_chi_squared(x1: int, n1: int, x2: int, n2: int) -> None:
    z, p = two_proportion_test(x1, n1, x2, n2) or (math.nan, math.nan)
    ref_z, ref_p = proportions_ztest([x1, x2], [n1, n2])
    assert close(z, float(ref_z))
    assert close(p, float(ref_p))
    chi2, chi2_p, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    assert close(z * z, float(chi2))
    assert close(p, float(chi2_p))


def test_z_test_by_hand() -> None:
    # 60/1000 vs 40/1000: pooled 100/2000 = 0.05;
    # se = sqrt(0.05 * 0.95 * (1/1000 + 1/1000)) = sqrt(0.000095) = 0.00974679;
    # z = (0.06 - 0.04) / 0.00974679 = 2.051957; p = erfc(2.051957 / sqrt 2) = 0.040174
    z, p = two_proportion_test(60, 1000, 40, 1000) or (math.nan, math.nan)
    assert z == pytest.approx(2.051957, abs=1e-6)
    assert p == pytest.approx(0.040174, abs=1e-6)


def test_z_test_degenerate_cases() -> None:
    assert two_proportion_test(0, 0, 3, 10) is None
    assert two_proportion_test(3, 10, 0, 0) is None
    # nothing on either side (or everything): the difference is exactly 0
    assert two_proportion_test(0, 10, 0, 20) == (0.0, 1.0)
    assert two_proportion_test(10, 10, 20, 20) == (0.0, 1.0)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), PAIRS)
def test_difference_interval_matches_statsmodels_newcombe(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    low, high = difference_interval(x1, n1, x2, n2) or (math.nan, math.nan)
    ref_low, ref_high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert close(low, float(ref_low))
    assert close(high, float(ref_high))


def counts_of(n: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(0, n), st.just(n))


two_arms = st.tuples(
    st.integers(1, 10**6).flatmap(counts_of), st.integers(1, 10**6).flatmap(counts_of)
)


@given(two_arms)
def test_z_squared_is_pearsons_chi_squared(arms: tuple[tuple[int, int], tuple[int, int]]) -> None:
    (x1, n1), (x2, n2) = arms
    z, p = two_proportion_test(x1, n1, x2, n2) or (math.nan, math.nan)
    if x1 + x2 in (0, n1 + n2):  # an all-zero column: chi-squared is undefined
        assert (z, p) == (0.0, 1.0)
        return
    chi2, chi2_p, _, _ = stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    assert math.isclose(z * z, float(chi2), rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(p, float(chi2_p), rel_tol=1e-6, abs_tol=1e-12)


@given(two_arms)
def test_difference_interval_holds_the_difference(
    arms: tuple[tuple[int, int], tuple[int, int]],
) -> None:
    (x1, n1), (x2, n2) = arms
    low, high = difference_interval(x1, n1, x2, n2) or (math.nan, math.nan)
    assert -1.0 - 1e-12 <= low <= x1 / n1 - x2 / n2 <= high <= 1.0 + 1e-12


# --- multiple comparisons ------------------------------------------------------------------


def test_holm_by_hand() -> None:
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


@settings(max_examples=30)  # statsmodels takes about 25 ms a call
@given(st.lists(st.floats(0.0, 1.0), max_size=12))
def test_holm_matches_statsmodels(p_values: list[float]) -> None:
    adjusted = holm(p_values)
    if p_values:
        reference = multipletests(p_values, method="holm")[1]
        assert adjusted == pytest.approx(list(reference), rel=1e-9, abs=1e-12)
    assert all(p <= q <= 1.0 for p, q in zip(p_values, adjusted, strict=True))


# --- one experiment ------------------------------------------------------------------------

THREE_ARMS = {
    "a": ArmCounts(exposed=1000, opened=420, clicked=42, converted=21, revenue=800.0,
                   revenue_sq=40_000.0),
    "b": ArmCounts(exposed=1000, opened=450, clicked=61, converted=25, revenue=1000.0,
                   revenue_sq=52_000.0),
    "holdout": ArmCounts(exposed=220, converted=3, revenue=90.0, revenue_sq=3000.0),
}  # fmt: skip


def test_an_experiment_against_the_reference_computation() -> None:
    summary = summarise("cart", THREE_ARMS)
    assert [arm.arm for arm in summary.arms] == ["a", "b", "holdout"]
    a, b, holdout = summary.arms
    assert a.clicked is not None and a.clicked.rate == 0.042
    ref = proportion_confint(42, 1000, method="wilson")
    assert (a.clicked.low, a.clicked.high) == pytest.approx(ref, rel=1e-9)
    assert holdout.opened is None and holdout.clicked is None
    # lift: (25/1000 - 3/220) / (3/220) = (0.025 - 0.0136364) / 0.0136364 = 0.8333
    assert b.conversion_lift == pytest.approx(0.025 / (3 / 220) - 1)
    # revenue per exposure: 1.0 against 90/220 = 0.40909: lift 1.4444
    assert b.revenue_lift == pytest.approx(1.0 / (90 / 220) - 1)
    assert holdout.conversion_lift is None

    tests = [(c.metric, c.arm, c.against) for c in summary.comparisons]
    assert tests == [
        ("converted", "a", "holdout"),
        ("converted", "b", "holdout"),
        ("opened", "b", "a"),
        ("clicked", "b", "a"),
        ("converted", "b", "a"),
    ]
    raw = []
    for c in summary.comparisons:
        first, second = THREE_ARMS[c.arm], THREE_ARMS[c.against]
        counts = [getattr(first, c.metric), getattr(second, c.metric)]
        z, p = proportions_ztest(counts, [first.exposed, second.exposed])
        assert (c.z, c.p) == pytest.approx((float(z), float(p)), rel=1e-9)
        raw.append(float(p))
    adjusted = multipletests(raw, method="holm")[1]
    assert [c.p_adjusted for c in summary.comparisons] == pytest.approx(list(adjusted))
    assert not any(c.significant for c in summary.comparisons)


def test_verdict_names_the_winner_with_raw_and_adjusted_p() -> None:
    summary = summarise(
        "subject",
        {
            "a": ArmCounts(exposed=2000, opened=800, clicked=84, converted=30),
            "b": ArmCounts(exposed=2000, opened=810, clicked=130, converted=33),
        },
    )
    clicks = next(c for c in summary.comparisons if c.metric == "clicked")
    assert clicks.significant

    def p(first: int, second: int) -> str:
        return format_p(float(proportions_ztest([first, second], [2000, 2000])[1]))

    # three tests: the clicks' tiny p times 3, the others' (0.75, 0.70) times 2 or 1 -> 1
    assert summary.verdict == (
        f"no significant difference between a and b on opens yet (n = 4,000, p {p(810, 800)}, "
        "adjusted p = 1)",
        f"variant b beats a on clicks (6.5 % vs 4.2 %, p {p(130, 84)}, "
        f"adjusted p {format_p(3 * clicks.p)})",
        f"no significant difference between a and b on conversion yet (n = 4,000, "
        f"p {p(33, 30)}, adjusted p = 1)",
    )
    assert summary.notes == ("no holdout: the lift over not mailing cannot be measured",)


def test_verdict_on_the_lift_over_the_holdout() -> None:
    summary = summarise(
        "welcome",
        {
            "default": ArmCounts(exposed=9000, converted=540),
            "holdout": ArmCounts(exposed=1000, converted=40),
        },
    )
    # 6.0 % against 4.0 %: a lift of 50 %; a single test, so no adjustment
    (c,) = summary.comparisons
    assert summary.verdict == (
        f"the mail lifts conversion over the holdout by 50 % (6.0 % vs 4.0 %, p {format_p(c.p)})",
    )
    lower = summarise(
        "welcome",
        {"b": ArmCounts(exposed=900, converted=9), "holdout": ArmCounts(exposed=900, converted=30)},
    )
    assert lower.verdict[0].startswith("variant b lowers conversion below the holdout by 70 %")


def test_verdict_without_a_difference() -> None:
    summary = summarise(
        "welcome",
        {"default": ArmCounts(exposed=200, converted=8), "holdout": ArmCounts(40, converted=1)},
    )
    reference = float(proportions_ztest([8, 1], [200, 40])[1])
    assert summary.verdict == (
        "no significant difference in conversion between the mail and the holdout yet "
        f"(n = 240, p {format_p(reference)})",
    )
    assert summary.notes == (
        "default vs holdout on conversion: fewer than 5 successes expected in an arm, so "
        "the p-value (a normal approximation) is rough",
    )


def test_three_variants_compare_the_best_with_each_other() -> None:
    summary = summarise(
        "three",
        {
            name: ArmCounts(exposed=500, opened=opens)
            for name, opens in zip("abc", (100, 120, 90), strict=True)
        },
    )
    opens = [(c.arm, c.against) for c in summary.comparisons if c.metric == "opened"]
    assert opens == [("b", "a"), ("b", "c")]
    assert summary.verdict[0].startswith(
        "no significant difference between variants a, b, c on opens yet (n = 1,500, smallest p"
    )


@pytest.mark.parametrize(
    ("arms", "verdict", "notes"),
    [
        ({}, "no exposures yet", ()),
        (
            {"default": ArmCounts()},
            "no exposures yet",
            (
                "arm default has no exposures yet",
                "no holdout: the lift over not mailing cannot be measured",
            ),
        ),
        (
            {"default": ArmCounts(exposed=10, opened=2)},
            "nothing to compare yet: that takes a variant and the holdout, or two variants, "
            "with exposures",
            ("no holdout: the lift over not mailing cannot be measured",),
        ),
        (
            {"a": ArmCounts(exposed=5), "holdout": ArmCounts()},
            "nothing to compare yet: that takes a variant and the holdout, or two variants, "
            "with exposures",
            ("arm holdout has no exposures yet",),
        ),
    ],
)
def test_degenerate_experiments(
    arms: dict[str, ArmCounts], verdict: str, notes: tuple[str, ...]
) -> None:
    summary = summarise("e", arms)
    assert summary.verdict == (verdict,)
    assert summary.notes == notes
    assert summary.comparisons == ()


def test_holdout_without_conversions_has_no_lift() -> None:
    summary = summarise(
        "e", {"a": ArmCounts(exposed=50, converted=2), "holdout": ArmCounts(exposed=5)}
    )
    assert summary.arms[0].conversion_lift is None
    assert summary.arms[0].revenue_lift is None


def test_inconsistent_counts_are_capped_and_noted() -> None:
    summary = summarise("e", {"a": ArmCounts(exposed=3, opened=5)})
    assert summary.arms[0].opened == proportion(3, 3)
    assert summary.notes[0] == "arm a: opened (5) is not within 0..exposed (3); counted as 3"


arm_counts = st.builds(
    ArmCounts,
    exposed=st.integers(0, 10**6),
    opened=st.integers(0, 10**6),
    clicked=st.integers(0, 10**6),
    converted=st.integers(0, 10**6),
    revenue=st.floats(0, 1e7),
    revenue_sq=st.floats(0, 1e12),
)


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "default", "holdout"]), arm_counts))
def test_any_counts_give_a_summary_with_finite_numbers(arms: dict[str, ArmCounts]) -> None:
    summary = summarise("e", arms)
    assert summary.verdict
    for c in summary.comparisons:
        assert all(math.isfinite(v) for v in (c.z, c.p, c.p_adjusted, c.difference))
        assert 0.0 <= c.p <= c.p_adjusted <= 1.0


def test_p_values_read_plainly() -> None:
    assert format_p(0.0004) == "< 0.001"
    assert format_p(0.003) == "= 0.003"
    assert format_p(0.41) == "= 0.41"
    assert format_p(0.0496) == "= 0.0496"  # not "0.05", which would read as not below it
    assert format_p(1.0) == "= 1"

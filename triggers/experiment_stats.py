"""The statistics of one experiment: rates with intervals, lift, significance, a verdict.

Pure arithmetic on an experiment's :class:`~triggers.arms.ArmCounts` (standard library
only); ``nudge report`` prints what :func:`summarise` returns.

**Rates** (opens, clicks, conversions per exposure) carry a 95 % **Wilson score**
interval. The textbook Wald interval (p ± 1.96·√(p(1-p)/n)) covers far less than 95 %
for small n and for rates near 0, which is where mail rates live (a 2 % conversion
rate, a variant a day old), collapses to a width of zero at 0 successes and can leave
[0, 1]; the Wilson interval inverts the score test instead, keeps close to its nominal
coverage there and never leaves [0, 1].

**Revenue per exposure** is a mean over exposures with a normal-approximation interval
(mean ± 1.96·s/√n), its variance from ``revenue`` and ``revenue_sq``; revenue cannot be
negative, so the lower end is cut at 0.

**Significance** is the two-proportion z-test with the pooled standard error,
two-sided: each arm against the holdout on conversions, and between variants on opens,
clicks and conversions (the best variant of a metric against each other one; with two
variants, the one pair). For a 2x2 table this test *is* Pearson's chi-squared test
without continuity correction (z² = χ², the same p-value), but z keeps the direction,
which the verdict needs, and sits beside an interval for the difference of the two rates
(Newcombe's hybrid score interval, built from the two Wilson intervals, for the same
reasons as above). Yates' correction is left out: it is known to be conservative.

**Multiple comparisons.** One experiment reports several tests at once (3 variants give
7); at p < 0.05 each, the chance that at least one difference is a fluke grows with
their number. The p-values of one experiment are adjusted together with Holm's
step-down method (it controls the chance of any false positive like Bonferroni, and
rejects at least as much); both the raw and the adjusted p are reported and the verdict
calls a difference significant only when its adjusted p is below 0.05. The p-values
assume the counts are looked at once: stopping an experiment the first time a report
shows p < 0.05 makes a fluke far more likely than 5 %.

Degenerate input gives ``None`` rather than a division error: no exposures (no rate, no
interval), an arm without exposures (left out of the tests, with a note), a missing
holdout (no lift), one arm only (nothing to compare). When both arms have no successes
(or nothing else), the difference is exactly 0 and its test gives z = 0, p = 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from triggers.arms import DEFAULT_ARM, HOLDOUT, ArmCounts

__all__ = [
    "ALPHA",
    "RATE_METRICS",
    "Z95",
    "ArmSummary",
    "Comparison",
    "ExperimentSummary",
    "Mean",
    "Proportion",
    "difference_interval",
    "format_p",
    "holm",
    "mean_interval",
    "proportion",
    "summarise",
    "two_proportion_test",
    "wilson_interval",
]

#: the two-sided 95 % normal quantile (1.959963...)
Z95 = NormalDist().inv_cdf(0.975)
#: the adjusted p-value under which a difference is called significant
ALPHA = 0.05
#: the metrics that are rates of exposures
RATE_METRICS = ("opened", "clicked", "converted")
#: below this many expected successes (or failures) in a cell, the normal approximation
#: behind a z-test is rough
_FEW_EXPECTED = 5
_WORDS = {"opened": "opens", "clicked": "clicks", "converted": "conversion"}


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``trials``, the rate and its 95 % Wilson interval (``None``
    without trials)."""

    successes: int
    trials: int
    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Mean:
    """A mean per exposure and its 95 % interval (``None`` where undefined: no
    exposures for all three, a single exposure for the interval)."""

    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    exposed: int
    #: ``None`` for the holdout, which is not mailed
    opened: Proportion | None
    clicked: Proportion | None
    converted: Proportion
    revenue: float
    revenue_per_exposure: Mean
    #: relative change over the holdout ((arm - holdout) / holdout); ``None`` without a
    #: holdout, with a holdout rate of 0, and for the holdout itself
    conversion_lift: float | None
    revenue_lift: float | None


@dataclass(frozen=True)
class Comparison:
    """A two-sided pooled two-proportion z-test of ``arm`` against ``against``."""

    metric: str
    arm: str
    against: str
    arm_rate: float
    against_rate: float
    #: ``arm_rate - against_rate`` and its 95 % Newcombe interval
    difference: float
    difference_low: float
    difference_high: float
    #: the exposures of both arms
    n: int
    #: positive when ``arm`` does better
    z: float
    p: float
    #: Holm-adjusted over every comparison of the experiment
    p_adjusted: float
    significant: bool


@dataclass(frozen=True)
class ExperimentSummary:
    experiment: str
    #: the variants by name, then the holdout
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]
    #: plain-language conclusions, one a line
    verdict: tuple[str, ...]
    #: caveats: arms without exposures, inconsistent counts, small samples
    notes: tuple[str, ...]


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes / trials``; ``None`` without trials."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes of {trials} trials")
    p = successes / trials
    z2 = z * z
    scale = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / scale
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / scale
    # at 0 (or all) successes an end is exactly 0 (or 1); the arithmetic leaves a hair
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def proportion(successes: int, trials: int) -> Proportion:
    interval = wilson_interval(successes, trials)
    if interval is None:
        return Proportion(successes, trials, None, None, None)
    return Proportion(successes, trials, successes / trials, *interval)


def mean_interval(total: float, total_sq: float, n: int) -> Mean:
    """The mean of ``n`` values summing to ``total`` (their squares to ``total_sq``) with a
    95 % normal-approximation interval, cut at 0 below."""
    if n <= 0:
        return Mean(None, None, None)
    mean = total / n
    if n < 2:
        return Mean(mean, None, None)
    # the sample variance; rounding in the running sums can take it a hair below 0
    variance = max(0.0, (total_sq - total * total / n) / (n - 1))
    half = Z95 * math.sqrt(variance / n)
    return Mean(mean, max(0.0, mean - half), mean + half)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """(z, two-sided p) of the pooled two-proportion z-test of ``x1/n1`` against
    ``x2/n2``; ``None`` when an arm has no trials."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # no successes (or no failures) on either side: no difference at all
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def difference_interval(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """Newcombe's 95 % hybrid score interval of ``x1/n1 - x2/n2``."""
    first, second = wilson_interval(x1, n1), wilson_interval(x2, n2)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    difference = p1 - p2
    return (
        difference - math.hypot(p1 - first[0], second[1] - p2),
        difference + math.hypot(first[1] - p1, p2 - second[0]),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values``, in their order."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def summarise(experiment: str, arms: Mapping[str, ArmCounts]) -> ExperimentSummary:
    """Everything ``nudge report`` says about ``experiment`` from its ``arms``' counts."""
    notes: list[str] = []
    counts = {arm: _consistent(arm, arms[arm], notes) for arm in sorted(arms)}
    holdout = counts.get(HOLDOUT)
    variants = [arm for arm in counts if arm != HOLDOUT]
    summaries = [_arm_summary(arm, counts[arm], holdout) for arm in variants]
    if holdout is not None:
        summaries.append(_arm_summary(HOLDOUT, holdout, None))
    notes.extend(f"arm {arm} has no exposures yet" for arm, c in counts.items() if not c.exposed)
    if holdout is None and variants:
        notes.append("no holdout: the lift over not mailing cannot be measured")
    tests = _holdout_tests(counts, variants) + _variant_tests(counts, variants)
    adjusted = holm([test.p for test in tests])
    comparisons = tuple(
        replace(test, p_adjusted=q, significant=q < ALPHA)
        for test, q in zip(tests, adjusted, strict=True)
    )
    notes.extend(_small_sample_notes(counts, comparisons))
    return ExperimentSummary(
        experiment=experiment,
        arms=tuple(summaries),
        comparisons=comparisons,
        verdict=tuple(_verdict(counts, comparisons)),
        notes=tuple(notes),
    )


def _consistent(arm: str, counts: ArmCounts, notes: list[str]) -> ArmCounts:
    """``counts`` with every rate metric within [0, exposed] (a note for each fix)."""
    exposed = max(0, counts.exposed)
    fixed = {"exposed": exposed}
    for metric in RATE_METRICS:
        value = getattr(counts, metric)
        if not 0 <= value <= exposed:
            fixed[metric] = min(max(0, value), exposed)
            notes.append(
                f"arm {arm}: {metric} ({value}) is not within 0..exposed ({exposed}); "
                f"counted as {fixed[metric]}"
            )
    return replace(counts, **fixed)


def _arm_summary(arm: str, counts: ArmCounts, holdout: ArmCounts | None) -> ArmSummary:
    mailed = arm != HOLDOUT
    revenue = mean_interval(counts.revenue, counts.revenue_sq, counts.exposed)
    conversion = proportion(counts.converted, counts.exposed)
    conversion_lift = revenue_lift = None
    if holdout is not None and holdout.exposed:
        base = proportion(holdout.converted, holdout.exposed).rate
        conversion_lift = _lift(conversion.rate, base)
        revenue_lift = _lift(revenue.value, holdout.revenue / holdout.exposed)
    return ArmSummary(
        arm=arm,
        exposed=counts.exposed,
        opened=proportion(counts.opened, counts.exposed) if mailed else None,
        clicked=proportion(counts.clicked, counts.exposed) if mailed else None,
        converted=conversion,
        revenue=counts.revenue,
        revenue_per_exposure=revenue,
        conversion_lift=conversion_lift,
        revenue_lift=revenue_lift,
    )


def _lift(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return (value - base) / base


def _holdout_tests(counts: Mapping[str, ArmCounts], variants: list[str]) -> list[Comparison]:
    holdout = counts.get(HOLDOUT)
    if holdout is None or not holdout.exposed:
        return []
    return [
        _compare("converted", arm, counts[arm], HOLDOUT, holdout)
        for arm in variants
        if counts[arm].exposed
    ]


def _variant_tests(counts: Mapping[str, ArmCounts], variants: list[str]) -> list[Comparison]:
    """Per rate metric, the best variant against each other one (that has exposures)."""
    mailed = [arm for arm in variants if counts[arm].exposed]
    if len(mailed) < 2:
        return []
    tests: list[Comparison] = []
    for metric in RATE_METRICS:
        best = max(mailed, key=lambda arm: getattr(counts[arm], metric) / counts[arm].exposed)
        tests.extend(
            _compare(metric, best, counts[best], other, counts[other])
            for other in mailed
            if other != best
        )
    return tests


def _compare(
    metric: str, arm: str, counts: ArmCounts, against: str, other: ArmCounts
) -> Comparison:
    x1, n1 = getattr(counts, metric), counts.exposed
    x2, n2 = getattr(other, metric), other.exposed
    test, interval = two_proportion_test(x1, n1, x2, n2), difference_interval(x1, n1, x2, n2)
    if test is None or interval is None:  # the callers only compare arms with exposures
        raise ValueError(f"cannot compare {arm} with {against}: an arm has no exposures")
    return Comparison(
        metric=metric,
        arm=arm,
        against=against,
        arm_rate=x1 / n1,
        against_rate=x2 / n2,
        difference=x1 / n1 - x2 / n2,
        difference_low=interval[0],
        difference_high=interval[1],
        n=n1 + n2,
        z=test[0],
        p=test[1],
        p_adjusted=test[1],
        significant=False,
    )


def _small_sample_notes(
    counts: Mapping[str, ArmCounts], comparisons: Sequence[Comparison]
) -> list[str]:
    """A note per comparison with fewer than 5 expected successes or failures in a cell."""
    notes = []
    for c in comparisons:
        first, second = counts[c.arm], counts[c.against]
        pooled = (getattr(first, c.metric) + getattr(second, c.metric)) / c.n
        smallest = min(first.exposed, second.exposed) * min(pooled, 1 - pooled)
        if smallest < _FEW_EXPECTED:
            kind = "successes" if pooled <= 0.5 else "failures"
            notes.append(
                f"{c.arm} vs {c.against} on {_WORDS[c.metric]}: fewer than {_FEW_EXPECTED} "
                f"{kind} expected in an arm, so the p-value (a normal approximation) is rough"
            )
    return notes


# --- the verdict ---------------------------------------------------------------------------


def format_p(p: float) -> str:
    """``= 0.003`` or ``< 0.001`` (two significant digits; three next to 0.05)."""
    if p < 0.001:
        return "< 0.001"
    text = f"{p:.2g}"
    return f"= {p:.3g}" if text == "0.05" else f"= {text}"


def _verdict(counts: Mapping[str, ArmCounts], comparisons: Sequence[Comparison]) -> list[str]:
    if not any(c.exposed for c in counts.values()):
        return ["no exposures yet"]
    if not comparisons:
        return [
            "nothing to compare yet: that takes a variant and the holdout, or two variants, "
            "with exposures"
        ]
    m = len(comparisons)
    lines = [_holdout_line(c, m) for c in comparisons if c.against == HOLDOUT]
    for metric in RATE_METRICS:
        among = [c for c in comparisons if c.metric == metric and c.against != HOLDOUT]
        won = [c for c in among if c.significant]
        lines.extend(
            f"variant {c.arm} beats {c.against} on {_WORDS[metric]} ({_rates(c, m)})" for c in won
        )
        if among and not won:
            lines.append(_no_difference(among, m, counts))
    return lines


def _holdout_line(c: Comparison, m: int) -> str:
    subject = "the mail" if c.arm == DEFAULT_ARM else f"variant {c.arm}"
    if not c.significant:
        return (
            f"no significant difference in conversion between {subject} and the holdout "
            f"yet (n = {c.n:,}, {_p(c, m)})"
        )
    direction = "lifts conversion over" if c.difference > 0 else "lowers conversion below"
    by = f" by {_percent(abs(c.difference) / c.against_rate, 0)}" if c.against_rate else ""
    return f"{subject} {direction} the holdout{by} ({_rates(c, m)})"


def _no_difference(among: list[Comparison], m: int, counts: Mapping[str, ArmCounts]) -> str:
    arms = sorted({c.arm for c in among} | {c.against for c in among})
    n = sum(counts[arm].exposed for arm in arms)
    word = _WORDS[among[0].metric]
    if len(among) == 1:
        return (
            f"no significant difference between {arms[0]} and {arms[1]} on {word} yet "
            f"(n = {n:,}, {_p(among[0], m)})"
        )
    closest = min(among, key=lambda c: c.p_adjusted)
    return (
        f"no significant difference between variants {', '.join(arms)} on {word} yet "
        f"(n = {n:,}, smallest {_p(closest, m)})"
    )


def _rates(c: Comparison, m: int) -> str:
    return f"{_percent(c.arm_rate)} vs {_percent(c.against_rate)}, {_p(c, m)}"


def _p(c: Comparison, m: int) -> str:
    """The p-value, and the adjusted one when the experiment has several tests."""
    raw = f"p {format_p(c.p)}"
    return raw if m == 1 else f"{raw}, adjusted p {format_p(c.p_adjusted)}"


def _percent(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f} %"

"""``nudge report``: every experiment's arms, with intervals, tests and a verdict.

The counts come from the store's experiment counters (see :mod:`triggers.arms`), the
statistics from :mod:`triggers.experiment_stats`. ``--json`` prints one document::

    {"format": "nudge-report/1",
     "experiments": [
       {"experiment": str,
        "arms": [{"arm", "exposed",
                  "opened", "clicked", "converted":
                      {"successes", "trials", "rate", "low", "high"} (opened and clicked
                      are null for the holdout),
                  "revenue", "revenue_per_exposure": {"value", "low", "high"},
                  "conversion_lift", "revenue_lift"}],
        "comparisons": [{"metric", "arm", "against", "arm_rate", "against_rate",
                         "difference", "difference_low", "difference_high", "n",
                         "z", "p", "p_adjusted", "significant"}],
        "verdict": [str], "notes": [str]}]}

Rates, lifts and differences are fractions (0.042, not 4.2); a value that cannot be
computed (no exposures, no holdout) is null. New keys may be added; these keep their
meaning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from profiles import Keys, RedisProfileStore
from streams.redis_client import redis_client
from streams.settings import Settings
from triggers import RuleSet
from triggers.arms import COUNTER_PREFIX, arm_counts
from triggers.experiment_stats import (
    ArmSummary,
    Comparison,
    ExperimentSummary,
    Mean,
    Proportion,
    format_p,
    summarise,
)

__all__ = [
    "REPORT_FORMAT",
    "CounterSource",
    "build_report",
    "open_counters",
    "render_report",
    "report_document",
    "rule_experiments",
    "select_experiments",
]

#: names the shape of the ``--json`` document
REPORT_FORMAT = "nudge-report/1"
_METRIC_NAMES = {"opened": "opens", "clicked": "clicks", "converted": "conversions"}


class CounterSource(Protocol):
    """What the report reads: the store's counters whose fields start with ``prefix``."""

    async def counters(self, prefix: str = "") -> dict[str, float]: ...


@asynccontextmanager
async def open_counters(settings: Settings) -> AsyncIterator[CounterSource]:
    """The profile store of ``settings``, closed on exit."""
    client = redis_client(settings)
    try:
        store = RedisProfileStore(
            client,
            keys=Keys(settings.redis_prefix),
            cluster=settings.redis_cluster,
            pseudonyms=settings.pseudonyms,
        )
        yield store
    finally:
        await client.aclose()


async def build_report(
    settings: Settings,
    *,
    rule: str | None = None,
    experiment: str | None = None,
    named: Collection[str] = (),
) -> list[ExperimentSummary]:
    """The summaries of the experiments the options select (see :func:`select_experiments`)."""
    async with open_counters(settings) as source:
        counts = arm_counts(await source.counters(COUNTER_PREFIX))
    chosen = select_experiments(counts, rule=rule, experiment=experiment, named=named)
    return [summarise(name, counts[name]) for name in chosen]


def rule_experiments(rules: RuleSet, rule_id: str) -> set[str]:
    """The experiment ids the config's rule ``rule_id`` (or one of its steps) names with
    ``experiment:``."""
    named: set[str] = set()
    for rule in rules.config.rules:
        if rule.id != rule_id:
            continue
        for part in (rule, *getattr(rule, "steps", ())):
            name = getattr(part, "experiment", None)
            if isinstance(name, str):
                named.add(name)
    return named


def select_experiments(
    experiments: Iterable[str],
    *,
    rule: str | None = None,
    experiment: str | None = None,
    named: Collection[str] = (),
) -> list[str]:
    """The ``experiments`` both options keep, sorted: ``experiment`` keeps that one;
    ``rule`` keeps the rule's own (its id, ``<rule>#<step>`` for sequence steps) and
    those in ``named``. No option keeps every one."""

    def kept(name: str) -> bool:
        if experiment is not None and name != experiment:
            return False
        return rule is None or name == rule or name.startswith(f"{rule}#") or name in named

    return sorted(name for name in experiments if kept(name))


def report_document(summaries: Sequence[ExperimentSummary]) -> dict[str, Any]:
    """The ``--json`` document (its keys are in the module's docstring)."""
    return {"format": REPORT_FORMAT, "experiments": list(summaries)}


def render_report(summaries: Sequence[ExperimentSummary]) -> str:
    """A table of arms per experiment, then its comparisons, verdict and notes."""
    return "\n\n".join("\n".join(_experiment_lines(s)) for s in summaries)


def _experiment_lines(summary: ExperimentSummary) -> list[str]:
    lines = [f"experiment {summary.experiment}", ""]
    header = [
        "arm",
        "exposed",
        "opens",
        "clicks",
        "conversions",
        "revenue",
        "revenue/exposure",
        "conv. lift",
        "revenue lift",
    ]
    lines += _table([header, *(_arm_row(arm) for arm in summary.arms)], left={0})
    if summary.comparisons:
        count = len(summary.comparisons)
        adjusted = f"; p adjusted with Holm over {count} tests" if count > 1 else ""
        lines += ["", f"comparisons (two-sided pooled z-test{adjusted}; *: below 0.05)"]
        rows = [["", "arms", "difference [95 %]", "z", "p", "adjusted p"]]
        rows += [_comparison_row(c) for c in summary.comparisons]
        lines += ["  " + line for line in _table(rows, left={0, 1})]
    lines += ["", "verdict"]
    lines += [f"  {line}" for line in summary.verdict]
    lines += [f"  note: {note}" for note in summary.notes]
    return lines


def _arm_row(arm: ArmSummary) -> list[str]:
    return [
        arm.arm,
        f"{arm.exposed:,}",
        _rate(arm.opened),
        _rate(arm.clicked),
        _rate(arm.converted),
        f"{arm.revenue:,.2f}",
        _mean(arm.revenue_per_exposure),
        _lift(arm.conversion_lift),
        _lift(arm.revenue_lift),
    ]


def _comparison_row(c: Comparison) -> list[str]:
    points = f"{c.difference * 100:+.1f} pt"
    interval = f"[{c.difference_low * 100:+.1f}, {c.difference_high * 100:+.1f}]"
    significant = " *" if c.significant else ""
    return [
        _METRIC_NAMES[c.metric],
        f"{c.arm} vs {c.against}",
        f"{points} {interval}",
        f"{c.z:.2f}",
        format_p(c.p).removeprefix("= "),
        format_p(c.p_adjusted).removeprefix("= ") + significant,
    ]


def _rate(rate: Proportion | None) -> str:
    if rate is None or rate.rate is None or rate.low is None or rate.high is None:
        return "-"
    return f"{rate.rate * 100:.1f} % [{rate.low * 100:.1f}, {rate.high * 100:.1f}]"


def _mean(mean: Mean) -> str:
    if mean.value is None:
        return "-"
    if mean.low is None or mean.high is None:
        return f"{mean.value:,.2f}"
    return f"{mean.value:,.2f} [{mean.low:,.2f}, {mean.high:,.2f}]"


def _lift(lift: float | None) -> str:
    return "-" if lift is None else f"{lift * 100:+.0f} %"


def _table(rows: Sequence[Sequence[str]], *, left: Collection[int]) -> list[str]:
    """``rows`` in aligned columns: those in ``left`` flush left, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]

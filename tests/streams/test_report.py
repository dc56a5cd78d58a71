"""``nudge report``: the experiments' counters read from the store, per arm, as a table or
JSON, narrowed by rule or experiment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from profiles import StoreUnavailable
from streams import report
from streams.cli import cli
from streams.settings import Settings
from triggers.arms import COUNTER_PREFIX, ArmCounts, counter_field
from triggers.experiment_stats import summarise

REPO = Path(__file__).resolve().parents[2]


class FakeCounters:
    """A store with nothing but counters."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self.prefixes: list[str] = []

    async def counters(self, prefix: str = "") -> dict[str, float]:
        self.prefixes.append(prefix)
        return {k: v for k, v in self.values.items() if k.startswith(prefix)}


def fields(experiment: str, arm: str, counts: ArmCounts) -> dict[str, float]:
    return {counter_field(experiment, arm, m): float(v) for m, v in asdict(counts).items()}


CART = {
    "a": ArmCounts(exposed=4000, opened=1680, clicked=168, converted=84, revenue=6300.0,
                   revenue_sq=600_000.0),
    "b": ArmCounts(exposed=4000, opened=1720, clicked=244, converted=96, revenue=7100.0,
                   revenue_sq=700_000.0),
    "holdout": ArmCounts(exposed=900, converted=12, revenue=800.0, revenue_sq=70_000.0),
}  # fmt: skip
WELCOME = {
    "default": ArmCounts(exposed=200, opened=90, clicked=20, converted=8),
    "holdout": ArmCounts(exposed=40, converted=1),
}
STEPS = {"default": ArmCounts(exposed=30, opened=10)}


def store_values() -> dict[str, float]:
    values = {"unrelated\x1fcounter": 5.0}
    for experiment, arms in (
        ("cart_subjects", CART),
        ("welcome", WELCOME),
        ("welcome_series#0", STEPS),
        ("welcome_series#1", STEPS),
    ):
        for arm, counts in arms.items():
            values |= fields(experiment, arm, counts)
    return values


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, float]], FakeCounters]:
    """Installs a fake store with the given counters in place of Redis."""

    def install(values: dict[str, float]) -> FakeCounters:
        fake = FakeCounters(values)

        @asynccontextmanager
        async def open_fake(settings: Settings) -> AsyncIterator[FakeCounters]:
            yield fake

        monkeypatch.setattr(report, "open_counters", open_fake)
        return fake

    return install


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["report", *args])


def test_the_table_shows_every_arm_then_the_tests_and_the_verdict(
    store: Callable[[dict[str, float]], FakeCounters],
) -> None:
    fake = store(store_values())
    result = run()
    assert result.exit_code == 0, result.output
    assert fake.prefixes == [COUNTER_PREFIX]
    out = result.stdout
    experiments = [line for line in out.splitlines() if line.startswith("experiment ")]
    assert experiments == [
        "experiment cart_subjects",
        "experiment welcome",
        "experiment welcome_series#0",
        "experiment welcome_series#1",
    ]
    lines = out.splitlines()
    assert lines[2].split() == [
        "arm", "exposed", "opens", "clicks", "conversions", "revenue", "revenue/exposure",
        "conv.", "lift", "revenue", "lift",
    ]  # fmt: skip
    # 168/4000 = 4.2 %, Wilson [3.6, 4.9]; revenue per exposure 6300/4000 = 1.575
    assert lines[3].split()[:9] == [
        "a",
        "4,000",
        "42.0",
        "%",
        "[40.5,",
        "43.5]",
        "4.2",
        "%",
        "[3.6,",
    ]
    assert "1.57 [1.20, 1.95]" in lines[3]
    holdout = lines[5]
    assert holdout.split()[:4] == ["holdout", "900", "-", "-"]
    assert "comparisons (two-sided pooled z-test; p adjusted with Holm over 5 tests" in out
    assert "  variant b beats a on clicks (6.1 % vs 4.2 %, p < 0.001, adjusted p < 0.001)" in out
    assert "  note: default vs holdout on conversion: fewer than 5 successes expected" in out


def test_json_has_the_documented_keys_and_the_summaries_values(
    store: Callable[[dict[str, float]], FakeCounters],
) -> None:
    store(store_values())
    result = run("--json", "--experiment", "cart_subjects")
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert document["format"] == "nudge-report/1"
    (experiment,) = document["experiments"]
    assert list(experiment) == ["experiment", "arms", "comparisons", "verdict", "notes"]
    arm = experiment["arms"][0]
    assert list(arm) == [
        "arm", "exposed", "opened", "clicked", "converted", "revenue", "revenue_per_exposure",
        "conversion_lift", "revenue_lift",
    ]  # fmt: skip
    assert list(arm["clicked"]) == ["successes", "trials", "rate", "low", "high"]
    assert list(arm["revenue_per_exposure"]) == ["value", "low", "high"]
    assert list(experiment["comparisons"][0]) == [
        "metric", "arm", "against", "arm_rate", "against_rate", "difference",
        "difference_low", "difference_high", "n", "z", "p", "p_adjusted", "significant",
    ]  # fmt: skip
    expected = orjson.loads(orjson.dumps(summarise("cart_subjects", CART)))
    assert experiment == expected
    assert experiment["arms"][2]["opened"] is None  # the holdout is not mailed


def test_rule_selects_its_own_its_steps_and_the_ones_it_names(
    store: Callable[[dict[str, float]], FakeCounters],
) -> None:
    store(store_values())
    result = run("--rule", "welcome_series", "--config", str(REPO / "config"))
    assert result.exit_code == 0, result.output
    shown = [line for line in result.stdout.splitlines() if line.startswith("experiment ")]
    assert shown == ["experiment welcome_series#0", "experiment welcome_series#1"]

    rules = SimpleNamespace(
        config=SimpleNamespace(
            rules=[
                SimpleNamespace(id="cart_abandonment", experiment="cart_subjects"),
                SimpleNamespace(
                    id="series", steps=[SimpleNamespace(experiment="s1"), SimpleNamespace()]
                ),
            ]
        )
    )
    assert report.rule_experiments(rules, "cart_abandonment") == {"cart_subjects"}  # type: ignore[arg-type]
    assert report.rule_experiments(rules, "series") == {"s1"}  # type: ignore[arg-type]
    names = ["cart_abandonment", "cart_abandonment#1", "cart_abandonmentx", "cart_subjects", "w"]
    assert report.select_experiments(names, rule="cart_abandonment", named={"cart_subjects"}) == [
        "cart_abandonment",
        "cart_abandonment#1",
        "cart_subjects",
    ]
    assert report.select_experiments(
        names, rule="cart_abandonment", experiment="cart_abandonment#1"
    ) == ["cart_abandonment#1"]
    assert report.select_experiments(names) == sorted(names)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no experiments found"),
        (("--experiment", "nope"), "no experiments found for experiment 'nope'"),
        (("--rule", "welcome", "--experiment", "x"), "for rule 'welcome' and experiment 'x'"),
    ],
)
def test_no_experiments_is_said_plainly_and_is_not_an_error(
    store: Callable[[dict[str, float]], FakeCounters], args: tuple[str, ...], message: str
) -> None:
    store({"unrelated": 1.0})
    result = run(*args, "--config", str(REPO / "config"))
    assert result.exit_code == 0, result.output
    assert message in result.stdout
    as_json = run(*args, "--config", str(REPO / "config"), "--json")
    assert as_json.exit_code == 0, as_json.output
    assert orjson.loads(as_json.stdout) == {"format": "nudge-report/1", "experiments": []}
    assert message in as_json.stderr


def test_an_unreachable_store_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    @asynccontextmanager
    async def unreachable(settings: Settings) -> AsyncIterator[FakeCounters]:
        raise StoreUnavailable("redis at localhost:1 is not answering")
        yield FakeCounters({})  # pragma: no cover

    monkeypatch.setattr(report, "open_counters", unreachable)
    result = run()
    assert result.exit_code == 1
    assert "Error: redis at localhost:1 is not answering" in result.stderr


def test_an_experiment_without_exposures_reads_as_such(
    store: Callable[[dict[str, float]], FakeCounters],
) -> None:
    store({counter_field("fresh", "a", "exposed"): 0.0, counter_field("fresh", "b", "opened"): 0.0})
    result = run()
    assert result.exit_code == 0, result.output
    assert "  no exposures yet" in result.stdout
    assert "comparisons" not in result.stdout

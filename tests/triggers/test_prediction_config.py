"""The ``predictions:`` block of ``rules.yaml``, and the scores conditions and templates
may read (``profile.predicted.*``), as ``nudge validate`` sees them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import cli
from triggers import ConfigError, load_rules

SCORES = (
    "purchase_probability",
    "churn_probability",
    "expected_value",
    "cluster",
    "model_version",
    "scored_at",
)


def rules_reading(condition: str, *, kind: str = "segment") -> str:
    """A config whose segment (or on_event rule) has ``condition``."""
    if kind == "segment":
        return f"""\
version: 1
segments:
  watched: "{condition}"
rules:
  - id: entered
    kind: segment_entry
    segment: watched
    template: welcome
"""
    return f"""\
version: 1
rules:
  - id: visit
    kind: on_event
    events: [page_view]
    condition: "{condition}"
    template: welcome
"""


def issues(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules(config)
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize("score", SCORES)
def test_every_score_may_be_read(make_config: Callable[[str], Path], score: str) -> None:
    load_rules(make_config(rules_reading(f"profile.predicted.{score} and user.predicted.{score}")))


def test_an_unknown_score_is_refused(make_config: Callable[[str], Path]) -> None:
    found = issues(make_config(rules_reading("profile.predicted.churn_probabilty > 0.5")))
    assert len(found) == 1
    assert "unknown field 'profile.predicted.churn_probabilty'" in found[0]
    assert "did you mean 'churn_probability'?" in found[0]


def test_an_unknown_score_in_a_template_is_refused(make_config: Callable[[str], Path]) -> None:
    config = make_config(rules_reading("profile.predicted.cluster == 'x'"))
    body = config / "templates" / "welcome" / "body.html"
    body.write_text(body.read_text() + "\n{{ profile.predicted.clustr }}\n")
    found = issues(config)
    assert len(found) == 1 and "unknown field 'profile.predicted.clustr'" in found[0]


def test_refresh_defaults_to_a_day_and_takes_a_duration(
    make_config: Callable[[str], Path],
) -> None:
    text = rules_reading("profile.predicted.cluster == 'x'")
    assert load_rules(make_config(text)).config.predictions.refresh == timedelta(days=1)
    custom = text.replace("rules:", "predictions:\n  refresh: 6h\nrules:")
    assert load_rules(make_config(custom)).config.predictions.refresh == timedelta(hours=6)


def test_a_refresh_under_a_minute_is_refused(make_config: Callable[[str], Path]) -> None:
    text = rules_reading("profile.predicted.cluster == 'x'")
    config = make_config(text.replace("rules:", "predictions:\n  refresh: 30s\nrules:"))
    [found] = issues(config)
    assert found.startswith(f"{config}/rules.yaml:5: predictions.refresh: ")
    assert "at least 1m" in found


def test_a_bad_predictions_block_is_located(make_config: Callable[[str], Path]) -> None:
    text = rules_reading("profile.predicted.cluster == 'x'").replace(
        "rules:", "predictions:\n  refresh: soon\n  colour: red\nrules:"
    )
    config = make_config(text)
    assert issues(config) == [
        f"{config}/rules.yaml:5: predictions.refresh: invalid duration 'soon': "
        "use e.g. '90s', '15m', '1h30m', '30d'",
        f"{config}/rules.yaml:6: predictions.colour: unknown field",
    ]


def test_no_model_no_predictions(make_config: Callable[[str], Path]) -> None:
    rules = load_rules(make_config(rules_reading("profile.predicted.cluster == 'x'")))
    assert rules.model is None and rules.model_version is None


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        (rules_reading("profile.predicted.churn_probability > 0.7"), True),
        (rules_reading("profile['predicted']['cluster'] == 'x'"), True),
        (rules_reading("user.predicted.cluster == 'x' or profile.total_spent > 1"), True),
        (rules_reading("profile.total_spent > 100"), False),
        # an on_event condition is evaluated with the event, not after scoring
        (rules_reading("profile.predicted.churn_probability > 0.7", kind="on_event"), False),
    ],
)
def test_whether_the_probe_reads_the_scores(
    make_config: Callable[[str], Path], text: str, reads: bool
) -> None:
    assert load_rules(make_config(text)).reads_predictions is reads


def test_a_threshold_or_cancel_when_reading_the_scores_counts(
    make_config: Callable[[str], Path],
) -> None:
    threshold = """\
version: 1
rules:
  - id: churn_risk
    kind: threshold
    value: profile.predicted.churn_probability
    above: 0.7
    template: winback
"""
    assert load_rules(make_config(threshold)).reads_predictions
    cancel_when = """\
version: 1
rules:
  - id: cart_abandonment
    kind: absence
    start: [add_to_cart]
    cancel: [purchase]
    wait: 1h
    cancel_when:
      unlikely: "profile.predicted.purchase_probability < 0.01"
    template: cart_abandonment
"""
    assert load_rules(make_config(cancel_when)).reads_predictions


def with_model(text: str, model: str) -> str:
    return text.replace("rules:", f"predictions:\n  model: {model}\nrules:")


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """A copy of the trained model directory this test may break."""
    copy = tmp_path / "model-copy"
    shutil.copytree(tiny_model, copy)
    return copy


def a_cluster_of(model_dir: Path) -> str:
    manifest = orjson.loads((model_dir / "manifest.json").read_bytes())
    name: str = manifest["clusters"]["names"][0]
    return name


def test_the_model_named_is_loaded_relative_to_the_config_dir(
    make_config: Callable[[str], Path], tiny_model: Path
) -> None:
    reading = rules_reading(f"profile.predicted.cluster == '{a_cluster_of(tiny_model)}'")
    config = make_config(with_model(reading, "model"))
    shutil.copytree(tiny_model, config / "model")
    rules = load_rules(config)
    manifest = orjson.loads((tiny_model / "manifest.json").read_bytes())
    assert rules.model is not None and rules.model_version == manifest["version"]
    assert rules.model_dir == config / "model"


@pytest.mark.parametrize("damage", ["missing", "tampered", "features"])
def test_a_bad_model_dir_is_a_config_error_at_the_model_key(
    make_config: Callable[[str], Path], model_copy: Path, damage: str
) -> None:
    if damage == "missing":
        shutil.rmtree(model_copy)
    elif damage == "tampered":
        (model_copy / "churn_probability.skops").write_bytes(b"not the trained model")
    else:
        manifest = orjson.loads((model_copy / "manifest.json").read_bytes())
        manifest["features"] = [*manifest["features"][1:], manifest["features"][0]]
        (model_copy / "manifest.json").write_bytes(orjson.dumps(manifest))
    text = with_model(rules_reading("profile.predicted.cluster == 'x'"), str(model_copy))
    config = make_config(text)
    [found] = issues(config)
    assert found.startswith(f"{config}/rules.yaml:5: predictions.model: ")
    assert f"cannot use the model directory {str(model_copy)!r}" in found
    reason = {
        "missing": "does not exist",
        "tampered": "churn_probability.skops was changed after training",
        "features": "trained on the same features in another order",
    }
    assert reason[damage] in found


def test_validate_honours_the_model_dir_setting(
    make_config: Callable[[str], Path], tiny_model: Path, tmp_path: Path
) -> None:
    cluster = a_cluster_of(tiny_model)
    config = make_config(rules_reading(f"profile.predicted.cluster == '{cluster}'"))
    runner = CliRunner()
    good = runner.invoke(cli, ["validate", str(config)], env={"NUDGE_MODEL_DIR": str(tiny_model)})
    assert good.exit_code == 0, good.output
    nowhere = tmp_path / "nowhere"
    bad = runner.invoke(cli, ["validate", str(config)], env={"NUDGE_MODEL_DIR": str(nowhere)})
    assert bad.exit_code == 2
    assert f"error: {nowhere}: model: cannot use the model directory" in bad.output


@pytest.mark.parametrize(
    "condition",
    [
        "profile.predicted.cluster == 'no such cluster'",
        "'no such cluster' != user.predicted.cluster",
        "profile.predicted.cluster in ['{known}', 'no such cluster']",
    ],
)
def test_a_cluster_the_model_does_not_have_is_refused(
    make_config: Callable[[str], Path], tiny_model: Path, condition: str
) -> None:
    known = a_cluster_of(tiny_model)
    config = make_config(with_model(rules_reading(condition.format(known=known)), "model"))
    shutil.copytree(tiny_model, config / "model")
    [found] = issues(config)
    assert found.startswith(f"{config}/rules.yaml:3: segments.watched: ")
    assert "has no cluster 'no such cluster'" in found
    assert repr(known) in found  # the names it does have

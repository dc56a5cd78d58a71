"""``nudge model generate / train / score`` end to end, and their refusals."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from streams.cli import cli

REPO = Path(__file__).resolve().parent.parent.parent
CONFIG = str(REPO / "config")
AS_OF = "2026-07-20T00:00:00Z"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["model", *args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(events file, model directory) of a small synthetic shop."""
    directory = tmp_path_factory.mktemp("model-cli")
    events = directory / "events.jsonl.gz"
    generated = run(
        "generate", "--users", "400", "--days", "200", "--seed", "4", "--out", str(events)
    )
    assert generated.exit_code == 0, generated.output
    model = directory / "model"
    result = run(
        "train", "--events", str(events), "--as-of", AS_OF, "--config", CONFIG,
        "--cutoffs", "4", "--out", str(model),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "purchase_probability" in result.output  # the report table
    return events, model


def test_train_writes_the_model_directory_and_report(trained: tuple[Path, Path]) -> None:
    _, model = trained
    for name in ("manifest.json", "report.md", "report.html", "purchase_probability.skops"):
        assert (model / name).is_file(), name


def test_score_writes_one_row_per_user_with_exactly_the_score_columns(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    events, model = trained
    out = tmp_path / "scores.csv"
    result = run(
        "score", "--model", str(model), "--events", str(events), "--as-of", AS_OF,
        "--config", CONFIG, "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with out.open(newline="") as file:
        reader = csv.reader(file)
        header = next(reader)
        rows = list(reader)
    assert header == [
        "user_id",
        "purchase_probability",
        "churn_probability",
        "expected_value",
        "cluster",
    ]
    users = [r[0] for r in rows]
    assert len(users) == len(set(users)) > 100
    assert all(0 <= float(r[1]) <= 1 and 0 <= float(r[2]) <= 1 for r in rows)


def _refused(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output


def test_score_refuses_an_unknown_or_tampered_model(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    events, model = trained
    args = ["--events", str(events), "--as-of", AS_OF, "--out", str(tmp_path / "s.csv")]
    _refused(run("score", "--model", str(tmp_path / "none"), *args), "does not exist")
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in model.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "clusters.skops").write_bytes(b"not a model")
    _refused(run("score", "--model", str(copy), *args), "clusters.skops", "changed after training")


def test_train_refuses_a_bad_event_line_naming_it(tmp_path: Path) -> None:
    events = tmp_path / "bad.jsonl"
    events.write_text('{"event_id": "e1", "type": "page_view", "user_id": "u1"}\n')
    result = run("train", "--events", str(events), "--as-of", AS_OF, "--out", str(tmp_path / "m"))
    _refused(result, "bad.jsonl:1", "ts")


def test_train_refuses_an_unreadable_as_of(trained: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = trained
    result = run("train", "--events", str(events), "--as-of", "soon", "--out", str(tmp_path / "m"))
    _refused(result, "--as-of")


def test_train_refuses_a_history_too_short(tmp_path: Path) -> None:
    events = tmp_path / "short.jsonl"
    generated = run("generate", "--users", "30", "--days", "20", "--out", str(events))
    assert generated.exit_code == 0
    result = run(
        "train", "--events", str(events), "--as-of", "2026-01-21T00:00:00Z",
        "--config", CONFIG, "--out", str(tmp_path / "m"),
    )  # fmt: skip
    _refused(result)


def test_train_prints_the_late_event_count(trained: tuple[Path, Path], tmp_path: Path) -> None:
    events, _ = trained
    result = run(
        "train", "--events", str(events), "--as-of", AS_OF, "--config", CONFIG,
        "--cutoffs", "4", "--out", str(tmp_path / "m"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "late events (older than one read before them): 0" in result.output


def test_train_refuses_a_history_out_of_time_order(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    events, _ = trained
    lines = gzip.decompress(events.read_bytes()).splitlines(keepends=True)
    tail = len(lines) // 20  # the newest 5% first: everything after them is late
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_bytes(b"".join(lines[-tail:] + lines[:-tail]))
    result = run(
        "train", "--events", str(shuffled), "--as-of", AS_OF, "--config", CONFIG,
        "--cutoffs", "4", "--out", str(tmp_path / "m"),
    )  # fmt: skip
    _refused(result, "history is not in time order")
    assert not (tmp_path / "m").exists()


def test_train_refuses_an_out_that_is_a_file_before_training(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    events, _ = trained
    taken = tmp_path / "taken"
    taken.write_text("not a model")
    result = run("train", "--events", str(events), "--as-of", AS_OF, "--out", str(taken))
    _refused(result, "not a directory")
    assert "purchase_probability" not in result.output  # refused before training
    assert taken.read_text() == "not a model"


def test_train_over_an_existing_model_replaces_it(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    events, model = trained
    copy = Path(shutil.copytree(model, tmp_path / "model"))
    result = run(
        "train", "--events", str(events), "--as-of", AS_OF, "--config", CONFIG,
        "--cutoffs", "4", "--classifier", "logistic_regression", "--out", str(copy),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((copy / "manifest.json").read_bytes())
    assert manifest["purchase_probability"]["kind"] == "logistic_regression"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_score_refuses_an_out_it_cannot_write(trained: tuple[Path, Path], tmp_path: Path) -> None:
    events, model = trained
    args = ["score", "--model", str(model), "--events", str(events), "--as-of", AS_OF]
    _refused(run(*args, "--out", str(tmp_path / "none" / "x.csv")), "does not exist")
    _refused(run(*args, "--out", str(tmp_path)), "is a directory")

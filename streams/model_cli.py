"""``nudge model``: train prediction models on history, score users, generate a
synthetic history (README "Predictions").

Bad input (an unreadable or tampered model directory, an invalid event line, a history
too short or out of time order, an ``--out`` that cannot be written) ends with one clear
message and exit code 2, no traceback.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from profiles import ProfileError
from streams.errors import StreamsError
from streams.model_report import report
from streams.settings import Settings

__all__ = ["model"]

#: rows scored per vectorised call
_SCORE_BATCH = 5000


class _Refused(click.ClickException):
    """Bad input: exit code 2, like a usage error."""

    exit_code = 2


class _Moment(click.ParamType):
    """An ISO-8601 moment; a naive one is taken as UTC."""

    name = "ISO_TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-06-30T00:00:00Z)", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group()
def model() -> None:
    """Prediction models: train on history, score users, generate a synthetic history,
    report a live worker's drift."""


model.add_command(report)


def _scoring(config_dir: Path | None) -> Any:
    from triggers import ConfigError, load_rules

    directory = config_dir or Settings().config_dir
    try:
        return load_rules(directory, with_model=False).config.scoring
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        raise _Refused(f"{len(exc.issues)} error(s) in the config at {directory}") from exc


def _history(events: Path | None, from_topic: bool, skip_invalid: bool) -> Any:
    from profiles.predictions.history import EventFile
    from streams.event_history import TopicHistory

    if (events is None) == (not from_topic):
        raise _Refused("give exactly one of --events PATH and --from-topic")
    if events is None:
        return TopicHistory(Settings())
    if not events.is_file():
        raise _Refused(f"no events file at {events}")
    return EventFile(events, skip_invalid=skip_invalid)


def _model_out(out: Path) -> None:
    """Refuse, before training, an ``--out`` the model directory cannot replace."""
    if out.exists() and not out.is_dir():
        raise _Refused(f"--out {out} exists and is not a directory")
    if out.is_dir() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise _Refused(
            f"--out {out} is a directory that holds no model (no manifest.json); "
            "give a new, empty or model directory"
        )


def _file_out(out: Path) -> None:
    """Refuse an ``--out`` file that cannot be written, before any work."""
    if out.is_dir():
        raise _Refused(f"--out {out} is a directory")
    if not out.parent.is_dir():
        raise _Refused(f"--out {out}: directory {out.parent} does not exist")


@model.command()
@click.option("--events", type=click.Path(path_type=Path), help="JSON-lines history (.gz ok).")
@click.option("--from-topic", is_flag=True, help="Read the events topic from its beginning.")
@click.option("--as-of", required=True, type=_Moment(), help="Train as of this moment.")
@click.option("--horizon-days", default=30, show_default=True, type=click.IntRange(1, 365))
@click.option("--cutoffs", default=6, show_default=True, type=click.IntRange(3, 52))
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
@click.option("--skip-invalid", is_flag=True, help="Skip and count invalid lines.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--classifier",
    "classifiers",
    multiple=True,
    type=click.Choice(["logistic_regression", "gradient_boosting"]),
    help="A candidate probability model (repeat for several; default: both).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model directory.")
def train(
    events: Path | None,
    from_topic: bool,
    as_of: datetime,
    horizon_days: int,
    cutoffs: int,
    config_dir: Path | None,
    skip_invalid: bool,
    seed: int,
    classifiers: tuple[str, ...],
    out: Path,
) -> None:
    """Train every prediction on the history up to --as-of and write the model directory
    (model files, manifest.json, report.md/.html and plots)."""
    from profiles.predictions.fit import CLASSIFIERS
    from profiles.predictions.train import train as run_training

    _model_out(out)
    scoring = _scoring(config_dir)
    history = _history(events, from_topic, skip_invalid)
    try:
        result = run_training(
            history,
            as_of=as_of,
            scoring=scoring,
            out=out,
            horizon_days=horizon_days,
            cutoffs=cutoffs,
            seed=seed,
            classifiers=classifiers or CLASSIFIERS,
        )
    except (ProfileError, StreamsError) as exc:
        raise _Refused(str(exc)) from exc
    click.echo(result.report.table())
    click.echo(f"late events (older than one read before them): {result.examples.late_events}")
    if history.skipped:
        click.echo(f"skipped {history.skipped} invalid event(s)", err=True)
    click.echo(f"model {result.model.version} written to {out}")


@model.command()
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path))
@click.option("--events", required=True, type=click.Path(path_type=Path))
@click.option("--as-of", required=True, type=_Moment(), help="Score as of this moment.")
@click.option("--config", "config_dir", type=click.Path(path_type=Path), help="Rules directory.")
@click.option("--skip-invalid", is_flag=True, help="Skip and count invalid lines.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Scores CSV.")
def score(
    model_dir: Path,
    events: Path,
    as_of: datetime,
    config_dir: Path | None,
    skip_invalid: bool,
    out: Path,
) -> None:
    """Score every user of the history as of --as-of into a CSV:
    user_id,purchase_probability,churn_probability,expected_value,cluster."""
    from profiles.predictions import TARGETS
    from profiles.predictions.bundle import load_model
    from profiles.predictions.examples import build_examples

    _file_out(out)
    try:
        bundle = load_model(model_dir)
        scoring = _scoring(config_dir)
        history = _history(events, False, skip_invalid)
        rows = build_examples(
            history,
            as_of=as_of,
            horizon_days=bundle.manifest.horizon_days,
            cutoffs=0,
            scoring=scoring,
            reference_rows=0,
        ).current
    except ProfileError as exc:
        raise _Refused(str(exc)) from exc
    try:
        with out.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["user_id", *TARGETS, "cluster"])
            for start in range(0, len(rows.user_ids), _SCORE_BATCH):
                batch = rows.features[start : start + _SCORE_BATCH].tolist()
                users = rows.user_ids[start : start + _SCORE_BATCH]
                for user, s in zip(users, bundle.score(batch), strict=True):
                    writer.writerow([user, *(getattr(s, t) for t in TARGETS), s.cluster])
    except OSError as exc:
        raise _Refused(f"cannot write {out}: {exc}") from exc
    click.echo(f"scored {len(rows.user_ids)} users with model {bundle.version} into {out}")


@model.command()
@click.option("--users", default=10_000, show_default=True, type=click.IntRange(1))
@click.option("--days", default=365, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--start",
    default="2026-01-01T00:00:00Z",
    show_default=True,
    type=_Moment(),
    help="First day of the history.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="JSONL (.gz ok).")
def generate(users: int, days: int, seed: int, start: datetime, out: Path) -> None:
    """Write a synthetic shop history with planted behaviour groups (for trying
    `nudge model train`)."""
    from profiles.predictions.history import write_events
    from profiles.predictions.synthetic import SyntheticHistory

    history = SyntheticHistory(users=users, days=days, seed=seed, start=start)
    try:
        count = write_events(history.events(), out)
    except OSError as exc:
        raise _Refused(f"cannot write {out}: {exc}") from exc
    click.echo(f"wrote {count} events of {users} users to {out}")
    click.echo(
        f"train with: nudge model train --events {out} --as-of {_iso(history.end)} --out DIR"
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

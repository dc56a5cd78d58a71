"""Training and scoring cost of the prediction models.

What is measured
    A synthetic shop history of about ``--events`` events (default 1,000,000; ``nudge
    model generate``, users scaled to reach the count over ``--days`` 365) is written
    once; then ``nudge model train`` runs on it as a child process under
    ``/usr/bin/time -v``: wall time and peak resident memory (``Maximum resident set
    size``) of the whole command, reading the gzip file, replaying every event through
    the fold, fitting, reporting and saving. Last, the trained model scores batches of
    100 users (the live worker's batch size) in-process: microseconds per row, the
    median of ``--repeats`` batches.

Usage::

    .venv/bin/python bench/predict.py [--events 1000000] [--days 365] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import command_line, machine

__all__ = ["main"]

#: events per user per year of the generator (measured; only sizes the history)
EVENTS_PER_USER_YEAR = 60
NUDGE = Path(sys.executable).parent / "nudge"
START = datetime(2026, 1, 1, tzinfo=UTC)


def _timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of ``command`` under ``/usr/bin/time -v``."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return wall, int(peak.group(1)) / 1024 if peak else float("nan"), done.stdout


def _score_cost(model_dir: Path, events: Path, as_of: datetime, repeats: int) -> float:
    """Median microseconds per row of ``score`` on batches of 100 rows."""
    from profiles import ScoringConfig
    from profiles.predictions.bundle import load_model
    from profiles.predictions.examples import build_examples
    from profiles.predictions.history import EventFile

    model = load_model(model_dir)
    # the users of the last 20 days of history are plenty for batches to score
    recent = (e for e in EventFile(events) if e.ts > as_of - timedelta(days=20))
    rows = build_examples(
        recent, as_of=as_of, horizon_days=30, cutoffs=0, scoring=ScoringConfig(), reference_rows=0
    ).current.features
    batches = [rows[i : i + 100].tolist() for i in range(0, len(rows) - 99, 100)][:repeats]
    costs = []
    for batch in batches:
        started = time.perf_counter()
        model.score(batch)
        costs.append((time.perf_counter() - started) / len(batch) * 1e6)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="Keep the history and model here.")
    args = parser.parse_args()
    load = os.getloadavg()
    work = args.keep or Path(tempfile.mkdtemp(prefix="nudge-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.jsonl.gz"
    users = max(100, round(args.events / (EVENTS_PER_USER_YEAR * args.days / 365)))
    as_of = START + timedelta(days=args.days)
    try:
        generated = subprocess.run(
            [str(NUDGE), "model", "generate", "--users", str(users), "--days", str(args.days),
             "--out", str(events)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        print(generated.splitlines()[0])
        command = [
            str(NUDGE), "model", "train", "--events", str(events),
            "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%SZ"), "--out", str(work / "model"),
        ]  # fmt: skip
        wall, peak, _ = _timed(command)
        per_row = _score_cost(work / "model", events, as_of, args.repeats)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"train: {wall:.1f} s wall, peak RSS {peak:.0f} MiB")
    print(f"score: {per_row:.1f} µs per row in batches of 100")
    print(f"machine: {machine(load)}")
    print(f"timed: nudge {' '.join(command[1:])}")
    print(f"command: {command_line()}")


if __name__ == "__main__":
    main()

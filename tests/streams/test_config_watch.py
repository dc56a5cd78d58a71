"""What makes a worker reload: a change under the config dir, or a replaced model."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import generate_latest

from streams.metrics import Metrics
from streams.watch import ConfigWatch
from triggers import BatchResult
from triggers.scoring import Scored

RULES = "version: 1\npredictions:\n  model: {model}\nrules: []\n"


def manifest(directory: Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.json"
    path.write_text(text)
    stat = path.stat()
    # a replaced model differs in mtime even within one filesystem tick
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_a_replaced_model_outside_the_config_dir_is_a_change(tmp_path: Path) -> None:
    config, model = tmp_path / "config", tmp_path / "models" / "current"
    config.mkdir()
    (config / "rules.yaml").write_text(RULES.format(model="../models/current"))
    manifest(model, '{"version": "a"}')
    watch = ConfigWatch(config, None)
    assert not watch.changed()
    manifest(model, '{"version": "b"}')
    assert watch.changed()
    assert not watch.changed()


def test_the_directory_rules_yaml_names_now_is_followed(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "rules.yaml").write_text(RULES.format(model="../a"))
    manifest(tmp_path / "a", "{}")
    watch = ConfigWatch(config, None)
    (config / "rules.yaml").write_text(RULES.format(model="../bb"))
    assert watch.changed()
    # a model that appears (or is fixed) in the newly named directory is a change too
    manifest(tmp_path / "bb", "{}")
    assert watch.changed()
    manifest(tmp_path / "a", '{"v": 2}')  # no longer named
    assert not watch.changed()


def test_the_model_dir_setting_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "rules.yaml").write_text(RULES.format(model="../a"))
    watch = ConfigWatch(config, tmp_path / "override")
    manifest(tmp_path / "a", "{}")
    assert not watch.changed()
    manifest(tmp_path / "override", "{}")
    assert watch.changed()


def test_prediction_errors_are_counted() -> None:
    metrics = Metrics()
    metrics.record(BatchResult(scored=Scored(errors=2)))
    assert b"nudge_prediction_errors_total 2.0" in generate_latest(metrics.registry)

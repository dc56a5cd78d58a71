"""The model directory: what load_model refuses, and what the live side gets from it."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from profiles.predictions import FEATURES, TARGETS, ModelError
from profiles.predictions.bundle import MANIFEST, ModelBundle, load_model
from profiles.predictions.fit import base_pipeline, signed_log1p
from profiles.predictions.history import parse_events
from profiles.predictions.synthetic import SyntheticHistory
from profiles.predictions.train import train
from tests.profiles.conftest import SCORING, Planted


@pytest.fixture
def model_dir(planted: Planted, tmp_path: Path) -> Path:
    """A private copy of the planted model's directory, free to damage."""
    return Path(shutil.copytree(planted.result.directory, tmp_path / "model"))


def _edit_manifest(directory: Path, change: Callable[[dict[str, object]], None]) -> None:
    path = directory / MANIFEST
    manifest = orjson.loads(path.read_bytes())
    change(manifest)
    path.write_bytes(orjson.dumps(manifest))


def _refusal(directory: Path) -> str:
    with pytest.raises(ModelError) as caught:
        load_model(directory)
    return str(caught.value)


def test_a_saved_model_loads_back(model_dir: Path, planted: Planted) -> None:
    loaded = load_model(model_dir)
    assert loaded.version == planted.result.model.version
    assert loaded.features == FEATURES


def test_a_missing_directory_or_manifest_is_refused(model_dir: Path, tmp_path: Path) -> None:
    assert "does not exist" in _refusal(tmp_path / "nowhere")
    (model_dir / MANIFEST).unlink()
    assert f"no {MANIFEST}" in _refusal(model_dir)


def test_a_tampered_model_file_is_refused_before_loading(model_dir: Path) -> None:
    target = model_dir / "purchase_probability.skops"
    target.write_bytes(target.read_bytes() + b"\0")
    message = _refusal(model_dir)
    assert "purchase_probability.skops" in message
    assert "changed after training" in message


def test_a_model_for_other_features_is_refused(model_dir: Path) -> None:
    def rename(manifest: dict[str, object]) -> None:
        manifest["features"] = [*FEATURES[:-1], "lifetime_loyalty"]

    _edit_manifest(model_dir, rename)
    assert "trained on features this version does not compute: lifetime_loyalty" in _refusal(
        model_dir
    )


def test_a_manifest_of_another_format_is_refused(model_dir: Path) -> None:
    _edit_manifest(model_dir, lambda m: m.update(format=99))
    assert "format 99" in _refusal(model_dir)


def test_untrusted_types_are_refused_even_with_a_matching_hash(model_dir: Path) -> None:
    data = sio.dumps(FunctionTransformer(func=print))
    (model_dir / "clusters.skops").write_bytes(data)

    def rehash(manifest: dict[str, object]) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        files["clusters.skops"] = hashlib.sha256(data).hexdigest()

    _edit_manifest(model_dir, rehash)
    message = _refusal(model_dir)
    assert "untrusted types" in message
    assert "builtins.print" in message


def test_scores_are_one_per_row_in_range(planted: Planted) -> None:
    model = planted.result.model
    rows = planted.result.examples.current.features[:50].tolist()
    scores = model.score(rows)
    assert len(scores) == len(rows)
    for s in scores:
        assert 0.0 <= s.purchase_probability <= 1.0
        assert 0.0 <= s.churn_probability <= 1.0
        assert s.expected_value >= 0.0
        assert s.cluster in model.manifest.clusters.names
    assert model.score([]) == []
    # one vectorised call gives what scoring each row alone gives
    for row, together in zip(rows[:5], scores, strict=False):
        (alone,) = model.score([row])
        assert alone.cluster == together.cluster
        for target in TARGETS:
            assert getattr(alone, target) == pytest.approx(getattr(together, target))


def test_distributions_cover_every_feature_and_score(planted: Planted) -> None:
    distributions = planted.result.model.distributions()
    assert set(distributions) == {*FEATURES, *TARGETS}
    for d in distributions.values():
        assert d.edges[0] == -math.inf and d.edges[-1] == math.inf
        assert len(d.edges) == len(d.proportions) + 1
        assert sum(d.proportions) == pytest.approx(1.0)


def test_manifest_records_every_file_and_the_training(planted: Planted) -> None:
    manifest = planted.result.model.manifest
    directory = planted.result.directory
    for name, digest in manifest.files.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest
    assert sum(manifest.clusters.sizes) == len(planted.result.examples.current.user_ids)
    assert manifest.as_of == planted.history.end
    assert "purchase_probability" in manifest.metrics
    assert (directory / "report.md").is_file()


@pytest.fixture(scope="module")
def single_kind(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ModelBundle]:
    history = SyntheticHistory(users=400, days=200, seed=8)
    events = list(history.events())

    def trained(kind: str) -> ModelBundle:
        return train(
            parse_events(events),
            as_of=history.end,
            scoring=SCORING,
            out=tmp_path_factory.mktemp(kind),
            cutoffs=4,
            k_range=(3, 4),
            classifiers=(kind,),
        ).model

    return trained


def test_linear_reasons_add_up_to_the_log_odds(single_kind: Callable[[str], ModelBundle]) -> None:
    model = single_kind("logistic_regression")
    pipeline = base_pipeline(model.estimators.purchase_probability)
    assert pipeline is not None
    row = [float(i % 4) for i in range(len(FEATURES))]
    reasons = model.reasons(row, "purchase_probability", top=len(FEATURES))
    log_odds = pipeline.decision_function(signed_log1p(np.array([row])))[0]
    intercept = pipeline[-1].intercept_[0]
    assert sum(r.effect for r in reasons) == pytest.approx(log_odds - intercept)
    assert [abs(r.effect) for r in reasons] == sorted(
        (abs(r.effect) for r in reasons), reverse=True
    )
    assert "log-odds" in model.reason_method("purchase_probability")
    assert len(model.reasons(row, "purchase_probability")) == 3


def test_tree_reasons_are_the_change_from_the_training_median(
    single_kind: Callable[[str], ModelBundle],
) -> None:
    model = single_kind("gradient_boosting")
    row = [float(i % 4) for i in range(len(FEATURES))]
    (top, *_) = model.reasons(row, "churn_probability")
    i = FEATURES.index(top.feature)
    swapped = list(row)
    swapped[i] = model.manifest.medians[i]
    churn_of = {
        tuple(r): s.churn_probability
        for r, s in zip([row, swapped], model.score([row, swapped]), strict=True)
    }
    assert top.effect == pytest.approx(churn_of[tuple(row)] - churn_of[tuple(swapped)])
    assert top.value == row[i]
    assert "median" in model.reason_method("churn_probability")


def test_a_model_saved_with_another_scikit_learn_minor_is_refused(model_dir: Path) -> None:
    import sklearn

    _edit_manifest(
        model_dir, lambda m: m.update(libraries={**m["libraries"], "scikit-learn": "0.24.2"})
    )
    message = _refusal(model_dir)
    assert "scikit-learn 0.24.2" in message
    assert f"scikit-learn {sklearn.__version__}" in message


def test_the_manifest_records_the_library_versions(planted: Planted) -> None:
    import numpy
    import sklearn
    import skops

    assert planted.result.model.manifest.libraries == {
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
        "numpy": numpy.__version__,
    }


def test_saving_over_a_model_replaces_it_whole(model_dir: Path, planted: Planted) -> None:
    from profiles.predictions.bundle import save_model

    (model_dir / "stale.txt").write_text("from the previous model")
    saved = save_model(
        model_dir, planted.result.model, extra=lambda d: (d / "r.md").write_text("r")
    )
    assert load_model(model_dir).version == saved.version
    assert (model_dir / "r.md").is_file()
    assert not (model_dir / "stale.txt").exists()
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]  # nothing left over
    # readable by a worker running as another user, like any directory made under the umask
    umask = os.umask(0)
    os.umask(umask)
    assert model_dir.stat().st_mode & 0o055 == 0o055 & ~umask


def test_saving_refuses_to_replace_what_is_not_a_model(planted: Planted, tmp_path: Path) -> None:
    from profiles.predictions.bundle import save_model

    (tmp_path / "file").write_text("keep me")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    for target, needle in (
        (tmp_path / "file", "not a directory"),
        (tmp_path / "notes", "not a model"),
    ):
        with pytest.raises(ModelError, match=needle):
            save_model(target, planted.result.model)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "notes"]


def test_a_failing_save_leaves_the_previous_model(model_dir: Path, planted: Planted) -> None:
    from profiles.predictions.bundle import save_model

    before = load_model(model_dir).version

    def fail(directory: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(ModelError, match="disk full"):
        save_model(model_dir, planted.result.model, extra=fail)
    assert load_model(model_dir).version == before
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]

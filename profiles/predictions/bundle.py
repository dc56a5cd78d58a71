"""A model directory: the trained estimators (``skops`` files) and ``manifest.json``.

:func:`load_model` checks the manifest's format and features and the sha256 of every
model file *before* loading any of them, and loads with an explicit list of trusted
types (:data:`TRUSTED_TYPES`); anything else is refused with a :class:`ModelError`
saying which file and why. :class:`ModelBundle` is the :class:`~profiles.predictions.
model.Model` the live side scores with.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import skops.io as sio
from numpy.typing import NDArray
from pydantic import ValidationError

from profiles.predictions.clusters import cluster_columns
from profiles.predictions.features import FEATURES, FeatureRow
from profiles.predictions.fit import (
    base_pipeline,
    expected_order_value,
    signed_log1p,
    single_threaded,
)
from profiles.predictions.manifest import FORMAT, SKLEARN, Manifest, library_versions
from profiles.predictions.model import Distribution, ModelError, Reason, Scores, Target

__all__ = ["MANIFEST", "TRUSTED_TYPES", "Estimators", "ModelBundle", "load_model", "save_model"]

Floats = NDArray[np.float64]
MANIFEST = "manifest.json"
#: types beyond skops' defaults a model file may contain; any other type is refused
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
_LINEAR_METHOD = (
    "contribution to the log-odds of the logistic regression (before calibration): "
    "coefficient x the feature's standardised log1p value, against the training mean"
)
_MEDIAN_METHOD = (
    "change in the {target} when this one feature is set to its training median, "
    "the others kept (positive: the user's value raises it)"
)


@dataclass(frozen=True)
class Estimators:
    """The fitted estimators of a bundle (see :mod:`profiles.predictions.fit`)."""

    purchase_probability: Any
    churn_probability: Any
    clusters: Any
    #: the expected-value regressor, when that method was kept
    expected_value: Any | None


class ModelBundle:
    """A trained model: scores, reasons and training distributions.

    Churn is learnt on past buyers only (it is defined for them); a user who never
    bought still gets the churn model's score, an extrapolation to read as "likely to go
    quiet", not as a churn rate.
    """

    def __init__(self, manifest: Manifest, estimators: Estimators) -> None:
        self.manifest = manifest
        self.estimators = estimators
        self._medians = np.asarray(manifest.medians, dtype=np.float64)
        self._names = manifest.clusters.names

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.manifest.features)

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(self._names)

    def score(self, rows: Sequence[FeatureRow]) -> list[Scores]:
        x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
        if not len(x):
            return []
        with single_threaded():
            numbers = self._predict(x)
            clusters = self.estimators.clusters.predict(cluster_columns(x))
        return [
            Scores(
                purchase_probability=float(p),
                churn_probability=float(c),
                expected_value=float(v),
                cluster=self._names[int(k)],
            )
            for p, c, v, k in zip(*numbers, clusters, strict=True)
        ]

    def predict(self, x: NDArray[Any]) -> tuple[Floats, Floats, Floats]:
        """Purchase and churn probabilities and expected values of feature rows ``x``."""
        with single_threaded():
            return self._predict(x)

    def _predict(self, x: NDArray[Any]) -> tuple[Floats, Floats, Floats]:
        t = signed_log1p(x)
        purchase: Floats = self.estimators.purchase_probability.predict_proba(t)[:, 1]
        churn: Floats = self.estimators.churn_probability.predict_proba(t)[:, 1]
        return purchase, churn, self._value(x, t, purchase)

    def _value(self, x: NDArray[Any], t: Floats, purchase: Floats) -> Floats:
        spec = self.manifest.expected_value
        if self.estimators.expected_value is not None:
            value: Floats = self.estimators.expected_value.predict(t)
            return value
        return purchase * expected_order_value(
            x, order_value=spec.order_value, orders_per_buyer=spec.orders_per_buyer
        )

    def _target(self, x: NDArray[Any], target: Target) -> Floats:
        purchase, churn, value = self.predict(x)
        by_target = {
            "purchase_probability": purchase,
            "churn_probability": churn,
            "expected_value": value,
        }
        return by_target[target]

    def reasons(self, row: FeatureRow, target: Target, top: int = 3) -> list[Reason]:
        x = np.asarray(row, dtype=np.float64).reshape(1, len(FEATURES))
        linear = self._linear(target)
        if linear is not None:
            scaler, regression = linear[0], linear[-1]
            effects = regression.coef_[0] * scaler.transform(signed_log1p(x))[0]
        else:
            # one row per feature, that feature set to its training median
            swapped = np.repeat(x, len(FEATURES), axis=0)
            np.fill_diagonal(swapped, self._medians)
            both = self._target(np.vstack([x, swapped]), target)
            effects = both[0] - both[1:]
        order = np.argsort(-np.abs(effects), kind="stable")[:top]
        return [
            Reason(feature=FEATURES[i], value=float(x[0, i]), effect=float(effects[i]))
            for i in order
        ]

    def _linear(self, target: Target) -> Any | None:
        if target == "expected_value":
            return None
        return base_pipeline(getattr(self.estimators, target))

    def reason_method(self, target: Target) -> str:
        if self._linear(target) is not None:
            return _LINEAR_METHOD
        return _MEDIAN_METHOD.format(target=target.replace("_", " "))

    def distributions(self) -> dict[str, Distribution]:
        return {name: d.distribution() for name, d in self.manifest.distributions.items()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(
    directory: Path, bundle: ModelBundle, *, extra: Callable[[Path], object] | None = None
) -> ModelBundle:
    """Write ``bundle`` as model directory ``directory`` and return it as
    :func:`load_model` reads it back, versioned; ``extra`` writes further files (the
    report) into the new directory before it is moved into place.

    Atomic for a reader of ``directory`` (a worker watching it): everything is written
    into a temporary sibling directory, which is then renamed to ``directory``. An
    existing model directory (or an empty one) is replaced: renamed away, the new one
    renamed in, the old one removed. Anything else at ``directory`` is refused, as is a
    failure to write, with a :class:`ModelError`."""
    _check_target(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
        # mkdtemp makes it private (0700); the model is read by workers of other users
        staging.chmod(0o777 & ~_umask())
    except OSError as exc:
        raise ModelError(f"cannot write a model directory at {directory}: {exc}") from exc
    try:
        _write_files(staging, bundle)
        if extra is not None:
            extra(staging)
        load_model(staging)  # what is moved into place must read back
        _replace(staging, directory)
    except OSError as exc:
        raise ModelError(f"cannot write the model directory {directory}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_model(directory)


def _check_target(directory: Path) -> None:
    """Refuse to replace anything but a model directory or an empty directory."""
    if not directory.exists() and not directory.is_symlink():
        return
    if not directory.is_dir() or directory.is_symlink():
        raise ModelError(f"{directory} exists and is not a directory")
    if (directory / MANIFEST).is_file() or not any(directory.iterdir()):
        return
    raise ModelError(
        f"{directory} exists and is not a model directory (no {MANIFEST}); "
        "give a new or empty directory"
    )


def _replace(staging: Path, directory: Path) -> None:
    """Rename ``staging`` to ``directory``, moving an existing one away first."""
    if not directory.exists():
        staging.rename(directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    old.rmdir()  # only its unique name is wanted
    directory.rename(old)
    try:
        staging.rename(directory)
    except OSError:
        old.rename(directory)  # put the previous model back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_files(directory: Path, bundle: ModelBundle) -> None:
    m = bundle.manifest
    parts = {
        m.purchase_probability.file: bundle.estimators.purchase_probability,
        m.churn_probability.file: bundle.estimators.churn_probability,
        m.clusters.file: bundle.estimators.clusters,
    }
    if m.expected_value.file is not None:
        parts[m.expected_value.file] = bundle.estimators.expected_value
    files = {}
    for name, estimator in parts.items():
        data = sio.dumps(estimator)
        (directory / name).write_bytes(data)
        files[name] = _sha256(data)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    content = _sha256(orjson.dumps(sorted(files.items())) + trained_at.isoformat().encode())
    version = f"{trained_at:%Y%m%dT%H%M%SZ}-{content[:12]}"
    manifest = m.model_copy(
        update={
            "version": version,
            "trained_at": trained_at,
            "files": files,
            "libraries": library_versions(),
        }
    )
    (directory / MANIFEST).write_bytes(
        orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
    )


def load_model(directory: Path) -> ModelBundle:
    """Read a model directory, refusing anything not exactly as training wrote it."""
    manifest = _read_manifest(directory)
    _check_features(directory, manifest)
    _check_libraries(directory, manifest)
    blobs = {
        name: _checked_file(directory, name, digest) for name, digest in manifest.files.items()
    }
    expected = [
        manifest.purchase_probability.file,
        manifest.churn_probability.file,
        manifest.clusters.file,
        *([manifest.expected_value.file] if manifest.expected_value.file else []),
    ]
    missing = [name for name in expected if name not in blobs]
    if missing:
        raise ModelError(f"{directory / MANIFEST}: no sha256 recorded for {', '.join(missing)}")
    loaded = {name: _load(directory / name, blobs[name]) for name in expected}
    value_file = manifest.expected_value.file
    return ModelBundle(
        manifest,
        Estimators(
            purchase_probability=loaded[manifest.purchase_probability.file],
            churn_probability=loaded[manifest.churn_probability.file],
            clusters=loaded[manifest.clusters.file],
            expected_value=loaded[value_file] if value_file else None,
        ),
    )


def _read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ModelError(f"model directory {directory} does not exist")
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelError(f"{directory} is not a model directory: no {MANIFEST}") from exc
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ModelError(f"{path} cannot be read: {exc}") from exc
    found = raw.get("format") if isinstance(raw, dict) else None
    if found != FORMAT:
        raise ModelError(
            f"{path} has manifest format {found!r}; this version of nudge reads format "
            f"{FORMAT} (retrain the model with this version)"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"{path} is not a valid manifest: {exc}") from exc


def _check_features(directory: Path, manifest: Manifest) -> None:
    if tuple(manifest.features) == FEATURES:
        return
    unknown = [f for f in manifest.features if f not in FEATURES]
    absent = [f for f in FEATURES if f not in manifest.features]
    if unknown:
        problem = f"trained on features this version does not compute: {', '.join(unknown)}"
    elif absent:
        problem = f"trained without features this version computes: {', '.join(absent)}"
    else:
        problem = "trained on the same features in another order"
    raise ModelError(f"model in {directory}: {problem}; retrain it with this version")


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _check_libraries(directory: Path, manifest: Manifest) -> None:
    """A skops file restores scikit-learn's private estimator state, which changes
    between minor releases: loading it under another one may fail or, worse, score
    differently without a word."""
    saved = manifest.libraries.get(SKLEARN, "unknown")
    running = library_versions()[SKLEARN]
    if _major_minor(saved) != _major_minor(running):
        raise ModelError(
            f"model in {directory} was saved with scikit-learn {saved}; this installation "
            f"runs scikit-learn {running} (another minor release); retrain it here"
        )


def _checked_file(directory: Path, name: str, digest: str) -> bytes:
    path = directory / name
    if Path(name).name != name:
        raise ModelError(f"{directory / MANIFEST} names a file outside the directory: {name}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read: {exc}") from exc
    if _sha256(data) != digest:
        raise ModelError(
            f"model file {path} was changed after training (sha256 differs from the "
            "manifest); retrain or restore the directory"
        )
    return data


def _load(path: Path, data: bytes) -> Any:
    try:
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
        if untrusted:
            raise ModelError(f"model file {path} holds untrusted types: {', '.join(untrusted)}")
        return sio.loads(data, trusted=list(TRUSTED_TYPES))
    except ModelError:
        raise
    except Exception as exc:  # skops raises many kinds for a file it cannot read
        raise ModelError(f"model file {path} cannot be loaded: {exc}") from exc


def _umask() -> int:
    """The process's umask (read by setting it, then put back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

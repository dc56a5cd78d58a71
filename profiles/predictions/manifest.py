"""``manifest.json`` of a model directory: what was trained, on what, how it measured,
and the sha256 of every model file (checked before anything is loaded).

Distributions store their inner bin edges only: the outer edges are infinite (JSON has
no infinity). Bin ``i`` holds the values ``edges[i] <= x < edges[i + 1]`` (left-closed, as
:mod:`~profiles.predictions.drift` bins live rows).
"""

from __future__ import annotations

from datetime import datetime
from importlib import metadata
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from profiles.predictions.drift import distribution
from profiles.predictions.model import Distribution

__all__ = [
    "FORMAT",
    "SKLEARN",
    "ClassifierSpec",
    "ClusterSpec",
    "DistributionSpec",
    "Manifest",
    "ValueSpec",
    "distribution_of",
    "library_versions",
]

#: the manifest layout this version writes and reads (2: library versions recorded)
FORMAT = 2
#: the library whose release a model file is bound to (see ``bundle.load_model``)
SKLEARN = "scikit-learn"
_LIBRARIES = (SKLEARN, "skops", "numpy")


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries a model file depends on."""
    return {name: metadata.version(name) for name in _LIBRARIES}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassifierSpec(_Spec):
    file: str
    #: ``logistic_regression`` or ``gradient_boosting`` (both calibrated)
    kind: str


class ValueSpec(_Spec):
    method: Literal["regression", "probability_x_order_value"]
    #: the regressor's file (``regression`` only)
    file: str | None
    order_value: float
    orders_per_buyer: float


class ClusterSpec(_Spec):
    file: str
    features: list[str]
    names: list[str]
    sizes: list[int]


class DistributionSpec(_Spec):
    inner_edges: list[float]
    proportions: list[float]

    def distribution(self) -> Distribution:
        edges = (float("-inf"), *self.inner_edges, float("inf"))
        return Distribution(edges=edges, proportions=tuple(self.proportions))


def distribution_of(values: NDArray[Any]) -> DistributionSpec:
    """The training distribution of ``values`` as drift monitoring bins it (see
    :func:`profiles.predictions.drift.distribution`: quantile edges, left-closed bins, a
    value holding a tenth of the rows in a bin of its own)."""
    if np.asarray(values).size == 0:
        return DistributionSpec(inner_edges=[], proportions=[1.0])
    spec = distribution(values)
    return DistributionSpec(inner_edges=list(spec.edges[1:-1]), proportions=list(spec.proportions))


class Manifest(_Spec):
    format: int
    version: str
    trained_at: datetime
    as_of: datetime
    horizon_days: int
    #: the first event read and ``as_of``
    training_window: tuple[datetime | None, datetime]
    features: list[str]
    #: ``train``, ``calibration``, ``test`` -> cutoffs
    cutoffs: dict[str, list[datetime]]
    purchase_probability: ClassifierSpec
    churn_probability: ClassifierSpec
    expected_value: ValueSpec
    clusters: ClusterSpec
    #: each feature's training median (tree reasons substitute it)
    medians: list[float]
    #: every feature and numeric score on rows taken the way the worker scores: right
    #: after events of the last horizon before ``as_of`` (see ``examples``)
    distributions: dict[str, DistributionSpec]
    #: the training report's metrics
    metrics: dict[str, Any]
    #: model file name -> sha256
    files: dict[str, str]
    #: scikit-learn, skops and numpy versions the files were saved with
    libraries: dict[str, str]
    #: events older than an event read before them (see ``examples``)
    late_events: int

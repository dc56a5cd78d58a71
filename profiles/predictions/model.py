"""What the worker, ``simulate`` and ``explain`` need of a trained model: the
:class:`Model` protocol, its score and reason records, and :class:`ModelError`.

The real implementation is the model directory ``nudge model train`` writes (loaded by
``profiles.predictions.bundle.load_model``); tests may use any object that satisfies the
protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from profiles.errors import ProfileError
from profiles.predictions.features import FeatureRow

__all__ = [
    "SCORES",
    "TARGETS",
    "Distribution",
    "Model",
    "ModelError",
    "Reason",
    "Scores",
    "Target",
]

Target = Literal["purchase_probability", "churn_probability", "expected_value"]
#: the numeric targets, in the order of a scores CSV
TARGETS: tuple[Target, ...] = ("purchase_probability", "churn_probability", "expected_value")
#: every score a profile carries (``profile.predicted.<name>``)
SCORES: tuple[str, ...] = (*TARGETS, "cluster")


class ModelError(ProfileError):
    """A model directory cannot be used: missing, tampered with, unreadable, or made for
    features this version of nudge does not compute. The message says which file and why."""


@dataclass(frozen=True)
class Scores:
    """One user's scores."""

    purchase_probability: float
    churn_probability: float
    expected_value: float
    cluster: str


@dataclass(frozen=True)
class Reason:
    """Why a score is what it is: one feature, its value for the user, and its effect
    (in the units :meth:`Model.reason_method` names, e.g. log-odds against the average
    user for a linear model)."""

    feature: str
    value: float
    effect: float


@dataclass(frozen=True)
class Distribution:
    """A quantity's distribution in the training data: bin edges (``len(proportions) +
    1`` of them, the outer ones infinite) and the share of training rows in each bin.
    The population stability index compares live rows against it."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]


class Model(Protocol):
    """A trained model as the live side uses it."""

    @property
    def version(self) -> str:
        """Identifies the trained model (recorded on profiles and decisions)."""
        ...

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names it was trained on, in vector order (``FEATURES``)."""
        ...

    @property
    def clusters(self) -> tuple[str, ...]:
        """The names of its behavioural clusters (what ``Scores.cluster`` can be)."""
        ...

    def score(self, rows: Sequence[FeatureRow]) -> list[Scores]:
        """Scores for many users at once (one vectorised call), in order."""
        ...

    def reasons(self, row: FeatureRow, target: Target, top: int = 3) -> list[Reason]:
        """The ``top`` features that move ``target`` most for this user, strongest first."""
        ...

    def reason_method(self, target: Target) -> str:
        """How :meth:`reasons` is computed for ``target`` (shown beside the reasons)."""
        ...

    def distributions(self) -> dict[str, Distribution]:
        """Training distributions by name: every feature and every numeric score."""
        ...

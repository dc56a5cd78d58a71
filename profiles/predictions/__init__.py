"""Predictions on the live profile: one feature definition, models trained on history,
scored live (see README "Predictions")."""

from profiles.predictions.features import FEATURES, FeatureRow, feature_rows, feature_vector
from profiles.predictions.model import (
    SCORES,
    TARGETS,
    Distribution,
    Model,
    ModelError,
    Reason,
    Scores,
    Target,
)

__all__ = [
    "FEATURES",
    "SCORES",
    "TARGETS",
    "Distribution",
    "FeatureRow",
    "Model",
    "ModelError",
    "Reason",
    "Scores",
    "Target",
    "feature_rows",
    "feature_vector",
]

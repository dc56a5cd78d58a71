"""The model's scores on the live profile (``profile.predicted``): pure helpers.

The engine scores, after the fold of a batch, every user whose profile the batch
changed, in one vectorised :meth:`~profiles.predictions.Model.score` call over
:func:`~profiles.predictions.feature_rows` (the features training used), and writes the
scores before the profiles are saved. A re-check timer falling due re-scores its user
first (one call per claim of due timers), so scores follow time as well as events.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from profiles import Predicted, Profile, ScoringConfig
from profiles.predictions import TARGETS, FeatureRow, Model, ModelError, Scores, feature_rows

__all__ = ["first_from", "prediction_trigger", "rescore_at", "score_profiles", "used_model"]


def score_profiles(
    model: Model, profiles: Sequence[Profile], now: datetime, scoring: ScoringConfig
) -> tuple[list[FeatureRow], list[Scores]]:
    """Set ``profile.predicted`` of each of ``profiles`` to ``model``'s scores as of
    ``now``, in one call of the model; return the feature rows and scores (the worker's
    drift window watches them).

    Whatever the model raises propagates, and then no profile has changed; so does a
    :class:`ModelError` for an answer that is not one finite score set per profile.
    """
    if not profiles:
        return [], []
    rows = feature_rows(profiles, now, scoring)
    scores = model.score(rows)
    if len(scores) != len(profiles):
        raise ModelError(f"the model returned {len(scores)} scores for {len(profiles)} users")
    version = model.version
    predicted = []
    for s in scores:
        numbers = [float(getattr(s, target)) for target in TARGETS]
        if not all(math.isfinite(n) for n in numbers):
            raise ModelError(f"the model returned a score that is not a number: {s}")
        predicted.append(
            Predicted(
                purchase_probability=numbers[0],
                churn_probability=numbers[1],
                expected_value=numbers[2],
                cluster=str(s.cluster),
                model_version=version,
                scored_at=now,
            )
        )
    for profile, scored in zip(profiles, predicted, strict=True):
        profile.predicted = scored
    return rows, scores


def used_model(loaded: str | None, profile: Profile | None) -> str | None:
    """The model version a decision about ``profile`` records, given the ``loaded``
    model's: that of the scores the profile carries (what its conditions saw), or the
    loaded model's when it carries none yet; ``None`` without a loaded model."""
    if loaded is None:
        return None
    if profile is not None and profile.predicted is not None:
        return profile.predicted.model_version
    return loaded


def rescore_at(user_id: str, scored_at: datetime, refresh: timedelta) -> datetime:
    """When scores made at ``scored_at`` are stale: the first moment after it on the
    user's grid of one point every ``refresh``.

    That is at most ``refresh`` later, and the same moment for every scoring within one
    period, so re-scoring the user at each batch does not move their re-check timer (a
    timer write per user and batch otherwise). The grid is offset per user (a hash of the
    id, whole seconds), so users do not all fall due at once.
    """
    period = max(1, int(refresh.total_seconds()))
    offset = zlib.crc32(user_id.encode()) % period  # whole seconds: sweeps fire whole seconds
    at = math.floor(scored_at.timestamp())
    due = ((at - offset) // period + 1) * period + offset
    return datetime.fromtimestamp(due, tz=UTC)


def first_from(model: Model, profiles: Sequence[Profile]) -> set[str]:
    """The users among ``profiles`` whose next scores are their first from ``model``
    (unscored, or scored by another model version): their crossings do not count."""
    version = model.version
    return {
        p.user_id for p in profiles if p.predicted is None or p.predicted.model_version != version
    }


def prediction_trigger(
    user_id: str, predicted: Predicted, refresh: timedelta, *, last_sent: datetime | None = None
) -> dict[str, Any]:
    """The trigger event of a firing caused by new scores: the re-scoring period of the
    scores they replaced (its end on the user's grid, see :func:`rescore_at`), under the
    model that made them, and the rule's last send.

    All of it is committed state, so a redelivery names the same trigger (the same
    request id) however it is cut into batches and whenever it runs; a rule that fired
    and is entered again gets a new one.
    """
    due = rescore_at(user_id, predicted.scored_at, refresh)
    sent = "" if last_sent is None else f":{int(last_sent.timestamp() * 1000)}"
    event_id = f"predicted:{predicted.model_version}:{int(due.timestamp() * 1000)}{sent}"
    return {"event_id": event_id, "type": "predicted"}

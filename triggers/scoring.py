"""When the engine scores users, and what it does with new scores.

After the fold of a batch, every user the batch changed is scored in one call
(:func:`score_changed`); a re-check falling due re-scores its users before their rules
are evaluated (:func:`score_rechecked`). Scores are advisory: a model that fails is
logged and counted, the users keep the scores they had, and the batch goes on (its
events are not lost). The arithmetic of scores and re-scoring moments is
:mod:`triggers.predict`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from profiles import Lookups, Profile
from profiles.predictions import FeatureRow, Model, Scores
from triggers.fold import UserStep, rebaseline, rescored
from triggers.loader import RuleSet
from triggers.predict import first_from, score_profiles

__all__ = ["Scored", "score_changed", "score_rechecked"]

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """What scoring did: the model, the rows and scores it made, the calls that failed."""

    model: Model | None = None
    rows: list[FeatureRow] = field(default_factory=list)
    scores: list[Scores] = field(default_factory=list)
    errors: int = 0

    def __iadd__(self, other: Scored) -> Scored:
        self.model = other.model or self.model
        self.rows += other.rows
        self.scores += other.scores
        self.errors += other.errors
        return self


def score_changed(rules: RuleSet, steps: list[UserStep], now: datetime, lookups: Lookups) -> Scored:
    """Score every user the batch changed (one call), then, when rules read the scores,
    re-evaluate those users' segments and thresholds and fire what entered (a user's
    first scores from this model fire nothing: see :func:`~triggers.fold.rescored`).

    Rules evaluated during the fold (``on_event`` conditions, ...) saw the scores stored
    before the batch."""
    changed = [step for step in steps if step.applied and step.profile is not None]
    profiles = [step.profile for step in changed if step.profile is not None]
    fresh = first_from(rules.model, profiles) if rules.model else set()
    previous = [profile.predicted for profile in profiles]
    scored = _score(rules, profiles, now)
    if scored.model is not None and rules.reads_predictions:
        for step, profile, before in zip(changed, profiles, previous, strict=True):
            baseline = profile.user_id in fresh
            rescored(rules, step, now, lookups, before=before, baseline=baseline)
    return scored


def score_rechecked(rules: RuleSet, profiles: list[Profile], now: datetime) -> Scored:
    """Re-score users whose re-check is due, before their rules are evaluated; users
    scored for the first time by this model take their memberships as they are."""
    fresh = first_from(rules.model, profiles) if rules.model else set()
    scored = _score(rules, profiles, now)
    if scored.model is not None and rules.reads_predictions:
        for profile in profiles:
            if profile.user_id in fresh:
                rebaseline(rules, profile, now)
    return scored


def _score(rules: RuleSet, profiles: list[Profile], now: datetime) -> Scored:
    """``profiles`` scored as of ``now`` (``Scored.model`` is ``None`` if nothing was)."""
    model = rules.model
    if model is None or not profiles:
        return Scored()
    try:
        rows, scores = score_profiles(model, profiles, now, rules.config.scoring)
    except Exception:
        log.exception("scoring %d users failed; they keep their previous scores", len(profiles))
        return Scored(errors=1)
    return Scored(model, rows, scores)

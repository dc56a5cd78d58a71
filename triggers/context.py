"""What conditions and templates see of a user, and which segments and watched rules hold.

Some conditions change with time alone: ``within(profile.last_purchase_at, '90d')``
turns false 90 days after the purchase, ``days_since(x) > 30`` turns true 30 days after
``x``, and the engagement ``score`` decays. While the segments and thresholds are
evaluated, a :class:`Horizon` notes the earliest future moment at which any of these can
flip, so the engine can look again then (a re-check timer) instead of waiting for the
user's next event. When they read the model's scores (``profile.predicted``), the moment
the scores go stale (at most ``predictions.refresh`` after ``scored_at``, see
:func:`triggers.predict.rescore_at`) is noted too: the re-check
re-scores the user first (see :mod:`triggers.predict`). Only what is evaluated is
noted: a branch that an ``and`` skipped can only come into play after an evaluated part
changes, which is itself noted or needs an event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from profiles import Predicted, Profile
from profiles.features import decay_factor, strongest
from triggers.conditions import TimedNumber, helpers
from triggers.derived import Rfm, lifecycle
from triggers.loader import RuleSet
from triggers.predict import rescore_at
from triggers.rules import RulesConfig, SegmentEntryRule

__all__ = [
    "DecayingScore",
    "Horizon",
    "Memberships",
    "ProfileView",
    "context",
    "memberships",
]

#: a comparison flips just after the moment it reaches equality
_TICK = timedelta(milliseconds=1)


class Horizon:
    """The earliest moment after ``now`` at which a time-based condition may flip."""

    __slots__ = ("at", "now")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.at: datetime | None = None

    def note(self, moment: datetime) -> None:
        if moment > self.now and (self.at is None or moment < self.at):
            self.at = moment


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class DecayingScore(TimedNumber):
    """The engagement score decayed to now, noting when a comparison with a bound flips.

    The score only decays between events, so a comparison with a bound ``b`` flips at
    most once without an event: when ``score`` decays past ``b``. That moment is computed
    from the stored score and its reference time, so it does not drift event to event.
    """

    __slots__ = ("_half_life_days", "_horizon", "_raw", "_raw_at")
    _half_life_days: float
    _horizon: Horizon | None
    _raw: float
    _raw_at: datetime | None

    def __new__(
        cls,
        value: float,
        *,
        raw: float,
        raw_at: datetime | None,
        half_life_days: float,
        horizon: Horizon | None,
    ) -> DecayingScore:
        score = super().__new__(cls, value)
        score._raw, score._raw_at = raw, raw_at
        score._half_life_days, score._horizon = half_life_days, horizon
        return score

    def _crossing(self, other: Any) -> None:
        bound = _number(other)
        if self._horizon is None or self._raw_at is None or not bound:
            return
        if self._raw * bound > 0 and abs(float(self)) > abs(bound):
            days = self._half_life_days * math.log2(self._raw / bound)
            self._horizon.note(self._raw_at + timedelta(days=days) + _TICK)


class ProfileView:
    """A profile as conditions and templates see it: its attributes, read-only, uncopied,
    with ``score`` decayed to the moment of evaluation and the derived fields
    (``rfm``, ``lifecycle``, ``affinities``, ...) computed then, when first read; the
    model's scores (``predicted``) only while a model is loaded."""

    __slots__ = ("_config", "_horizon", "_now", "_predictions", "_profile", "score")

    def __init__(
        self,
        profile: Profile,
        score: float,
        *,
        now: datetime,
        config: RulesConfig,
        horizon: Horizon | None = None,
        predictions: bool = False,
    ) -> None:
        self._profile, self.score = profile, score
        self._now, self._config, self._horizon = now, config, horizon
        self._predictions = predictions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._profile, name)

    @property
    def predicted(self) -> Predicted | None:
        """The stored scores while a model is loaded; without one, scores a previous
        model left on the profile are not read (conditions on them are false)."""
        return self._profile.predicted if self._predictions else None

    @property
    def rfm(self) -> Rfm:
        days_since = helpers(self._now, self._horizon)["days_since"]
        return Rfm(self._profile, self._now, self._horizon, days_since)

    @property
    def lifecycle(self) -> str:
        """``new``, ``active``, ``at_risk``, ``lapsed`` or ``churned``."""
        return lifecycle(self._profile, self._now, self._config.lifecycle, self._horizon)

    @property
    def affinities(self) -> dict[str, float]:
        """Category -> affinity decayed to now, strongest first."""
        return self._decaying(self._profile.affinity)

    @property
    def brand_affinities(self) -> dict[str, float]:
        """Brand -> affinity decayed to now, strongest first."""
        return self._decaying(self._profile.brand_affinity)

    @property
    def favourite_category(self) -> str | None:
        """The strongest category (decay keeps the order: one reference time for all)."""
        return _strongest(self._profile.affinity)

    @property
    def favourite_brand(self) -> str | None:
        return _strongest(self._profile.brand_affinity)

    def _decaying(self, raw: dict[str, float]) -> dict[str, float]:
        """``raw`` decayed to now, each value noting when a comparison with it flips."""
        half_life = self._config.scoring.affinity_half_life_days
        at = self._profile.affinity_at
        factor = 1.0 if at is None else decay_factor(at, self._now, half_life)
        return {
            key: DecayingScore(
                value * factor,
                raw=value,
                raw_at=at,
                half_life_days=half_life,
                horizon=self._horizon,
            )
            for key, value in strongest(raw).items()
        }


def _strongest(values: dict[str, float]) -> str | None:
    return min(values, key=lambda key: (-values[key], key)) if values else None


def context(
    ruleset: RuleSet,
    profile: Profile,
    now: datetime,
    event: dict[str, Any] | None = None,
    *,
    horizon: Horizon | None = None,
) -> dict[str, Any]:
    """What conditions and templates see (``horizon`` collects time-based flips)."""
    scoring = ruleset.config.scoring
    score = DecayingScore(
        profile.score_now(now, scoring),
        raw=profile.score,
        raw_at=profile.score_at,
        half_life_days=scoring.half_life_days,
        horizon=horizon,
    )
    view = ProfileView(
        profile,
        score,
        now=now,
        config=ruleset.config,
        horizon=horizon,
        predictions=ruleset.model is not None,
    )
    return {
        "event": event or {},
        "profile": view,
        "user": view,
        "cart": profile.cart,
        "segments": profile.segments,
        "now": now,
        **helpers(now, horizon),
    }


@dataclass(frozen=True)
class Memberships:
    #: the configured segments the user is in
    segments: list[str]
    #: segment_entry and threshold rules whose condition holds
    watched: list[str]
    #: threshold rules that were evaluated (a crossing needs a previous value)
    observed: list[str]
    #: when a time-based segment or threshold may change without an event (or never)
    next_check: datetime | None
    #: the absence ``cancel_when`` conditions that hold, as ``<rule id>@<name>``
    cancels: frozenset[str] = frozenset()


def memberships(ruleset: RuleSet, profile: Profile, now: datetime) -> Memberships:
    """The segments the user is in, the segment_entry/threshold rules whose condition
    holds, and the ``cancel_when`` conditions that hold: one evaluation of the probe."""
    horizon = Horizon(now)
    if ruleset.model is not None and ruleset.reads_predictions:
        # scores depend on recency: re-score (and look again) once they are stale; an
        # unscored user (or one a failed re-score left stale) is tried at the next point
        refresh = ruleset.config.predictions.refresh
        scored = profile.predicted
        since = now if scored is None else max(scored.scored_at, now)
        horizon.note(rescore_at(profile.user_id, since, refresh))
    held = ruleset.probe(context(ruleset, profile, now, horizon=horizon))
    segments = [h.removeprefix("segment:") for h in held if h.startswith("segment:")]
    watched = [h.removeprefix("threshold:") for h in held if h.startswith("threshold:")]
    watched += [
        rule.id
        for rule in ruleset.watching
        if isinstance(rule, SegmentEntryRule) and rule.segment in segments
    ]
    cancels = frozenset(h.removeprefix("cancel:") for h in held if h.startswith("cancel:"))
    observed = ruleset.thresholds
    if ruleset.scored_thresholds and (profile.predicted is None or ruleset.model is None):
        # not scored yet: no value to cross from
        observed = [t for t in observed if t not in ruleset.scored_thresholds]
    return Memberships(segments, sorted(watched), list(observed), horizon.at, cancels)

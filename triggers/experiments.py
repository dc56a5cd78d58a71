"""Which arm of an experiment a user's mail belongs to.

A rule (or a sequence step) with ``variants`` or a ``holdout`` is an experiment. Each
send it would make is assigned an arm:

- **holdout** first: a user whose hash falls below ``holdout`` is kept from the mail;
- then a **variant**: by weight (``strategy: fixed``), or by Thompson sampling on the
  live counters (``strategy: thompson``).

Assignment is a pure function of (experiment id, user id) for ``fixed``, so it is the
same on every retry, replay, backfill and in ``nudge simulate``; two experiments hash
differently, so their assignments are independent. Holdout and variant use different
bytes of one SHA-256, so the variant split among treated users does not depend on the
holdout share.

**Thompson sampling.** Each variant's rate of the ``goal`` metric gets a Beta(1 +
successes, 1 + failures) posterior from the counters (``Lookups.counters``, refreshed
every few seconds on the worker); one draw per variant from a generator seeded by
(experiment, user, request id), the highest draw wins. Draws are reproducible for the
same counters, so ``simulate`` is; on the worker, a redelivered batch may see fresher
counters and pick another arm for the same request id: the mailer's idempotency keeps
the first delivery, and the counts record the second (a small bias, at most one batch's
redeliveries after a crash).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from triggers.arms import DEFAULT_ARM, HOLDOUT, ArmCounts
from triggers.rules import Experimental, SequenceRule, Variant

__all__ = ["Assignment", "ExperimentSpec", "assign", "experiment_of"]

_UNIT = float(2**64)


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment as a send sees it: its id and what it may assign."""

    id: str
    settings: Experimental


@dataclass(frozen=True)
class Assignment:
    experiment: str
    arm: str
    #: the variant sent (``None``: the rule has no variants); for the holdout, the one
    #: the user would have had by weight (the mail withheld is composed to check it
    #: could have been made)
    variant: Variant | None = None
    #: whether the rule or step has an experiment (variants or a holdout)
    experimental: bool = False

    @property
    def held_out(self) -> bool:
        return self.arm == HOLDOUT


def experiment_of(rule: object, step: int | None) -> ExperimentSpec:
    """The experiment a send of ``rule`` (at sequence ``step``) counts under.

    A rule or step without variants or holdout still counts its sends, under its own id
    (a step without its own experiment: the sequence's) and the arm ``default``.
    """
    rule_id = str(getattr(rule, "id", ""))
    if isinstance(rule, SequenceRule):
        if step is not None and step < len(rule.steps) and rule.steps[step].experimental:
            settings = rule.steps[step]
            return ExperimentSpec(settings.experiment or f"{rule_id}#{step}", settings)
        return ExperimentSpec(rule_id, Experimental())
    if isinstance(rule, Experimental):
        return ExperimentSpec(rule.experiment or rule_id, rule)
    return ExperimentSpec(rule_id, Experimental())


def _uniforms(experiment: str, user_id: str) -> tuple[float, float]:
    digest = hashlib.sha256(f"{experiment}\x1f{user_id}".encode()).digest()
    return (
        int.from_bytes(digest[:8], "big") / _UNIT,
        int.from_bytes(digest[8:16], "big") / _UNIT,
    )


def assign(
    spec: ExperimentSpec,
    user_id: str,
    request_id: str,
    arms: Mapping[str, ArmCounts] | None = None,
) -> Assignment:
    """The arm of ``user_id``'s send ``request_id`` in ``spec`` (see module doc).

    ``arms``: the experiment's live counts, for ``strategy: thompson``.
    """
    settings = spec.settings
    if not settings.experimental:
        return Assignment(spec.id, DEFAULT_ARM)
    held, pick = _uniforms(spec.id, user_id)
    weighted = _weighted(settings.variants, pick) if settings.variants else None
    if held < settings.holdout:
        return Assignment(spec.id, HOLDOUT, weighted, experimental=True)
    if weighted is None:
        return Assignment(spec.id, DEFAULT_ARM, experimental=True)
    if settings.strategy == "thompson":
        variant = _sampled(spec, user_id, request_id, arms or {})
    else:
        variant = weighted
    return Assignment(spec.id, variant.name, variant, experimental=True)


def _weighted(variants: list[Variant], u: float) -> Variant:
    total = sum(v.weight for v in variants)
    mark = u * total
    for variant in variants:
        mark -= variant.weight
        if mark < 0:
            return variant
    return variants[-1]


_SUCCESSES = {"open": "opened", "click": "clicked", "conversion": "converted"}


def _sampled(
    spec: ExperimentSpec, user_id: str, request_id: str, arms: Mapping[str, ArmCounts]
) -> Variant:
    """The variant with the highest draw from its Beta posterior on the goal metric."""
    seed = hashlib.sha256(f"{spec.id}\x1f{user_id}\x1f{request_id}".encode()).digest()
    draws = random.Random(int.from_bytes(seed[:8], "big"))
    metric = _SUCCESSES[spec.settings.goal]
    best, best_draw = spec.settings.variants[0], -1.0
    for variant in spec.settings.variants:
        counts = arms.get(variant.name, ArmCounts())
        successes = min(getattr(counts, metric), counts.exposed)
        draw = draws.betavariate(1 + successes, 1 + counts.exposed - successes)
        if draw > best_draw:
            best, best_draw = variant, draw
    return best

"""Which mail an open, a click or a purchase counts for (``profile.exposures``).

Every send, and every send an experiment's holdout withheld, is an :class:`Exposure` on
the profile: the message id, the experiment and arm it belongs to, and what followed.

- An ``email_open`` or ``email_click`` counts for the exposure whose ``message_id`` it
  carries, once per exposure: the first open (or click) counts, later ones do not; a
  click counts as an open too (clients that block images open without telling).
- A ``purchase`` counts **last-touch**: for the latest exposure at or before it, if it
  is at most the attribution window old. The exposure converts once; its revenue adds
  every attributed purchase's total. Holdout exposures are touches too, so a held-out
  user's purchase counts for the holdout arm, as the same purchase would have counted
  for the mail. Revenue is summed as the purchases' ``total``, whatever their currency:
  a shop selling in several currencies should send totals in one.

Each counted change is a :class:`Credit`; the engine writes them as store counters in
the same write as the profile (see :class:`profiles.ProfileWrite`), so a redelivered
event (a duplicate) never counts twice. An open of a message no longer among the
profile's :data:`MAX_EXPOSURES` latest exposures is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from profiles.events import Event

__all__ = ["MAX_EXPOSURES", "Credit", "Exposure", "attribute", "expose"]

#: exposures kept per profile (newest); older ones no longer collect opens or purchases
MAX_EXPOSURES = 20


class Exposure(BaseModel):
    """A send (or a withheld one) and what it has collected so far."""

    model_config = ConfigDict(extra="forbid")

    message_id: str
    experiment: str
    arm: str
    at: datetime
    opened: bool = False
    clicked: bool = False
    converted: bool = False
    revenue: float = 0.0


@dataclass(frozen=True)
class Credit:
    """One counter increment: ``amount`` of ``metric`` for ``arm`` of ``experiment``."""

    experiment: str
    arm: str
    metric: str
    amount: float = 1.0


def expose(exposures: list[Exposure], exposure: Exposure) -> tuple[list[Exposure], Credit | None]:
    """``exposures`` with ``exposure`` added (the oldest dropped past the bound), and the
    credit that counts it; a message already there (the same send again) counts once."""
    if any(e.message_id == exposure.message_id for e in exposures):
        return exposures, None
    credit = Credit(exposure.experiment, exposure.arm, "exposed")
    return [*exposures, exposure][-MAX_EXPOSURES:], credit


def attribute(exposures: list[Exposure], event: Event, window: timedelta) -> list[Credit]:
    """Count ``event`` for the exposure it belongs to, updating that exposure in place."""
    if event.type in ("email_open", "email_click"):
        message_id = event.properties.get("message_id")
        found = next((e for e in reversed(exposures) if e.message_id == message_id), None)
        return [] if found is None else _engaged(found, clicked=event.type == "email_click")
    if event.type == "purchase":
        found = _last_touch(exposures, event.ts, window)
        total = event.properties.get("total")
        return [] if found is None else _converted(found, float(total or 0.0))
    return []


def _engaged(exposure: Exposure, *, clicked: bool) -> list[Credit]:
    credits = []
    if not exposure.opened:
        exposure.opened = True
        credits.append(Credit(exposure.experiment, exposure.arm, "opened"))
    if clicked and not exposure.clicked:
        exposure.clicked = True
        credits.append(Credit(exposure.experiment, exposure.arm, "clicked"))
    return credits


def _last_touch(exposures: list[Exposure], at: datetime, window: timedelta) -> Exposure | None:
    touches = [e for e in exposures if e.at <= at]
    if not touches:
        return None
    latest = max(touches, key=lambda e: e.at)
    return latest if at - latest.at <= window else None


def _converted(exposure: Exposure, total: float) -> list[Credit]:
    experiment, arm = exposure.experiment, exposure.arm
    before = exposure.revenue
    exposure.revenue = before + total
    credits = [
        Credit(experiment, arm, "revenue", total),
        # (before + total)² - before², without squaring two large numbers
        Credit(experiment, arm, "revenue_sq", total * (2 * before + total)),
    ]
    if not exposure.converted:
        exposure.converted = True
        credits.insert(0, Credit(experiment, arm, "converted"))
    return credits

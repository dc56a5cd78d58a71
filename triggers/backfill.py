"""Schedule the timers that profiles imply but do not have yet.

Date and inactivity rules schedule a user's timer when one of their events arrives. A
rule added to a running system therefore reaches a user only at their next event; users
who never come back would never get their birthday mail. :func:`backfill` walks the
stored profiles and schedules what is missing. It is idempotent and safe beside running
workers: a profile is written with compare-and-set, and a user whose profile moved
meanwhile is counted as a conflict (their worker already saw the new event).

The same goes for a profile retention turned on (or shortened): each profile gets its
retention timer at its last event plus the retention (due already for profiles idle
longer: their worker deletes them at its next sweep). Turned off, the retention timers
left behind are cancelled (they would do nothing when due).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from profiles import Profile, ProfileStore, ProfileWrite, Timer, TimerOps, TimerStore, timer_id
from triggers.context import memberships
from triggers.firing import (
    RECHECK,
    RETENTION,
    date_timer,
    ms,
    recheck_timer,
    retention_due_ms,
    retention_timer,
)
from triggers.loader import RuleSet
from triggers.rules import DateRule, InactivityRule
from triggers.timeline import Timeline

__all__ = ["BackfillReport", "backfill"]


@dataclass
class BackfillReport:
    users: int = 0
    scheduled: int = 0
    #: retention timers left by a retention since turned off
    cancelled: int = 0
    #: profiles written before nudge recorded their partition: left to their next event
    no_partition: int = 0
    conflicts: int = 0


def _missing(
    ruleset: RuleSet, profile: Profile, partition: int, now: datetime, only: Collection[str]
) -> list[Timer]:
    trigger = {"event_id": f"backfill:{profile.user_id}", "type": "backfill"}
    missing = []
    for rule in ruleset.rules:
        if only and rule.id not in only:
            continue
        if timer_id(rule.id, profile.user_id, "") in profile.timers:
            continue
        if isinstance(rule, DateRule):
            timer = date_timer(ruleset, rule, profile, now, partition, trigger)
            if timer is not None:
                missing.append(timer)
        elif isinstance(rule, InactivityRule):
            due = max(profile.last_seen + rule.wait, now)
            missing.append(Timer(rule.id, profile.user_id, ms(due), partition, trigger))
    if not only and timer_id(RECHECK, profile.user_id) not in profile.timers:
        # profiles stored before re-checks existed: time-based segments need one too
        next_check = memberships(ruleset, profile, now).next_check
        if next_check is not None:
            missing.append(recheck_timer(profile.user_id, next_check, partition))
    if not only and ruleset.retention is not None:
        due_ms = retention_due_ms(profile.last_seen, ruleset.retention)
        if profile.timers.get(timer_id(RETENTION, profile.user_id)) != due_ms:
            missing.append(retention_timer(profile.user_id, due_ms, partition))
    return missing


def _left_behind(ruleset: RuleSet, profile: Profile) -> list[str]:
    """The timer ids of ``profile`` that nothing uses any more: its retention timer when
    retention is off."""
    tid = timer_id(RETENTION, profile.user_id)
    return [tid] if ruleset.retention is None and tid in profile.timers else []


async def backfill(
    ruleset: RuleSet,
    profiles: ProfileStore,
    timers: TimerStore,
    now: datetime,
    *,
    only: Collection[str] = (),
) -> BackfillReport:
    """Schedule the missing date, inactivity, re-check and retention timers of every
    stored profile (``only``: of these rules alone), and cancel the retention timers a
    retention turned off left behind."""
    report = BackfillReport()
    async for chunk in profiles.scan():
        snapshots = await profiles.load({user_id: [] for user_id in chunk})
        ops = TimerOps()
        left: list[str] = []  # the users whose retention timer is cancelled
        writes = []
        for user_id, snapshot in snapshots.items():
            profile = snapshot.profile
            if profile is None:
                continue
            report.users += 1
            if profile.partition is None:
                report.no_partition += 1
                continue
            missing = _missing(ruleset, profile, profile.partition, now, only)
            unused = [] if only else _left_behind(ruleset, profile)
            timeline = Timeline(profile, ops, [], now, ruleset.model_version)
            for timer in missing:
                timeline.schedule(timer, "backfill")
            for tid in unused:
                timeline.cancel(profile.partition, tid, "backfill")
                left.append(user_id)
            if missing or unused:
                writes.append(ProfileWrite(user_id, snapshot.version, profile))
        await timers.apply(ops)  # idempotent: a conflict below leaves a harmless timer
        conflicts = set(await profiles.save(writes))
        report.conflicts += len(conflicts)
        report.scheduled += sum(1 for t in ops.schedule.values() if t.user_id not in conflicts)
        report.cancelled += sum(1 for user_id in left if user_id not in conflicts)
    return report

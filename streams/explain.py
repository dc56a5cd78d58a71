"""``nudge explain USER``: what nudge knows about one user, and why it did what it did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from profiles import Keys, RedisProfileStore, RedisTimerStore
from streams.settings import Settings
from triggers import RuleSet
from triggers.evaluate import memberships

__all__ = ["explain_user", "render_explanation"]


async def explain_user(settings: Settings, rules: RuleSet, user_id: str) -> dict[str, Any] | None:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        keys = Keys(settings.redis_prefix)
        snapshot = await RedisProfileStore(client, keys=keys).snapshot(user_id)
        if snapshot.profile is None:
            return None
        timers = RedisTimerStore(client, keys=keys)
        known = snapshot.profile.partition
        partitions = [known] if known is not None else range(settings.topic_partitions)
        pending = []
        for partition in partitions:
            pending += [t for t in await timers.pending(partition) if t.user_id == user_id]
    finally:
        await client.aclose()
    profile = snapshot.profile
    now = datetime.now(UTC)
    data = profile.context()
    return {
        "user_id": user_id,
        "version": snapshot.version,
        "profile": {k: data[k] for k in data if k not in ("timers", "decisions", "sends")},
        "score_now": round(profile.score_now(now, rules.config.scoring), 2),
        "segments_now": memberships(rules, profile, now)[0],
        "pending_timers": [
            {
                "rule_id": t.rule_id,
                "key": t.key,
                "step": t.step,
                "deferred": t.deferred,
                "due": datetime.fromtimestamp(t.due_ms / 1000, tz=UTC).isoformat(),
                "partition": t.partition,
                "trigger_event_id": t.trigger_event_id,
            }
            for t in sorted(pending, key=lambda t: t.due_ms)
        ],
        "recent_sends": [s.model_dump(mode="json") for s in profile.sends[-10:]],
        "recent_decisions": profile.decisions,
    }


def _timer_line(t: dict[str, Any]) -> str:
    line = f"  {t['due']}  {t['rule_id']}"
    line += f" key={t['key']}" if t["key"] else ""
    line += f" step={t['step']}" if t["step"] is not None else ""
    return line + (" (deferred by quiet hours)" if t["deferred"] else "")


def _decision_line(d: dict[str, Any]) -> str:
    line = f"  {d['at']}  {d['rule_id']}: {d['outcome']} ({d['reason']})"
    return line + (f" {d['detail']}" if d["detail"] else "")


def render_explanation(report: dict[str, Any]) -> str:
    p = report["profile"]
    timers = [_timer_line(t) for t in report["pending_timers"]] or ["  none"]
    decisions = [_decision_line(d) for d in report["recent_decisions"]] or ["  none"]
    return "\n".join(
        [
            f"user {report['user_id']} (profile version {report['version']})",
            f"  email {p['email']}  consent {'yes' if p['email_consent'] else 'no'}  "
            f"timezone {p['timezone'] or '-'}  locale {p['locale'] or '-'}",
            f"  seen {p['first_seen']} .. {p['last_seen']}  events {p['counts']}",
            f"  cart {p['cart']['item_count']} item(s), {p['cart']['total']:.2f}  "
            f"purchases {p['purchase_count']} ({p['total_spent']:.2f})",
            f"  score now {report['score_now']}  affinity {p['affinity']}",
            f"  segments {', '.join(report['segments_now']) or '-'}",
            "pending timers:",
            *timers,
            "recent decisions (oldest first):",
            *decisions,
        ]
    )

"""``nudge explain USER``: what nudge knows about one user, and why it did what it did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from profiles import Keys, Profile, RedisProfileStore, RedisTimerStore, ScoringConfig, Timer
from profiles.predictions import TARGETS, Model, feature_vector
from streams.redis_client import redis_client
from streams.settings import Settings
from triggers import RuleSet
from triggers.context import memberships
from triggers.firing import RECHECK, RETENTION

__all__ = [
    "CONSENT_CHANGES_SHOWN",
    "NOT_SCORED",
    "explain_consent",
    "explain_predictions",
    "explain_user",
    "narrow_to_rule",
    "render_consent",
    "render_explanation",
    "render_predictions",
    "verdict",
]

#: what a profile without scores says
NOT_SCORED = "not scored yet (no model loaded, or no event since it was)"
#: the most recent consent changes the report shows (the profile keeps more)
CONSENT_CHANGES_SHOWN = 5
#: profile fields the report shows elsewhere, or not at all
_NOT_IN_PROFILE = ("timers", "decisions", "sends", "consent_log")


async def explain_user(settings: Settings, rules: RuleSet, user_id: str) -> dict[str, Any] | None:
    """The report of ``user_id``'s stored profile (``None`` when there is none); with a
    model in ``rules``, each score on the profile comes with its reasons."""
    client = redis_client(settings)
    try:
        keys = Keys(settings.redis_prefix)
        store = RedisProfileStore(
            client, keys=keys, cluster=settings.redis_cluster, pseudonyms=settings.pseudonyms
        )
        snapshot = await store.snapshot(user_id)
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
        "profile": {k: data[k] for k in data if k not in _NOT_IN_PROFILE},
        "consent": explain_consent(profile),
        "score_now": round(profile.score_now(now, rules.config.scoring), 2),
        "segments_now": memberships(rules, profile, now).segments,
        "pending_timers": [
            {
                "rule_id": t.rule_id,
                "key": t.key,
                "step": t.step,
                "deferred": _deferred_by(profile.decisions, t) if t.deferred else None,
                "due": datetime.fromtimestamp(t.due_ms / 1000, tz=UTC).isoformat(),
                "partition": t.partition,
                "trigger_event_id": t.trigger_event_id,
            }
            for t in sorted(pending, key=lambda t: t.due_ms)
        ],
        "recent_sends": [s.model_dump(mode="json") for s in profile.sends[-10:]],
        "recent_decisions": profile.decisions,
        "predictions": explain_predictions(profile, rules.config.scoring, model=rules.model),
    }


def explain_consent(profile: Profile) -> dict[str, Any]:
    """The user's consent now (global, and the subscriptions they left) and its latest
    changes, oldest first."""
    return {
        "email_consent": profile.email_consent,
        "unsubscribed": list(profile.unsubscribed),
        "changes": len(profile.consent_log),
        "recent_changes": [
            change.model_dump(mode="json")
            for change in profile.consent_log[-CONSENT_CHANGES_SHOWN:]
        ],
    }


def render_consent(consent: dict[str, Any]) -> list[str]:
    """The lines of :func:`explain_consent`'s report."""
    left = ", ".join(consent["unsubscribed"]) or "none"
    recent = consent["recent_changes"]
    lines = [
        f"consent: email {'yes' if consent['email_consent'] else 'no'}, subscriptions left: {left}",
        f"  last {len(recent)} of {consent['changes']} change(s), oldest first:"
        if recent
        else "  no change recorded",
    ]
    for change in recent:
        scope = change["category"] or "all marketing mail"
        verb = "granted" if change["granted"] else "revoked"
        lines.append(
            f"  {change['at']}  {scope}: {verb} (source {change['source']}, "
            f"event {change['event_id']})"
        )
    return lines


def explain_predictions(
    profile: Profile, scoring: ScoringConfig, *, model: Model | None = None
) -> dict[str, Any]:
    """``profile.predicted`` as plain data, each numeric score with ``model``'s top three
    reasons and how they are computed.

    The reasons are computed on the features as of ``scored_at``, the moment the score
    was computed, so they explain the number shown rather than a score the user would get
    now. A ``model`` of another version than the one that scored says so (``note``).
    """
    predicted = profile.predicted
    if predicted is None:
        return {"scored": False, "note": NOT_SCORED}
    report: dict[str, Any] = {
        "scored": True,
        "model_version": predicted.model_version,
        "scored_at": predicted.scored_at.isoformat(),
        "cluster": predicted.cluster,
        "scores": {t: {"value": getattr(predicted, t)} for t in TARGETS},
        "note": _model_note(predicted.model_version, model),
    }
    if model is not None:
        row = feature_vector(profile, predicted.scored_at, scoring)
        report["reasons_model_version"] = model.version
        for target in TARGETS:
            report["scores"][target]["method"] = model.reason_method(target)
            report["scores"][target]["reasons"] = [
                {"feature": r.feature, "value": r.value, "effect": r.effect}
                for r in model.reasons(row, target, top=3)
            ]
    return report


def _model_note(scored_by: str, model: Model | None) -> str | None:
    if model is None:
        return "no model loaded: reasons need the model that scored"
    if model.version != scored_by:
        return f"scored by model {scored_by}; reasons from the loaded model {model.version}"
    return None


def _deferred_by(decisions: list[dict[str, Any]], timer: Timer) -> str:
    """Why a deferred timer waits (``quiet_hours``, ``best_hour``): what the timer says;
    for one deferred before timers kept it, the reason of its rule's latest ``deferred``
    decision, or ``guard`` when that decision has left the log."""
    if timer.deferred_by:
        return timer.deferred_by
    for d in reversed(decisions):
        same = d["rule_id"] == timer.rule_id and d.get("step") == timer.step
        if same and d["outcome"] == "deferred":
            return str(d["reason"])
    return "guard"


def _deferral(timer: dict[str, Any]) -> str:
    reason = timer["deferred"]
    if not reason:
        return ""
    return " (deferred to the best hour)" if reason == "best_hour" else f" (deferred by {reason})"


def _clock(iso: str) -> str:
    """``2026-11-25 14:05 UTC`` for an ISO time."""
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _last_word(d: dict[str, Any]) -> str:
    outcome, reason, at = d["outcome"], d["reason"], _clock(d["at"])
    if outcome == "fired":
        return f"fired at {at} (request {d.get('request_id')})"
    detail = f" ({d['detail']})" if d.get("detail") else ""
    if outcome == "cancelled":
        return f"cancelled by {reason} at {at}{detail}"
    if outcome == "suppressed":
        return f"suppressed: {reason}{detail} at {at}"
    return f"{outcome} ({reason}) at {at}, no timer pending any more"


def verdict(report: dict[str, Any], rule_id: str) -> str:
    """One line: where ``rule_id`` stands for this user now, and why."""
    pending = [t for t in report["pending_timers"] if t["rule_id"] == rule_id]
    if pending:
        first = pending[0]
        line = f"pending, due {_clock(first['due'])}"
        line += _deferral(first)
        return line + (f", {len(pending)} instances" if len(pending) > 1 else "")
    decisions = [d for d in report["recent_decisions"] if d["rule_id"] == rule_id]
    if not decisions:
        return "no recent decision: the rule has not triggered for this user lately"
    return _last_word(decisions[-1])


def narrow_to_rule(report: dict[str, Any], rule_id: str) -> dict[str, Any]:
    """The report of one rule: its timers, sends and decisions, and the verdict."""
    return {
        **report,
        "rule_id": rule_id,
        "verdict": verdict(report, rule_id),
        "pending_timers": [t for t in report["pending_timers"] if t["rule_id"] == rule_id],
        "recent_sends": [s for s in report["recent_sends"] if s["rule_id"] == rule_id],
        "recent_decisions": [d for d in report["recent_decisions"] if d["rule_id"] == rule_id],
    }


def _timer_line(t: dict[str, Any]) -> str:
    if t["rule_id"] == RECHECK:
        return f"  {t['due']}  {RECHECK} (segments and thresholds that change with time)"
    if t["rule_id"] == RETENTION:
        return f"  {t['due']}  {RETENTION} (the profile expires unless an event comes first)"
    line = f"  {t['due']}  {t['rule_id']}"
    line += f" key={t['key']}" if t["key"] else ""
    line += f" step={t['step']}" if t["step"] is not None else ""
    return line + _deferral(t)


def _decision_line(d: dict[str, Any]) -> str:
    line = f"  {d['at']}  {d['rule_id']}: {d['outcome']} ({d['reason']})"
    line += f" key={d['key']}" if d.get("key") else ""
    line += f" due {d['due']}" if d.get("due") else ""
    line += f" step={d['step']}" if d.get("step") is not None else ""
    return line + (f" {d['detail']}" if d.get("detail") else "")


def _address(profile: dict[str, Any]) -> str:
    if profile.get("email_invalid") is not None:
        return f"invalid ({profile['email_invalid']!r}: not mailed)"
    if profile.get("undeliverable_at") is not None:
        return f"{profile['email']} (undeliverable: hard bounce {profile['undeliverable_at']})"
    return str(profile["email"] or "-")


def _score_lines(name: str, score: dict[str, Any]) -> list[str]:
    lines = [f"  {name} {score['value']:.2f}"]
    if "method" in score:
        lines.append(f"    reasons ({score['method']}):")
    for reason in score.get("reasons", []):
        lines.append(
            f"      {reason['feature']} = {reason['value']:g}  effect {reason['effect']:+.3f}"
        )
    return lines


def render_predictions(predictions: dict[str, Any]) -> list[str]:
    """The lines of :func:`explain_predictions`' report."""
    if not predictions["scored"]:
        return [f"predictions: {predictions['note']}"]
    lines = [
        f"predictions (model {predictions['model_version']}, "
        f"scored {_clock(predictions['scored_at'])}):"
    ]
    for name, score in predictions["scores"].items():
        lines += _score_lines(name, score)
    lines.append(f"  cluster {predictions['cluster']}")
    if predictions["note"]:
        lines.append(f"  ({predictions['note']})")
    return lines


def render_explanation(report: dict[str, Any]) -> str:
    p = report["profile"]
    timers = [_timer_line(t) for t in report["pending_timers"]] or ["  none"]
    decisions = [_decision_line(d) for d in report["recent_decisions"]] or ["  none"]
    head = [f"{report['rule_id']}: {report['verdict']}"] if "verdict" in report else []
    return "\n".join(
        [
            *head,
            f"user {report['user_id']} (profile version {report['version']})",
            f"  email {_address(p)}  consent {'yes' if p['email_consent'] else 'no'}  "
            f"timezone {p['timezone'] or '-'}  locale {p['locale'] or '-'}",
            f"  seen {p['first_seen']} .. {p['last_seen']}  events {p['counts']}",
            f"  cart {p['cart']['item_count']} item(s), {p['cart']['total']:.2f}  "
            f"purchases {p['purchase_count']} ({p['total_spent']:.2f})",
            f"  score now {report['score_now']}  affinity {p['affinity']}",
            f"  segments {', '.join(report['segments_now']) or '-'}",
            *(render_consent(report["consent"]) if "consent" in report else []),
            *(render_predictions(report["predictions"]) if "predictions" in report else []),
            "pending timers:",
            *timers,
            "recent decisions (oldest first):",
            *decisions,
        ]
    )

"""Guards, arbitration and rendering: from firings to decisions and send requests.

Every firing passes the guards in this order, and the first that objects decides:

1. the user still has a profile (``no_profile``);
2. the rule's (and sequence step's) condition holds (``condition_false``);
3. the profile has an email address (``no_email``);
4. that address is valid: not one a ``profile_update`` set and nudge rejected
   (``invalid_email``);
5. that address takes mail: no hard bounce refused it (``undeliverable``; transactional
   mail too, since a receipt bounces like an offer);
6. marketing mail needs email consent (``no_consent``);
7. marketing mail does not go to an address that was erased and has not been consented
   afresh since (``erased_address``, see :mod:`profiles.privacy`);
8. marketing mail of a rule with a ``subscription`` the user left is not sent
   (``unsubscribed_category``, the detail names it);
9. re-entry ``once``: the rule never sent to this user before (``already_sent``);
10. the rule's ``cooldown`` has passed since its last send (``cooldown``);
11. marketing mail stays under the frequency cap (``frequency_cap``);
12. marketing mail of a rule (or sequence step) with ``send_at: best_hour`` is
    **deferred** to the user's next best hour within ``max_delay`` (``best_hour``), see
    :func:`_best_hour`;
13. marketing mail due in quiet hours is **deferred** to their end (``quiet_hours``);
14. a rule (or step) with an experiment assigns an arm (see
    :mod:`triggers.experiments`): the ``holdout`` arm is not sent (``holdout``; the
    decision names the request it withheld) and leaves the moment to the others;
15. among the marketing firings left at the same moment, the highest priority sends (in
    its arm's variant) and the others are suppressed (``arbitration``).

A deferred firing comes back as a timer marked ``deferred`` and passes the guards again
when it falls due, but is not deferred to a best hour twice: it sends then (unless
another guard objects; quiet hours never let it out inside them).

A firing that passes renders its mail (:func:`triggers.compose.compose`): one whose
template requires data the user lacks is suppressed (``missing_data``, the detail names
the field), one that fails to render too (``render_error``), and one whose HTML and text
come to more than :data:`MAX_MAIL_BYTES` (a template looping over a huge order, say)
as well (``too_large``).

Every outcome becomes a :class:`Decision`; sends and decisions are recorded on the
profile so that caps, cooldowns and ``explain`` see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from profiles import (
    NO_LOOKUPS,
    Exposure,
    Lookups,
    Profile,
    SendRecord,
    TimerOps,
    expose,
    mask_address,
)
from render import MissingData, RenderError
from triggers.arms import arm_counts, counter_field
from triggers.compose import Composed, compose
from triggers.context import context
from triggers.contracts import Decision, SendRequest, request_id
from triggers.durations import format_duration
from triggers.experiments import Assignment, assign, experiment_of
from triggers.firing import Firing, date_timer, ms
from triggers.loader import RuleSet
from triggers.predict import used_model
from triggers.rules import DateRule, Rule, SequenceRule
from triggers.schedule import best_hour, quiet_until, user_zone
from triggers.timeline import Timeline
from triggers.tracking import track

#: the largest mail (its HTML and text, UTF-8) a send request may carry: far past what
#: mail clients show (Gmail clips at 102 KB), well under what the send-requests topic takes
MAX_MAIL_BYTES = 512 * 1024

__all__ = ["MAX_MAIL_BYTES", "Resolution", "resolve"]


@dataclass
class Resolution:
    decisions: list[Decision] = field(default_factory=list)
    sends: list[SendRequest] = field(default_factory=list)
    #: deferred sends and follow-up timers (next sequence step, next anniversary)
    ops: TimerOps = field(default_factory=TimerOps)
    #: the loaded prediction model's version (decisions record the one they used)
    model: str | None = None
    #: store counter increments (experiment exposures, see :mod:`triggers.arms`)
    counters: dict[str, float] = field(default_factory=dict)

    def timeline(self, profile: Profile | None, now: datetime) -> Timeline:
        return Timeline(profile, self.ops, self.decisions, now, self.model)


@dataclass(frozen=True)
class _Verdict:
    reason: str = ""
    detail: str = ""
    defer_until: datetime | None = None


def _guard(
    ruleset: RuleSet, firing: Firing, profile: Profile, now: datetime, lookups: Lookups
) -> _Verdict | None:
    """The first guard that objects (``None``: the firing is a candidate)."""
    rule = firing.rule
    ctx = context(ruleset, profile, now, firing.trigger_event)
    for key in (rule.id, f"{rule.id}#{firing.step}"):
        condition = ruleset.conditions.get(key)
        if condition is not None and not condition(ctx):
            return _Verdict("condition_false")
    unreachable = _unreachable(profile)
    if unreachable is not None:
        return unreachable
    marketing = rule.category == "marketing"
    refused = _consent(rule, profile) if marketing else None
    if refused is not None:
        return refused
    last = profile.fired.get(rule.id)
    if rule.reentry == "once" and last is not None and not isinstance(rule, SequenceRule):
        return _Verdict("already_sent", f"sent {last.isoformat()}")
    if rule.cooldown is not None and last is not None and now - last < rule.cooldown:
        return _Verdict("cooldown", f"last sent {last.isoformat()}")
    guards = ruleset.config.guards
    cap = guards.frequency_cap
    if marketing and cap is not None and profile.sends_since(now - cap.window) >= cap.max:
        window = format_duration(cap.window)
        return _Verdict("frequency_cap", f"{cap.max} marketing sends within {window}")
    later = _best_hour(ruleset, firing, profile, now, lookups) if marketing else None
    if later is not None:
        return later
    if marketing and rule.quiet_hours and guards.quiet_hours is not None:
        until = quiet_until(now, user_zone(profile, guards), guards.quiet_hours)
        if until is not None:
            return _Verdict("quiet_hours", f"deferred to {until.isoformat()}", until)
    return None


def _unreachable(profile: Profile) -> _Verdict | None:
    """No address to send to: none given (``no_email``), one nudge rejected
    (``invalid_email``; decisions carry no address: the rejected value shows masked), or
    one a hard bounce refused (``undeliverable``)."""
    if profile.email_invalid is not None:
        rejected = mask_address(profile.email_invalid)
        return _Verdict("invalid_email", f"not an address: {rejected!r}")
    if not profile.email:
        return _Verdict("no_email")
    if profile.undeliverable_at is not None:
        bounced = profile.undeliverable_at.isoformat()
        return _Verdict("undeliverable", f"hard bounce {bounced}; no new address since")
    return None


def _consent(rule: Rule, profile: Profile) -> _Verdict | None:
    """The guards of marketing mail on what the user agreed to, in order."""
    if not profile.email_consent:
        return _Verdict("no_consent")
    if profile.address_erased_at is not None:
        erased = profile.address_erased_at.isoformat()
        return _Verdict("erased_address", f"erased {erased}; no fresh consent since")
    left = rule.subscription
    if left is not None and left in profile.unsubscribed:
        return _Verdict("unsubscribed_category", f"unsubscribed from {left!r}")
    return None


def _best_hour(
    ruleset: RuleSet, firing: Firing, profile: Profile, now: datetime, lookups: Lookups
) -> _Verdict | None:
    """Defer a ``send_at: best_hour`` send to the user's next best hour, if not in it now.

    The user's own histogram decides when it holds any weight, else the population's
    (``lookups.send_hours``); with neither, or no weighted hour in reach, the mail goes
    out now (and the quiet-hours guard may still hold it). A firing already deferred
    is not deferred again.
    """
    max_delay = firing.rule.best_hour_delay(firing.step)
    if max_delay is None or firing.deferred:
        return None
    guards = ruleset.config.guards
    zone = user_zone(profile, guards)
    half_life = ruleset.config.scoring.send_hours.half_life_days
    own = profile.open_hours.decayed(now, half_life) if profile.open_hours else ()
    source, weights = ("user", own) if any(own) else ("population", lookups.send_hours)
    quiet = guards.quiet_hours if firing.rule.quiet_hours else None
    at = best_hour(now, zone, weights, max_delay, quiet)
    if at is None or at <= now:
        return None
    local = at.astimezone(zone)
    detail = f"deferred to {at.isoformat()} ({local:%H:%M} {zone.key}, the {source}'s best hour)"
    return _Verdict("best_hour", detail, at)


def resolve(
    ruleset: RuleSet,
    firings: list[Firing],
    profile: Profile | None,
    now: datetime,
    lookups: Lookups = NO_LOOKUPS,
) -> Resolution:
    """Decide every firing of one user at one moment; record the outcome on ``profile``.

    ``lookups`` holds what renders may read besides the profile (catalog, statistics).
    """
    out = Resolution(model=ruleset.model_version)
    candidates: list[Firing] = []
    for firing in firings:
        verdict = (
            _guard(ruleset, firing, profile, now, lookups) if profile else _Verdict("no_profile")
        )
        if verdict is None:
            candidates.append(firing)
        elif verdict.defer_until is not None:
            _defer(out, profile, firing, now, verdict, verdict.defer_until)
        else:
            _decide(out, profile, firing, now, "suppressed", verdict.reason, verdict.detail)
            _follow_up(ruleset, out, profile, firing, now)
    # the holdout goes first: a held-out firing leaves the moment as if the rule had not
    # fired, so the others compete without it
    planned: list[tuple[Firing, _Plan]] = []
    for firing in candidates:
        assert profile is not None  # candidates passed the no_profile guard
        plan = _plan(firing, lookups)
        if plan.assignment.held_out:
            _withhold(ruleset, out, profile, firing, now, lookups, plan)
            _follow_up(ruleset, out, profile, firing, now)
        else:
            planned.append((firing, plan))
    marketing = sorted(
        (f for f, _ in planned if f.rule.category == "marketing"),
        key=lambda f: ruleset.rank(f.rule),
    )
    losers = {id(f) for f in marketing[1:]}
    for firing, plan in planned:
        assert profile is not None
        if id(firing) in losers:
            detail = f"lost to {marketing[0].rule.id}"
            _decide(out, profile, firing, now, "suppressed", "arbitration", detail)
        else:
            _send(ruleset, out, profile, firing, now, lookups, plan)
        _follow_up(ruleset, out, profile, firing, now)
    return out


@dataclass(frozen=True)
class _Plan:
    """A send's request id and experiment arm, decided before arbitration."""

    rid: str
    assignment: Assignment


def _plan(firing: Firing, lookups: Lookups) -> _Plan:
    rule = firing.rule
    rid = request_id(
        rule.id, firing.user_id, firing.key, firing.trigger_event_id, firing.instance_id
    )
    return _Plan(rid, _assign(firing, rid, lookups))


def _defer(
    out: Resolution,
    profile: Profile | None,
    firing: Firing,
    now: datetime,
    verdict: _Verdict,
    until: datetime,
) -> None:
    """Park ``firing`` in a timer marked ``deferred``, due ``until``."""
    deferred = firing.timer(ms(until), deferred_by=verdict.reason)
    out.timeline(profile, now).schedule(deferred, verdict.reason, log="none")
    _decide(out, profile, firing, now, "deferred", verdict.reason, verdict.detail, due=until)


def _decide(
    out: Resolution,
    profile: Profile | None,
    firing: Firing,
    now: datetime,
    outcome: str,
    reason: str,
    detail: str = "",
    rid: str | None = None,
    due: datetime | None = None,
    *,
    assignment: Assignment | None = None,
) -> None:
    decision = Decision(
        firing.rule.id,
        firing.user_id,
        outcome,  # type: ignore[arg-type]
        reason,
        firing.trigger_event_id,
        now,
        rid,
        detail,
        firing.step,
        due=due,
        model_version=used_model(out.model, profile),
        experiment=assignment.experiment if assignment else None,
        arm=assignment.arm if assignment else None,
    )
    out.decisions.append(decision)
    if profile is not None:
        profile.record_decision(decision.as_dict())


def _send(
    ruleset: RuleSet,
    out: Resolution,
    profile: Profile,
    firing: Firing,
    now: datetime,
    lookups: Lookups,
    plan: _Plan,
) -> None:
    rule = firing.rule
    rid, assignment = plan.rid, plan.assignment
    composed = _compose(ruleset, out, profile, firing, now, lookups, assignment)
    if composed is None:
        return
    template = composed.template
    email, picks = composed.email, composed.picks
    html = track(
        email.html,
        user_id=firing.user_id,
        message_id=rid,
        tracking_config=ruleset.config.tracking,
        signer=ruleset.links,
        keep={composed.unsubscribe_url},
    )
    size = len(html.encode()) + len(email.text.encode())
    if size > MAX_MAIL_BYTES:  # no mailer takes it, nor the topic: never retried forever
        detail = f"{size} bytes of HTML and text; the limit is {MAX_MAIL_BYTES}"
        _decide(out, profile, firing, now, "suppressed", "too_large", detail)
        return
    assert profile.email is not None  # checked by the no_email guard
    sender = ruleset.config.sender
    headers = {}
    if rule.category == "marketing":
        headers["List-Unsubscribe"] = f"<{composed.unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    name = " ".join(p for p in (profile.first_name, profile.last_name) if p) or None
    out.sends.append(
        SendRequest(
            request_id=rid,
            message_id=rid,
            user_id=firing.user_id,
            to=profile.email,
            to_name=name,
            from_email=sender.from_email,
            from_name=sender.from_name,
            reply_to=sender.reply_to,
            rule_id=rule.id,
            template=template,
            subject=email.subject,
            preheader=email.preheader,
            html=html,
            text=email.text,
            headers=headers,
            category=rule.category,
            trigger_event_id=firing.trigger_event_id,
            trigger_event_type=str(firing.trigger_event.get("type", "")),
            locale=profile.locale,
            experiment_id=assignment.experiment if assignment.experimental else None,
            variant=assignment.arm if assignment.experimental else None,
            tags=[rule.id, rule.kind],
            products=list(picks.shown),
            created_at=now,
        )
    )
    if rule.category == "marketing" and picks.shown:
        profile.record_featured(rid, now, list(picks.shown), picks.categories)
    profile.record_send(SendRecord(at=now, rule_id=rule.id, category=rule.category, request_id=rid))
    _expose(out, profile, rid, assignment, now)
    _decide(out, profile, firing, now, "fired", "ok", rid=rid, assignment=assignment)


def _assign(firing: Firing, rid: str, lookups: Lookups) -> Assignment:
    """The experiment arm of the send ``rid`` (``default`` without an experiment)."""
    spec = experiment_of(firing.rule, firing.step)
    live = None
    if spec.settings.strategy == "thompson":
        live = arm_counts(lookups.counters).get(spec.id, {})
    return assign(spec, firing.user_id, rid, live)


def _compose(
    ruleset: RuleSet,
    out: Resolution,
    profile: Profile,
    firing: Firing,
    now: datetime,
    lookups: Lookups,
    assignment: Assignment,
) -> Composed | None:
    """The mail of ``firing`` in its arm's variant; ``None`` when it cannot be made (the
    decision says why: ``missing_data``, ``render_error``)."""
    variant = assignment.variant
    try:
        return compose(
            ruleset,
            profile,
            firing,
            now,
            lookups,
            template=(variant.template if variant else None) or firing.template,
            subject=variant.subject if variant else None,
        )
    except MissingData as exc:  # never half-rendered: nothing of it was
        _decide(out, profile, firing, now, "suppressed", "missing_data", str(exc))
    except RenderError as exc:
        detail = _without_personal_data(str(exc), profile)  # an error may quote a value
        _decide(out, profile, firing, now, "suppressed", "render_error", detail)
    return None


def _withhold(
    ruleset: RuleSet,
    out: Resolution,
    profile: Profile,
    firing: Firing,
    now: datetime,
    lookups: Lookups,
    plan: _Plan,
) -> None:
    """Keep a held-out user from the mail, as if it were sent.

    The mail is composed and dropped: a user it could not be made for (``missing_data``)
    is not counted in the holdout, as they would not have been among the mail's
    recipients. The rule's re-entry and cooldown count it, and the exposure collects
    the user's purchases for the holdout arm; the frequency cap does not (other rules'
    mail reaches them as it would without this rule).
    """
    composed = _compose(ruleset, out, profile, firing, now, lookups, plan.assignment)
    if composed is None:
        return
    profile.record_fired(firing.rule.id, now)
    _expose(out, profile, plan.rid, plan.assignment, now)
    detail = f"withheld {composed.template}"
    assignment = plan.assignment
    _decide(
        out,
        profile,
        firing,
        now,
        "suppressed",
        "holdout",
        detail,
        rid=plan.rid,
        assignment=assignment,
    )


def _expose(
    out: Resolution, profile: Profile, rid: str, assignment: Assignment, now: datetime
) -> None:
    exposure = Exposure(
        message_id=rid, experiment=assignment.experiment, arm=assignment.arm, at=now
    )
    profile.exposures, credit = expose(profile.exposures, exposure)
    if credit is not None:
        name = counter_field(credit.experiment, credit.arm, credit.metric)
        out.counters[name] = out.counters.get(name, 0.0) + credit.amount


def _without_personal_data(text: str, profile: Profile) -> str:
    """``text`` with the profile's address and name masked wherever they appear."""
    for address in (profile.email, profile.email_invalid):
        if address:
            text = text.replace(address, mask_address(address))
    for name in (profile.first_name, profile.last_name):
        if name:
            text = _mask_word(text, name)
    return text


def _mask_word(text: str, word: str) -> str:
    """``text`` with every whole-word ``word`` shown as its first character and ``***``."""
    masked = f"{word[:1]}***"
    return re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", lambda _: masked, text)


def _follow_up(
    ruleset: RuleSet, out: Resolution, profile: Profile | None, firing: Firing, now: datetime
) -> None:
    """Schedule what comes after a resolved firing: the next step, the next anniversary."""
    rule = firing.rule
    if profile is None:
        return
    timeline = out.timeline(profile, now)
    if isinstance(rule, SequenceRule) and firing.step is not None:
        following = firing.step + 1
        if following < len(rule.steps):
            due = firing.started_ms + int(rule.steps[following].delay / timedelta(milliseconds=1))
            nxt = replace(firing, step=following, instance="")
            timeline.schedule(nxt.timer(due), "next_step")
    elif isinstance(rule, DateRule):
        anniversary = date_timer(
            ruleset, rule, profile, now, firing.partition, firing.trigger_event
        )
        if anniversary is not None:
            timeline.schedule(anniversary, "next_anniversary")

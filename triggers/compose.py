"""One mail, composed: the render context of a firing and the rendered email.

The worker's sends (:mod:`triggers.decide`) and ``nudge preview`` both come here, so a
preview shows exactly what a send of the same profile would carry.

Templates see what conditions see (``profile`` / ``user``, ``cart``, ``event``,
``segments``, ``now`` and the helpers, see :func:`triggers.context.context`) and:
``rule`` (``id``, ``category``, ``step``), ``unsubscribe_url`` (the user's signed link),
``brand`` (``rules.yaml``'s ``brand:``), ``timezone`` (the user's zone, else
``guards.default_timezone``), the recommendation functions of :class:`~triggers.picks.Picks`
(``recommend``, ``catalog``, ``recently_viewed``), and from the renderer ``locale`` (the
user's locale, normalised: ``de_AT``; else ``brand.locale``) and, in ``body.html``,
``preheader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from profiles import Lookups, Profile, settle_feedback
from render import RenderedEmail
from triggers.context import context
from triggers.firing import Firing
from triggers.loader import RuleSet
from triggers.picks import Picks
from triggers.schedule import user_zone

__all__ = ["Composed", "compose"]


@dataclass(frozen=True)
class Composed:
    email: RenderedEmail
    #: the template it was rendered from
    template: str
    #: the signed unsubscribe link the mail carries (and its headers, when marketing)
    unsubscribe_url: str
    #: what the mail showed of the catalog
    picks: Picks


def compose(
    ruleset: RuleSet,
    profile: Profile,
    firing: Firing,
    now: datetime,
    lookups: Lookups,
    *,
    template: str | None = None,
    subject: str | None = None,
) -> Composed:
    """Render ``firing``'s mail to ``profile`` at ``now``: its own template, or
    ``template``; ``subject`` is a Jinja source replacing the template's subject.

    Raises :class:`render.MissingData` when a field the template requires is missing,
    :class:`render.RenderError` when rendering fails.
    """
    rule = firing.rule
    ctx = context(ruleset, profile, now, firing.trigger_event)
    # recommendations see the mail the user ignored since their last event
    picks = Picks(ruleset, settle_feedback(profile, now, ruleset.config.scoring), lookups, now)
    ctx.update(picks.functions())
    ctx["rule"] = {"id": rule.id, "category": rule.category, "step": firing.step}
    # rules without a subscription: the link unsubscribes from every marketing mail
    link = ruleset.unsubscribe_url(firing.user_id, rule.subscription, now)
    ctx["unsubscribe_url"] = link
    ctx["brand"] = ruleset.config.brand
    ctx["timezone"] = user_zone(profile, ruleset.config.guards)
    name = template or firing.template
    email = ruleset.renderer.render(name, ctx, locale=profile.locale, subject=subject)
    return Composed(email, name, link, picks)

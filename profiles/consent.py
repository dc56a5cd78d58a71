"""How signup, ``consent`` and ``unsubscribe`` events change a user's email consent.

Each such event is one :class:`~profiles.model.ConsentChange` of one *scope*: the global
email consent (``category`` ``None``) or one subscription (``newsletter``, ``offers``,
...). The change goes into ``profile.consent_log`` in time order (a late event lands
where its ``ts`` puts it), and the scope's state follows the newest change by time: a
late change applies unless the log holds a newer one of the same scope, just as a late
purchase does not move ``last_purchase_at`` back. The global scope is
``profile.email_consent``; a subscription is opted out while its name is in
``profile.unsubscribed``. The scopes are independent: a global grant leaves the
subscriptions the user left as they are, and leaving one subscription leaves the global
consent as it is.
"""

from __future__ import annotations

from bisect import bisect_right

from profiles.events import Consent, Event, Signup, Unsubscribe
from profiles.model import MAX_CONSENT_LOG, MAX_UNSUBSCRIBED, ConsentChange, Profile

__all__ = ["apply_consent", "consent_change"]


def consent_change(event: Event, props: Signup | Consent | Unsubscribe) -> ConsentChange:
    """The consent change ``event`` (with its typed ``props``) makes."""
    if isinstance(props, Signup):
        granted, category, source = props.consent.email, None, "signup"
    elif isinstance(props, Consent):
        granted, category, source = props.granted, props.category, props.source or "consent"
    else:
        granted, category, source = False, props.category, props.source or "unsubscribe"
    return ConsentChange(
        at=event.ts, category=category, granted=granted, source=source, event_id=event.event_id
    )


def apply_consent(profile: Profile, change: ConsentChange) -> None:
    """Log ``change`` in time order and, unless the log holds a newer change of its
    scope, make it the scope's state. Past :data:`MAX_CONSENT_LOG` the oldest change is
    dropped."""
    log = profile.consent_log
    index = bisect_right(log, change.at, key=lambda kept: kept.at)
    log.insert(index, change)
    newest = all(later.category != change.category for later in log[index + 1 :])
    if len(log) > MAX_CONSENT_LOG:
        del log[0]
    if newest:
        _set_state(profile, change)


def _set_state(profile: Profile, change: ConsentChange) -> None:
    category = change.category
    if category is None:
        profile.email_consent = change.granted
    elif change.granted:
        if category in profile.unsubscribed:
            profile.unsubscribed.remove(category)
    elif category not in profile.unsubscribed and len(profile.unsubscribed) < MAX_UNSUBSCRIBED:
        profile.unsubscribed = sorted([*profile.unsubscribed, category])

"""The secret keys a worker must be given, and the unsubscribe signer built from them.

``nudge worker`` refuses to start while a secret in :data:`REQUIRED_SECRETS` is unset
(:func:`missing_secrets`, :func:`missing_secrets_message`); ``nudge dev`` makes
ephemeral ones instead (:func:`with_ephemeral_secrets`) and says what that costs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr

from profiles import UnsubscribeSigner, development_signer
from streams.settings import MAKE_A_KEY, Settings

__all__ = [
    "REQUIRED_SECRETS",
    "RequiredSecret",
    "missing_secrets",
    "missing_secrets_message",
    "unsubscribe_signer",
    "with_ephemeral_secrets",
]


@dataclass(frozen=True)
class RequiredSecret:
    """A :class:`Settings` field holding a key no worker may run without."""

    field: str
    #: what the key does, for the refusal message
    purpose: str
    #: what an ephemeral key (``nudge dev``) loses when the process stops
    ephemeral: str

    @property
    def variable(self) -> str:
        return f"NUDGE_{self.field.upper()}"


REQUIRED_SECRETS = (
    RequiredSecret(
        "unsubscribe_key",
        "signs the one-click unsubscribe links of marketing mail (and, through a key "
        "derived from it, the click links and open pixels)",
        "unsubscribe links sent while it runs will not verify after it stops",
    ),
    RequiredSecret(
        "erasure_key",
        "hashes erased user ids and addresses (tombstones, the suppression list); "
        "never change it, or the list forgets them",
        "the erasures made while it runs will not be recognised after it stops",
    ),
)


def missing_secrets(settings: Settings, *fields: str) -> list[RequiredSecret]:
    """The required secrets ``settings`` lacks (of ``fields`` only, when given), in
    :data:`REQUIRED_SECRETS` order."""
    return [
        secret
        for secret in REQUIRED_SECRETS
        if getattr(settings, secret.field) is None and (not fields or secret.field in fields)
    ]


def missing_secrets_message(missing: list[RequiredSecret]) -> str:
    """Why a worker will not start, and how to make each key it lacks."""
    lines = [f"{secret.variable} is not set: it {secret.purpose}." for secret in missing]
    lines.append(
        f"Make a key with: {MAKE_A_KEY} (keep it secret; every worker, and whatever "
        "verifies the links, needs the same one)"
    )
    return "\n".join(lines)


def with_ephemeral_secrets(settings: Settings) -> tuple[Settings, list[RequiredSecret]]:
    """``settings`` with a fresh random key for each required secret it lacks, and which."""
    missing = missing_secrets(settings)
    made = {secret.field: SecretStr(secrets.token_urlsafe(32)) for secret in missing}
    return settings.model_copy(update=made), missing


def unsubscribe_signer(settings: Settings) -> UnsubscribeSigner:
    """The configured keys' signer (the current key signs, the previous ones verify);
    without a key, the development signer (its links start with ``dev.``)."""
    ttl = timedelta(seconds=settings.unsubscribe_token_ttl)
    if settings.unsubscribe_key is None:
        return development_signer(ttl)
    keys = [settings.unsubscribe_key, *settings.unsubscribe_previous_keys]
    return UnsubscribeSigner([key.get_secret_value().encode() for key in keys], ttl)

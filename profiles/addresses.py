"""Email addresses, validated and normalised wherever they enter a profile.

Signup and ``profile_update`` both pass the address through :func:`normalise_address`.
The check is syntax only (``email-validator`` without DNS: an event is never held up by a
resolver, and the same input always gives the same answer, live or in ``simulate``).

The stored form is ``local@domain`` with surrounding whitespace trimmed, the local part
exactly as given (a mailbox name may be case-sensitive, RFC 5321 section 2.4) and the
domain lowercased and IDNA-encoded: ``" Ann@Bücher.DE "`` is stored as
``Ann@xn--bcher-kva.de``. A non-ASCII local part (``jörg@example.com``) has no ASCII
form; it is a valid address (RFC 6531) and is kept, Unicode-normalised (NFC): delivering
it needs a mailer that speaks SMTPUTF8.

Decisions and log lines never carry an address: where one must be mentioned (the
``invalid_email`` guard's detail), :func:`mask_address` shows its first character and
its domain only.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from profiles.errors import ProfileError

__all__ = ["InvalidAddress", "mask_address", "normalise_address"]

#: the longest domain a masked address shows (a domain name has at most 253 characters)
_MASKED_DOMAIN = 253


class InvalidAddress(ProfileError, ValueError):
    """Not an email address. A ``ValueError`` too, so pydantic validators report it."""


def normalise_address(raw: str) -> str:
    """The stored form of the address ``raw``, or :class:`InvalidAddress` saying why not."""
    try:
        valid = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from exc
    return f"{valid.local_part}@{valid.ascii_domain}"


def mask_address(value: str) -> str:
    """``value`` with all of its local part but the first character hidden:
    ``"alice@example.com"`` is ``"a***@example.com"``. Anything, an invalid address
    included: without an ``@`` only the first character shows (``"n***"``)."""
    local, at, domain = value.strip().rpartition("@")
    if not at:
        local, domain = domain, ""
    return f"{local[:1]}***{at}{domain[:_MASKED_DOMAIN]}"

"""Exceptions raised by the profiles package (one root: :class:`ProfileError`)."""

from __future__ import annotations

__all__ = ["CorruptProfile", "InvalidEvent", "ProfileError", "StoreUnavailable"]


class ProfileError(Exception):
    """Root of every error raised by :mod:`profiles`."""


class InvalidEvent(ProfileError):
    """An inbound message does not satisfy the event contract.

    ``reason`` is a short stable code for dead-letter consumers (``invalid_json``,
    ``schema_violation``, ``key_mismatch``, ``empty_value``); ``detail`` names the field.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CorruptProfile(ProfileError):
    """A stored profile document does not parse; the user's events cannot be applied."""

    def __init__(self, user_id: str, problem: str) -> None:
        super().__init__(f"stored profile of user {user_id!r} is not valid: {problem}")
        self.user_id = user_id


class StoreUnavailable(ProfileError):
    """The backing store could not be reached; the caller should retry the batch."""

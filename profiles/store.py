"""The profile store port and its in-memory twin.

A store keeps, per user, the profile document with a version number (for
compare-and-set) and the ids of the events already applied (for dedup). The engine reads
a batch's users in one call and writes them back in one call; a write whose expected
version no longer matches is refused and reported, so a zombie worker can never
overwrite a newer profile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from profiles.model import Profile

__all__ = ["InMemoryProfileStore", "ProfileStore", "ProfileWrite", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """A user's profile as read, with its version and which asked-for events it has seen."""

    profile: Profile | None
    version: int = 0
    seen: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ProfileWrite:
    """Replace a user's profile (``None`` erases it) if its version is still ``expected``."""

    user_id: str
    expected_version: int
    profile: Profile | None
    #: (event id, event time in epoch ms) of every event applied since the read
    applied: tuple[tuple[str, int], ...] = ()


class ProfileStore(Protocol):
    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        """Snapshots for the users in ``wanted``; ``seen`` answers for the listed event ids."""
        ...

    async def save(self, writes: Sequence[ProfileWrite]) -> list[str]:
        """Apply the writes; return the user ids whose version moved (nothing written)."""
        ...

    def scan(self, *, chunk: int = 500) -> AsyncIterator[list[str]]:
        """Every user with a stored profile, a chunk of ids at a time (order unspecified)."""
        ...


@dataclass
class _Entry:
    version: int = 0
    #: the profile as JSON, like Redis holds it: nothing the caller does to a loaded
    #: profile reaches the store until it is saved
    document: bytes | None = None
    seen: dict[str, int] = field(default_factory=dict)


class InMemoryProfileStore:
    """Dict-backed :class:`ProfileStore` for tests, ``simulate`` and benchmarks."""

    def __init__(self, *, dedup_window: int = 1000) -> None:
        self._users: dict[str, _Entry] = {}
        self._dedup_window = dedup_window

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        out = {}
        for user_id, event_ids in wanted.items():
            entry = self._users.get(user_id, _Entry())
            profile = Profile.model_validate_json(entry.document) if entry.document else None
            seen = frozenset(e for e in event_ids if e in entry.seen)
            out[user_id] = Snapshot(profile, entry.version, seen)
        return out

    async def save(self, writes: Sequence[ProfileWrite]) -> list[str]:
        conflicts = []
        for write in writes:
            entry = self._users.setdefault(write.user_id, _Entry())
            if entry.version != write.expected_version:
                conflicts.append(write.user_id)
                continue
            if write.profile is None:
                entry.version, entry.document = 0, None
            else:
                entry.version += 1
                entry.document = write.profile.model_dump_json().encode()
            entry.seen.update(write.applied)
            self._trim(entry)
        return conflicts

    async def scan(self, *, chunk: int = 500) -> AsyncIterator[list[str]]:
        users = sorted(u for u, entry in self._users.items() if entry.document is not None)
        for start in range(0, len(users), chunk):
            yield users[start : start + chunk]

    def _trim(self, entry: _Entry) -> None:
        excess = len(entry.seen) - self._dedup_window
        if excess > 0:
            oldest = sorted(entry.seen.items(), key=lambda item: (item[1], item[0]))
            for event_id, _ in oldest[:excess]:
                del entry.seen[event_id]

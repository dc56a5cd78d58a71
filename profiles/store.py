"""The profile store port and its in-memory twin.

A store keeps, per user, the profile document with a version number (for
compare-and-set) and the events already applied (for dedup): not their ids but one
12-byte record each (:func:`dedup_records`: an 8-byte digest of the id and the event time
to the second), in the order they were applied, at most ``dedup_window`` of them; records
older than ``dedup_max_age_ms`` before the newest event of a write are dropped from the
oldest end (a late event applied after newer ones stays until the window passes it).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from profiles.model import Profile
from profiles.privacy import Pseudonyms
from profiles.stored import dump_profile, load_profile

__all__ = [
    "DEDUP_MAX_AGE_MS",
    "InMemoryProfileStore",
    "ProfileStore",
    "ProfileWrite",
    "Snapshot",
    "dedup_cutoff",
    "dedup_records",
    "event_digest",
]

#: how long an applied event is remembered, counted back from the user's newest one
DEDUP_MAX_AGE_MS = 3 * 86_400_000


def event_digest(event_id: str) -> bytes:
    """What the dedup set holds for an event id: 8 bytes of its BLAKE2b hash.

    Two ids with one digest make the later event look like a redelivery of the first
    (dropped as a duplicate); with ``dedup_window`` digests kept, the chance that a new
    event does is ``dedup_window / 2**64`` (5e-17 at 1,000).
    """
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


_RECORD = struct.Struct(">8sI")


def dedup_records(applied: Sequence[tuple[str, int]]) -> bytes:
    """(event id, event ms) pairs as dedup records: digest, then epoch seconds (uint32)."""
    return b"".join(
        _RECORD.pack(event_digest(e), min(max(ts_ms // 1000, 0), 2**32 - 1)) for e, ts_ms in applied
    )


def dedup_cutoff(applied: Sequence[tuple[str, int]], max_age_ms: int) -> int:
    """Epoch seconds before which a write's records may be forgotten."""
    return max(ts_ms for _, ts_ms in applied) // 1000 - max_age_ms // 1000


@dataclass(frozen=True)
class Snapshot:
    """A user's profile as read, with its version and which asked-for events it has seen."""

    profile: Profile | None
    version: int = 0
    seen: frozenset[str] = frozenset()
    #: when the user was last erased (epoch ms), while the tombstone lasts: events dated
    #: up to then are not applied (see :mod:`profiles.privacy`)
    erased_ms: int | None = None


@dataclass(frozen=True)
class ProfileWrite:
    """Replace a user's profile (``None`` deletes it) if its version is still ``expected``.

    With ``erased_ms`` the user was erased since the read: their dedup records go too,
    and a tombstone keeps the erase time; ``profile`` and ``applied`` then hold only what
    came after the erasure. With ``forget`` the dedup records go without a tombstone (a
    profile deleted for want of activity: a later event builds a fresh one).

    ``counters`` are (field, amount) increments of the store's shop-wide counters (see
    :meth:`ProfileStore.counters`), added in the same atomic step as the profile and its
    dedup records, and only when the write is applied: a refused write adds nothing. So
    a count is exactly-once with respect to the events that caused it: an event
    redelivered after the write is a duplicate (its dedup record is there) and adds
    nothing again; a crash before the write leaves neither the dedup record nor the
    count, and the redelivered event adds it once. Counters are aggregates, not personal
    data: an erasing or forgetting write leaves them as they are.
    """

    user_id: str
    expected_version: int
    profile: Profile | None
    #: (event id, event time in epoch ms) of every event applied since the read
    applied: tuple[tuple[str, int], ...] = ()
    erased_ms: int | None = None
    forget: bool = False
    #: (field, amount) to add to the shop-wide counters if the write is applied; a
    #: field may appear more than once (the amounts add up)
    counters: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # checked here, not in the store: the save script would fail on the increment
        # halfway through a batch, after the writes before it were made
        if self.counters and not all(map(_is_amount, (amount for _, amount in self.counters))):
            raise ValueError(f"counter amounts must be finite numbers: {self.counters!r}")

    @property
    def forgets(self) -> bool:
        """Whether the stored dedup records go (before ``applied`` is added)."""
        return self.forget or self.erased_ms is not None


def _is_amount(amount: float) -> bool:
    # a bool is an int to Python but not a number once encoded for the save script
    return not isinstance(amount, bool) and math.isfinite(amount)


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

    async def counters(self, prefix: str = "") -> dict[str, float]:
        """The shop-wide counters whose field starts with ``prefix``: field -> total of
        every amount the applied writes added to it (see :class:`ProfileWrite`)."""
        ...


@dataclass
class _Entry:
    version: int = 0
    #: the profile's stored form, as Redis holds it: nothing the caller does to a loaded
    #: profile reaches the store until it is saved
    document: bytes | None = None
    #: dedup records (see :func:`dedup_records`), oldest applied first
    seen: bytes = b""


class InMemoryProfileStore:
    """Dict-backed :class:`ProfileStore` for tests, ``simulate`` and benchmarks.

    Tombstones are kept by the keyed hash of the user id, as in Redis, but do not expire.
    """

    def __init__(
        self,
        *,
        dedup_window: int = 1000,
        dedup_max_age_ms: int = DEDUP_MAX_AGE_MS,
        pseudonyms: Pseudonyms | None = None,
    ) -> None:
        self._users: dict[str, _Entry] = {}
        self._tombstones: dict[str, int] = {}
        self._counters: dict[str, float] = {}
        self._pseudonyms = pseudonyms or Pseudonyms()
        self._dedup_window = dedup_window
        self._dedup_max_age_ms = dedup_max_age_ms

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        out = {}
        for user_id, event_ids in wanted.items():
            entry = self._users.get(user_id, _Entry())
            profile = load_profile(user_id, entry.document) if entry.document else None
            seen = frozenset(e for e in event_ids if _has(entry.seen, event_digest(e)))
            erased = self._tombstones.get(self._pseudonyms.user(user_id))
            out[user_id] = Snapshot(profile, entry.version, seen, erased)
        return out

    async def save(self, writes: Sequence[ProfileWrite]) -> list[str]:
        conflicts = []
        for write in writes:
            entry = self._users.setdefault(write.user_id, _Entry())
            if entry.version != write.expected_version:
                conflicts.append(write.user_id)
                continue
            if write.forgets:
                entry.seen = b""
            if write.erased_ms is not None:
                self._tombstone(write.user_id, write.erased_ms)
            if write.profile is None:
                entry.version, entry.document = 0, None
            else:
                entry.version += 1
                entry.document = dump_profile(write.profile)
            if write.applied:
                cutoff = dedup_cutoff(write.applied, self._dedup_max_age_ms)
                entry.seen = self._trim(entry.seen + dedup_records(write.applied), cutoff)
            if entry.document is None and not entry.seen:
                del self._users[write.user_id]
            # counters are aggregate, not the user's: erasing or forgetting leaves them
            for name, amount in write.counters:
                self._counters[name] = self._counters.get(name, 0.0) + amount
        return conflicts

    async def counters(self, prefix: str = "") -> dict[str, float]:
        return {name: total for name, total in self._counters.items() if name.startswith(prefix)}

    def _tombstone(self, user_id: str, erased_ms: int) -> None:
        hashed = self._pseudonyms.user(user_id)
        self._tombstones[hashed] = max(erased_ms, self._tombstones.get(hashed, erased_ms))

    def holds(self, user_id: str) -> bool:
        """Whether anything of the user is stored (profile or dedup records)."""
        return user_id in self._users

    async def scan(self, *, chunk: int = 500) -> AsyncIterator[list[str]]:
        users = sorted(u for u, entry in self._users.items() if entry.document is not None)
        for start in range(0, len(users), chunk):
            yield users[start : start + chunk]

    def _trim(self, records: bytes, cutoff: int) -> bytes:
        """The newest ``dedup_window`` records, less those before ``cutoff`` at the
        oldest end: as ``save_profiles.lua`` does."""
        first = max(0, len(records) - self._dedup_window * _RECORD.size)
        while first < len(records) and _RECORD.unpack_from(records, first)[1] < cutoff:
            first += _RECORD.size
        return records[first:]


def _has(records: bytes, digest: bytes) -> bool:
    at = records.find(digest)
    while at >= 0:
        if at % _RECORD.size == 0:
            return True
        at = records.find(digest, at + 1)
    return False

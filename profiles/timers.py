"""Durable timers, owned per Kafka partition, and their in-memory twin.

A timer says "evaluate rule R for user U at time T". Timers live in the partition of the
user's events, so the worker that owns that partition is the only one that fires them,
and they move with a rebalance. Firing is at-least-once without duplicates in the
normal case: :meth:`TimerStore.claim_due` leases due timers (pushes them ``lease_ms`` into
the future) and :meth:`TimerStore.complete` removes them once their send requests are
durable, unless they were rescheduled in between. A worker that dies after claiming
leaves its timers to fire again when the lease runs out, with the same request id.

A stored timer is its JSON deflated against a preset dictionary of typical timers
(``timer-v1.zdict``, see ``bench/make_dictionaries.py``): ~70 bytes instead of ~300 for
the bench workload's timers (bench/README.md, memory). Its first byte says the form:
:data:`DEFLATED_V1`, or ``{`` for the plain JSON stored before, which still loads. The
dictionary never changes once timers are stored with it (a test pins its digest).

The JSON leaves out the user when the timer's id names it (:func:`user_of`): a store
keeps every timer under its id, so :meth:`Timer.from_stored` takes the user from there.
Timers stored with their user still load.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from profiles.deflated import PresetDeflate

__all__ = [
    "DEFLATED_V1",
    "DICTIONARY_V1",
    "InMemoryTimerStore",
    "Timer",
    "TimerOps",
    "TimerStore",
    "timer_id",
    "user_of",
]

# a 4 KiB window holds the dictionary (3 KiB) and a typical timer; a longer one (an order
# with many items) refers back to the dictionary less
_V1 = PresetDeflate(b"\x01", "timer-v1.zdict", wbits=-12, level=6, mem_level=4)
#: first byte of a timer deflated with :data:`DICTIONARY_V1` (JSON starts with ``{``)
DEFLATED_V1 = _V1.marker
DICTIONARY_V1 = _V1.dictionary


#: what a stored timer keeps of its trigger event: what firing reads (the request id is
#: made of ``event_id``; decisions name ``type``; a rule's conditions and templates may
#: read ``event.ts`` and ``event.properties``). ``user_id`` is the timer's own.
STORED_EVENT_FIELDS = ("event_id", "type", "ts", "properties")


def timer_id(rule_id: str, user_id: str, key: str = "") -> str:
    """One pending timer per rule, user and correlation key."""
    return f"{rule_id}|{user_id}|{key}"


def user_of(tid: str) -> str:
    """The user a timer id names: the part between its first and last ``|`` (a rule id
    holds none, a user id may). A key holding a ``|`` makes this differ from the timer's
    user; such a timer's stored JSON keeps its user."""
    return tid[tid.index("|") + 1 : tid.rindex("|")]


@dataclass(frozen=True)
class Timer:
    rule_id: str
    user_id: str
    due_ms: int
    partition: int
    trigger_event: dict[str, Any]
    key: str = ""
    #: sequence step to send when it fires
    step: int | None = None
    #: tells apart the sends of one trigger instance (e.g. a birthday's year)
    instance: str = ""
    #: when the trigger instance started (sequence delays count from here), epoch ms
    started_ms: int = 0
    #: a send held back by a guard (quiet hours, best hour), due when it may go
    deferred: bool = False
    #: why it was held back (``quiet_hours``, ``best_hour``; ``explain`` says so); empty
    #: for a send deferred before timers kept it
    deferred_by: str = ""
    #: the stored form this timer was read from (``complete`` compares it with what is
    #: stored)
    stored: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def id(self) -> str:
        return timer_id(self.rule_id, self.user_id, self.key)

    @property
    def trigger_event_id(self) -> str:
        return str(self.trigger_event.get("event_id", ""))

    def to_json(self) -> bytes:
        """The stored form: the trigger event's :data:`STORED_EVENT_FIELDS` only, the
        optional fields only when they are set, and the user only when the id does not
        name it (:func:`user_of`)."""
        event = self.trigger_event
        data: dict[str, Any] = {
            "rule_id": self.rule_id,
            "due_ms": self.due_ms,
            "trigger_event": {k: event[k] for k in STORED_EVENT_FIELDS if k in event},
        }
        if user_of(self.id) != self.user_id:
            data["user_id"] = self.user_id
        if self.key:
            data["key"] = self.key
        if self.step is not None:
            data["step"] = self.step
        if self.instance:
            data["instance"] = self.instance
        if self.started_ms:
            data["started_ms"] = self.started_ms
        if self.deferred:
            data["deferred"] = True
        if self.deferred_by:
            data["deferred_by"] = self.deferred_by
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)

    def to_stored(self) -> bytes:
        """What the store holds: :meth:`to_json`, deflated against the dictionary."""
        return _V1.pack(self.to_json())

    @classmethod
    def from_stored(cls, raw: bytes | str, partition: int, tid: str) -> Timer:
        """The timer stored under id ``tid``: deflated, or the JSON stored before (in
        this form, or the earlier one with the whole event and every field). A stored
        form that is none of these raises :class:`ValueError`."""
        raw = raw.encode() if isinstance(raw, str) else raw
        data = orjson.loads(_inflate(raw) if raw[:1] == DEFLATED_V1 else raw)
        try:
            user_id = data["user_id"] if "user_id" in data else user_of(tid)
            return cls._from_document(data, partition, user_id, raw)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"a stored timer lacks what a timer has: {exc!r}") from exc

    @classmethod
    def _from_document(
        cls, data: dict[str, Any], partition: int, user_id: str, raw: bytes
    ) -> Timer:
        event = data["trigger_event"]
        if "ts" in event:  # a real event (re-checks and backfills carry id and type only)
            # firing sees the same event whichever form was stored
            event.setdefault("user_id", user_id)
            event.setdefault("context", None)
        timer = cls(
            rule_id=data["rule_id"],
            user_id=user_id,
            key=data.get("key", ""),
            due_ms=data["due_ms"],
            trigger_event=event,
            partition=partition,
            step=data.get("step"),
            instance=data.get("instance", ""),
            started_ms=data.get("started_ms", 0),
            deferred=data.get("deferred", False),
            deferred_by=data.get("deferred_by", ""),
        )
        object.__setattr__(timer, "stored", raw)
        return timer

    @property
    def stored_form(self) -> bytes:
        """What the store holds for this timer if it was read from there, else what it
        would hold."""
        return self.stored if self.stored is not None else self.to_stored()


def _inflate(stored: bytes) -> bytes:
    try:
        return _V1.unpack(stored)
    except zlib.error as exc:
        raise ValueError(f"a stored timer does not inflate: {exc}") from exc


@dataclass
class TimerOps:
    """The net timer changes of one batch, per partition: later ops replace earlier ones."""

    schedule: dict[tuple[int, str], Timer] = field(default_factory=dict)
    cancel: set[tuple[int, str]] = field(default_factory=set)

    def add(self, timer: Timer) -> None:
        slot = (timer.partition, timer.id)
        self.cancel.discard(slot)
        self.schedule[slot] = timer

    def remove(self, partition: int, tid: str) -> None:
        self.schedule.pop((partition, tid), None)
        self.cancel.add((partition, tid))

    def merge(self, other: TimerOps) -> None:
        """Apply ``other``'s changes after this one's (its schedule and cancel are disjoint)."""
        for timer in other.schedule.values():
            self.add(timer)
        for partition, tid in other.cancel:
            self.remove(partition, tid)

    def __bool__(self) -> bool:
        return bool(self.schedule or self.cancel)


class TimerStore(Protocol):
    async def apply(self, ops: TimerOps) -> None:
        """Schedule (insert or replace) and cancel timers; idempotent."""
        ...

    async def claim_due(
        self, partition: int, now_ms: int, *, limit: int, lease_ms: int
    ) -> list[Timer]:
        """Lease up to ``limit`` timers of ``partition`` due at or before ``now_ms``."""
        ...

    async def complete(self, timers: Sequence[Timer]) -> None:
        """Remove fired timers, unless rescheduled since they were claimed."""
        ...

    async def pending(self, partition: int) -> list[Timer]:
        """Every timer of ``partition``, soonest first (for ``explain`` and tests)."""
        ...

    async def find(self, partition: int, ids: Collection[str]) -> list[Timer]:
        """The timers of ``partition`` with these ids that are pending, soonest first."""
        ...

    async def count(self, partition: int) -> int:
        """How many timers of ``partition`` are pending (claimed ones included)."""
        ...


class InMemoryTimerStore:
    def __init__(self) -> None:
        # partition -> timer id -> (score ms, stored timer)
        self._parts: dict[int, dict[str, tuple[int, bytes]]] = {}

    async def apply(self, ops: TimerOps) -> None:
        for (partition, tid), timer in ops.schedule.items():
            self._parts.setdefault(partition, {})[tid] = (timer.due_ms, timer.to_stored())
        for partition, tid in ops.cancel:
            self._parts.get(partition, {}).pop(tid, None)

    async def claim_due(
        self, partition: int, now_ms: int, *, limit: int, lease_ms: int
    ) -> list[Timer]:
        part = self._parts.get(partition, {})
        due = sorted((score, tid) for tid, (score, _) in part.items() if score <= now_ms)
        claimed = []
        for _, tid in due[:limit]:
            raw = part[tid][1]
            part[tid] = (now_ms + lease_ms, raw)
            claimed.append(Timer.from_stored(raw, partition, tid))
        return claimed

    async def complete(self, timers: Sequence[Timer]) -> None:
        for timer in timers:
            part = self._parts.get(timer.partition, {})
            current = part.get(timer.id)
            if current is not None and current[1] == timer.stored_form:
                del part[timer.id]

    async def pending(self, partition: int) -> list[Timer]:
        part = self._parts.get(partition, {})
        ordered = sorted(part.items(), key=lambda item: (item[1][0], item[0]))
        return [Timer.from_stored(raw, partition, tid) for tid, (_, raw) in ordered]

    async def find(self, partition: int, ids: Collection[str]) -> list[Timer]:
        wanted = set(ids)
        return [t for t in await self.pending(partition) if t.id in wanted]

    async def count(self, partition: int) -> int:
        return len(self._parts.get(partition, {}))

    def next_due_ms(self, partition: int) -> int | None:
        """When the soonest timer of ``partition`` falls due, without parsing any (the
        simulator asks before every event)."""
        part = self._parts.get(partition)
        return min(score for score, _ in part.values()) if part else None

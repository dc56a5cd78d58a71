"""The mailer's idempotency records: what became of each ``request_id``.

A request is **claimed** before its SMTP transaction (``SET NX``, with a lease that
expires by itself a little after the transaction's timeout), and **finished** with the
outcome after it, before the Kafka offset is committed. The record holds no address, only
the state, the SMTP code and the failure reason. What a mailer finds when it claims:

- nothing: the claim is its own; send.
- ``delivered``, or ``failed`` and reported: done before; skip.
- ``failed``, not yet reported: the report was lost with a crash; publish it again.
- ``sending`` with a live lease: another transaction is under way; wait for it.
- ``sending`` without one: a mailer died mid-transaction, and whether the mail went is
  unknown. Never resent: :meth:`DeliveryLedger.interrupt` turns it into ``failed``
  (``interrupted``) for exactly one caller, which reports it.

A claim is **released** (deleted) only after a transaction that certainly sent nothing
(no connection, a 4xx), so that the retry may claim it again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from profiles import Keys
from profiles.redis_store import FAILING_OVER
from streams.errors import StreamsError

__all__ = [
    "INTERRUPTED",
    "Delivery",
    "DeliveryLedger",
    "InMemoryDeliveryLedger",
    "LedgerError",
    "LedgerUnavailable",
    "RedisDeliveryLedger",
    "State",
]

State = Literal["sending", "delivered", "failed"]

#: the detail of an ``interrupted`` report
INTERRUPTED = (
    "a mailer stopped during the SMTP transaction: the mail may or may not have been delivered"
)


class LedgerError(StreamsError):
    """The delivery records could not be read or written."""


class LedgerUnavailable(LedgerError):
    """Redis could not be reached; try again."""


@dataclass(frozen=True)
class Delivery:
    """One request's record. ``claim`` tells claims apart (each is new); ``leased`` is
    whether a ``sending`` claim's lease is alive (read, not stored). ``detail``, the
    server's words (which may name the address), is kept only until the failure is
    reported."""

    state: State
    code: int | None = None
    reason: str | None = None
    reported: bool = False
    claim: str = ""
    leased: bool = False
    detail: str | None = None

    @classmethod
    def sending(cls) -> Delivery:
        return cls("sending", claim=uuid.uuid4().hex)

    @classmethod
    def interrupted(cls) -> Delivery:
        """A claim found without its lease: failed, delivery unknown, not yet reported."""
        return cls("failed", reason="interrupted", detail=INTERRUPTED)

    @property
    def settled(self) -> bool:
        """Nothing left to do: delivered, or failed and reported."""
        return self.state == "delivered" or (self.state == "failed" and self.reported)

    def encode(self) -> bytes:
        stored: dict[str, Any] = {"s": self.state, "c": self.code, "r": self.reason}
        stored["p"] = self.reported
        if self.claim:
            stored["t"] = self.claim
        if self.detail is not None and not self.reported:
            stored["d"] = self.detail
        return orjson.dumps(stored)

    @classmethod
    def decode(cls, raw: bytes | str, *, leased: bool = False) -> Delivery:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            data["s"],
            code=data.get("c"),
            reason=data.get("r"),
            reported=bool(data.get("p")),
            claim=data.get("t", ""),
            leased=leased,
            detail=data.get("d"),
        )


class DeliveryLedger(Protocol):
    async def claim(self, request_id: str, held: Delivery) -> Delivery | None:
        """Record ``held`` (a :meth:`Delivery.sending` claim) with its lease unless the
        request has a record; ``None`` when the claim is taken, else the record found."""

    async def get(self, request_id: str) -> Delivery | None: ...

    async def finish(self, request_id: str, outcome: Delivery) -> None:
        """Replace the record with ``outcome`` (delivered or failed) and end the lease."""

    async def release(self, request_id: str, held: Delivery) -> None:
        """Delete the record if it is still the claim ``held`` (nothing was sent)."""

    async def interrupt(self, request_id: str, found: Delivery) -> bool:
        """Mark ``found`` (a ``sending`` claim whose lease is gone) ``failed``
        (``interrupted``), unless it changed meanwhile; whether this call did."""

    async def ping(self) -> None: ...


_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return false
end
return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2])}
"""

#: the claim token of the record in KEYS[1] (false when none): claims are compared by
#: token, not by their bytes, which another mailer version may encode differently
_TOKEN = """
local function token(key)
  local raw = redis.call('GET', key)
  if not raw then return false end
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' or type(record['t']) ~= 'string' then return false end
  return record['t']
end
"""

_RELEASE = (
    _TOKEN
    + """
if token(KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"""
)

_INTERRUPT = (
    _TOKEN
    + """
if token(KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
)


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError, *FAILING_OVER) as exc:
        raise LedgerUnavailable(f"Redis unavailable: {exc}") from exc
    except RedisError as exc:
        raise LedgerError(f"Redis error: {exc}") from exc


class RedisDeliveryLedger:
    """Two keys per request with one hash tag (:meth:`profiles.Keys.delivery`): the
    record, kept ``ttl`` seconds, and the claim's lease, ``lease`` seconds."""

    def __init__(self, redis: Any, *, keys: Keys, ttl: float, lease: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = max(1, round(ttl))
        self._lease_ms = max(1, round(lease * 1000))
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._interrupt = redis.register_script(_INTERRUPT)

    def _pair(self, request_id: str) -> list[str]:
        return [self._keys.delivery(request_id), self._keys.delivery_lease(request_id)]

    async def claim(self, request_id: str, held: Delivery) -> Delivery | None:
        async with _translated():
            found = await self._claim(
                keys=self._pair(request_id), args=[held.encode(), self._ttl, self._lease_ms]
            )
        if found is None:
            return None
        raw, leased = found
        return Delivery.decode(raw, leased=bool(leased))

    async def get(self, request_id: str) -> Delivery | None:
        record, lease = self._pair(request_id)
        async with _translated():
            raw, leased = await self._redis.mget(record, lease)
        return None if raw is None else Delivery.decode(raw, leased=leased is not None)

    async def finish(self, request_id: str, outcome: Delivery) -> None:
        record, lease = self._pair(request_id)
        async with _translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.set(record, replace(outcome, claim="").encode(), ex=self._ttl)
            pipe.delete(lease)
            await pipe.execute()

    async def release(self, request_id: str, held: Delivery) -> None:
        async with _translated():
            await self._release(keys=self._pair(request_id), args=[held.claim])

    async def interrupt(self, request_id: str, found: Delivery) -> bool:
        if not found.claim:  # no claim: nothing to interrupt
            return False
        async with _translated():
            done = await self._interrupt(
                keys=self._pair(request_id),
                args=[found.claim, Delivery.interrupted().encode(), self._ttl],
            )
        return bool(done)

    async def ping(self) -> None:
        async with _translated():
            await self._redis.ping()


class InMemoryDeliveryLedger:
    """The twin: records in a dict, leases timed by ``clock``; records never expire."""

    def __init__(self, *, lease: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lease = lease
        self._clock = clock
        self._records: dict[str, Delivery] = {}
        self._leases: dict[str, float] = {}

    def _leased(self, request_id: str) -> bool:
        return self._leases.get(request_id, float("-inf")) > self._clock()

    def expire_lease(self, request_id: str) -> None:
        """As if the lease ran out (the holder died)."""
        self._leases.pop(request_id, None)

    async def claim(self, request_id: str, held: Delivery) -> Delivery | None:
        found = await self.get(request_id)
        if found is not None:
            return found
        self._records[request_id] = held
        self._leases[request_id] = self._clock() + self._lease
        return None

    async def get(self, request_id: str) -> Delivery | None:
        found = self._records.get(request_id)
        return None if found is None else replace(found, leased=self._leased(request_id))

    async def finish(self, request_id: str, outcome: Delivery) -> None:
        self._records[request_id] = replace(outcome, claim="", leased=False)
        self._leases.pop(request_id, None)

    async def release(self, request_id: str, held: Delivery) -> None:
        current = self._records.get(request_id)
        if current is not None and current.claim and current.claim == held.claim:
            del self._records[request_id]
            self._leases.pop(request_id, None)

    async def interrupt(self, request_id: str, found: Delivery) -> bool:
        current = self._records.get(request_id)
        mine = current is not None and current.claim and current.claim == found.claim
        if not mine or self._leased(request_id):
            return False
        self._records[request_id] = Delivery.interrupted()
        return True

    async def ping(self) -> None:
        return None

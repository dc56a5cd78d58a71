"""What nudge keeps after an erasure, and nothing more: keyed hashes, never the data.

An ``erase`` deletes everything nudge holds about a user. Two things must outlive it, or
the erasure would not hold:

- a **tombstone** per erased user (see :meth:`profiles.keys.Keys.tombstone`): the erase
  time under a keyed hash of the user id, so that an event dated before the erasure (a
  late or replayed one) does not rebuild the profile; it expires after a bounded time;
- the **suppression list**: keyed hashes of erased addresses with their erase time, so
  that an address imported again gets no marketing mail until its owner consents afresh.

Both hash with HMAC-SHA256 under one secret (``NUDGE_ERASURE_KEY``): without the key a
hash cannot be turned back into an id or an address by trying candidates, which a plain
hash of a sequential user id or a known address would allow. The key must never change:
the hashes made with the old one would no longer match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from profiles.model import Profile

__all__ = [
    "DEVELOPMENT_ERASURE_KEY",
    "TOMBSTONE_MS",
    "InMemorySuppressionList",
    "Pseudonyms",
    "SuppressionList",
    "SuppressionOps",
    "personal_products",
]

#: how long a tombstone lasts by default (ms): longer than events are kept on the topic
TOMBSTONE_MS = 90 * 86_400_000

#: the key of tests, ``simulate`` and benchmarks; a worker refuses to start on it
DEVELOPMENT_ERASURE_KEY = b"nudge-development-erasure-key-not-secret"


@dataclass(frozen=True)
class Pseudonyms:
    """Keyed hashes of user ids and addresses (32 hex digits: 128 bits of HMAC-SHA256)."""

    key: bytes = field(default=DEVELOPMENT_ERASURE_KEY, repr=False)

    def user(self, user_id: str) -> str:
        return self._hash(b"user\x1f" + user_id.encode())

    def address(self, address: str) -> str:
        """Of an address as :func:`profiles.addresses.normalise_address` returns it,
        case-folded: mailbox providers ignore the case of the local part, so ``Ann@`` and
        ``ann@`` are one address to the suppression list."""
        return self._hash(b"address\x1f" + address.casefold().encode())

    def _hash(self, message: bytes) -> str:
        return hmac.digest(self.key, message, hashlib.sha256)[:16].hex()


@dataclass
class SuppressionOps:
    """A batch's changes to the suppression list, by plain address (the store hashes)."""

    #: address -> erase time (epoch ms): an erased user's address
    add: dict[str, int] = field(default_factory=dict)
    #: addresses whose owner consented afresh
    remove: set[str] = field(default_factory=set)

    def suppress(self, address: str, at_ms: int) -> None:
        self.add[address] = max(at_ms, self.add.get(address, at_ms))
        self.remove.discard(address)

    def release(self, address: str) -> None:
        self.add.pop(address, None)
        self.remove.add(address)

    def merge(self, other: SuppressionOps) -> None:
        """Apply ``other``'s changes after this one's."""
        for address, at_ms in other.add.items():
            self.suppress(address, at_ms)
        for address in other.remove:
            self.release(address)

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


class SuppressionList(Protocol):
    async def erased(self, addresses: Collection[str]) -> dict[str, int]:
        """The erase time (epoch ms) of each of ``addresses`` on the list."""
        ...

    async def apply(self, ops: SuppressionOps) -> None:
        """Add and remove addresses; idempotent."""
        ...


class InMemorySuppressionList:
    """The in-memory twin of :class:`SuppressionList` (it holds hashes too)."""

    def __init__(self, pseudonyms: Pseudonyms | None = None) -> None:
        self._pseudonyms = pseudonyms or Pseudonyms()
        self._hashes: dict[str, int] = {}

    async def erased(self, addresses: Collection[str]) -> dict[str, int]:
        found = {a: self._hashes.get(self._pseudonyms.address(a)) for a in addresses}
        return {a: at for a, at in found.items() if at is not None}

    async def apply(self, ops: SuppressionOps) -> None:
        for address, at_ms in ops.add.items():
            hashed = self._pseudonyms.address(address)
            self._hashes[hashed] = max(at_ms, self._hashes.get(hashed, at_ms))
        for address in ops.remove:
            self._hashes.pop(self._pseudonyms.address(address), None)

    @property
    def hashes(self) -> Mapping[str, int]:
        """What the list holds: address hash -> erase time (tests check no address is kept)."""
        return self._hashes


def personal_products(profile: Profile) -> set[str]:
    """The products whose watcher lists may name the user (the views, carts and orders
    their profile remembers): an erasure takes the user off them."""
    products = set(profile.recently_viewed) | set(profile.cart.items)
    products.update(profile.purchased_products)
    if profile.last_cart is not None:
        products.update(line.product_id for line in profile.last_cart.lines)
    for send in profile.featured:
        products.update(send.products)
    return products

"""Messages per second per destination domain: one token bucket per domain.

``NUDGE_MAILER_RATE_LIMITS="gmail.com=20,*=100"``: a recipient's domain takes the rate of
its own entry, else of its nearest parent's (``eu.example.com`` uses ``example.com``), else
``*``; without ``*`` other domains are not limited. A bucket holds one second's worth of
tokens (at least one), so a quiet domain may take a short burst. The limits are per
mailer process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "ANY_DOMAIN",
    "DomainRateLimiter",
    "TokenBucket",
    "check_rate_limits",
    "parse_rate_limits",
]

#: the entry for every domain without one of its own
ANY_DOMAIN = "*"


def parse_rate_limits(value: Any) -> Any:
    """``domain=rate,...`` (or a JSON object) as ``{domain: rate}``; other values as they
    are, for the settings model to check."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("{"):
        return orjson.loads(value)
    limits: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        domain, sep, rate = entry.partition("=")
        if not sep or not domain.strip():
            raise ValueError(f"expected domain=messages_per_second, got {entry!r}")
        limits[domain.strip()] = rate.strip()
    return limits


def check_rate_limits(limits: dict[str, float]) -> dict[str, float]:
    """Lower-cased domains, rates above zero."""
    for domain, rate in limits.items():
        if rate <= 0:
            raise ValueError(f"the rate of {domain!r} must be above 0 messages per second")
    return {domain.lower().strip("."): rate for domain, rate in limits.items()}


@dataclass
class TokenBucket:
    """``rate`` tokens a second, up to ``capacity``; a reservation may take the level
    below zero, and the wait it returns is until its token has been earned."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0: at once)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class DomainRateLimiter:
    def __init__(
        self, limits: Mapping[str, float], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def rate_of(self, domain: str) -> tuple[str, float] | None:
        """The entry that governs ``domain``: its own, a parent's, or ``*``."""
        labels = domain.lower().strip(".").split(".")
        for start in range(len(labels)):
            candidate = ".".join(labels[start:])
            if candidate in self._limits:
                return candidate, self._limits[candidate]
        if ANY_DOMAIN in self._limits:
            return ANY_DOMAIN, self._limits[ANY_DOMAIN]
        return None

    def reserve(self, domain: str) -> float:
        """Take a token for one message to ``domain``; the seconds to wait before sending.

        Domains that fall under ``*`` each get their own bucket at that rate."""
        entry = self.rate_of(domain)
        if entry is None:
            return 0.0
        name, rate = entry
        key = domain.lower() if name == ANY_DOMAIN else name
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity = max(1.0, rate)
            bucket = self._buckets[key] = TokenBucket(rate, capacity, capacity, now)
        return bucket.reserve(now)

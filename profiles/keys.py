"""Every Redis key nudge writes, in one place.

All keys of one user share the Redis Cluster hash tag ``{user_id}`` so a Lua script may
touch several of them; a partition's timer keys share the tag ``{timers.<partition>}``.
The catalog and the shop-wide statistics share the tag ``{shop}``: one Lua call records
a whole batch's statistics or reads a batch's lookups, on Redis Cluster too (the price:
all of them live on one node).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True)
class Keys:
    """Key names under one namespace ``prefix`` (tests use a fresh prefix each)."""

    prefix: str = "nudge"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "{}: "):
            raise ValueError(f"invalid Redis key prefix {self.prefix!r}")

    def profile(self, user_id: str) -> str:
        """Hash: ``v`` = version (compare-and-set), ``p`` = profile (see :mod:`profiles.stored`)."""
        return f"{self.prefix}:{{{user_id}}}:profile"

    def user_of(self, profile_key: str) -> str:
        """The user id in a key made by :meth:`profile`."""
        start = len(self.prefix) + 2
        return profile_key[start : profile_key.rindex("}:profile")]

    def seen(self, user_id: str) -> str:
        """String of the user's dedup records (see :func:`profiles.store.dedup_records`)."""
        return f"{self.prefix}:{{{user_id}}}:dedup"

    def legacy_seen(self, user_id: str) -> str:
        """Sorted set of raw applied event ids, as stored before digests; read until it
        ages out (see ``load_profiles.lua``)."""
        return f"{self.prefix}:{{{user_id}}}:seen"

    def timers_due(self, partition: int) -> str:
        """Sorted set: timer id -> due time (epoch ms) for one Kafka partition."""
        return f"{self.prefix}:{{timers.{partition}}}:due"

    def timers_data(self, partition: int) -> str:
        """Hash: timer id -> timer JSON for one Kafka partition."""
        return f"{self.prefix}:{{timers.{partition}}}:data"

    def shop(self) -> str:
        """The common start of every catalog and statistics key (hash tag ``{shop}``)."""
        return f"{self.prefix}:{{shop}}:"

    def catalog(self) -> str:
        """Hash: product id -> product JSON (see :class:`profiles.catalog.Product`)."""
        return f"{self.shop()}catalog"

    def stats_meta(self) -> str:
        """Hash: ``epoch`` = the forward-decay epoch (ms) every statistic's weights count
        from (see :mod:`profiles.aggregates`)."""
        return f"{self.shop()}meta"

    def popular(self) -> str:
        """Sorted set: product id -> decayed popularity weight, top-K."""
        return f"{self.shop()}popular"

    def popular_in(self, category: str) -> str:
        """Sorted set: product id -> decayed popularity within ``category``, top-K."""
        return f"{self.shop()}popular:{category}"

    def also_bought(self, product_id: str) -> str:
        """Sorted set: product id -> decayed co-occurrence weight with ``product_id``, top-K."""
        return f"{self.shop()}also:{product_id}"

    def watchers(self, product_id: str) -> str:
        """Sorted set: user id -> when they last viewed or carted ``product_id`` (ms)."""
        return f"{self.shop()}watch:{product_id}"

    def send_hours(self) -> str:
        """Hash: local hour (0-23) -> decayed count of mail opens and clicks."""
        return f"{self.shop()}hours"

"""Every Redis key nudge writes, in one place.

All keys of one user share a Redis Cluster hash tag so a Lua script may touch several of
them: ``{user_id}``, as in ``nudge:{user_id}:profile``. Redis hashes what lies between
the first ``{`` and the first ``}`` after it, so a ``}`` or ``{`` inside an id still
leaves one non-empty tag per user (``a}b`` is tagged ``a``), but an id that starts with
``}``, or the empty id, would leave an empty tag: Redis would hash each whole key and
scatter the user's keys over several slots. Those ids alone get a tag of their own in
front, ``nudge:}{<slot tag>}{user_id}:profile`` (see :func:`slot_tag`); the ``}`` after
the prefix keeps that form apart from every key of the first one, whose keys stay as
they were (on a single node, where the first form worked for every id, a profile stored
under it for an id starting with ``}`` is no longer read). A partition's timer keys
share the tag ``{timers.<partition>}``. The catalog and the shop-wide statistics share
the tag ``{shop}``: one Lua call records a whole batch's statistics or reads a batch's
lookups, on Redis Cluster too (the price: all of them live on one node). An erased
user's tombstone is named by a keyed hash of the id, not the id, and put in the user's
slot by a tag of its own (:func:`slot_tag`), as is the hash of shop-wide counters kept
per slot (written in the same script call as the profile); the suppression list of
erased addresses has the tag ``{privacy}``. The mailer's record of a send request and
its lease share the tag ``{mail.<request_id>}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["Keys", "slot_tag"]


@cache
def _slot_tags() -> tuple[str, ...]:
    """For each Redis Cluster hash slot, the shortest hex number whose hash tag lands in
    it (up to 5 digits; built once, in about a fifth of a second)."""
    tags: dict[int, str] = {}
    number = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tag = format(number, "x")
        tags.setdefault(key_slot(tag.encode()), tag)
        number += 1
    return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


def slot_tag(key: str) -> str:
    """A hash tag that puts another key in ``key``'s hash slot without repeating its tag."""
    return _slot_tags()[key_slot(key.encode())]


def _glob_literal(text: str) -> str:
    """``text`` as a Redis ``MATCH`` pattern that matches only itself."""
    return "".join(f"\\{c}" if c in "\\*?[]" else c for c in text)


@dataclass(frozen=True)
class Keys:
    """Key names under one namespace ``prefix`` (tests use a fresh prefix each)."""

    prefix: str = "nudge"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "{}: "):
            raise ValueError(f"invalid Redis key prefix {self.prefix!r}")

    def _user(self, user_id: str) -> str:
        """The start of every key of the user, up to the ``}`` that closes the id."""
        if user_id[:1] in ("", "}"):
            return f"{self.prefix}:}}{{{slot_tag(user_id)}}}{{{user_id}}}"
        return f"{self.prefix}:{{{user_id}}}"

    def profile(self, user_id: str) -> str:
        """String: the version (compare-and-set), the user's dedup records and the stored
        profile (see ``stored_user.lua``); a hash of ``v`` and ``p`` stored before."""
        return f"{self._user(user_id)}:profile"

    def profiles_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key :meth:`profile` makes, of both forms."""
        return f"{_glob_literal(self.prefix)}:[{{}}]*}}:profile"

    def user_of(self, profile_key: str) -> str:
        """The user id in a key made by :meth:`profile`."""
        start = len(self.prefix) + 2
        if profile_key[start - 1] == "}":
            # past the own tag (a hex number) and the ``{`` that opens the id
            start = profile_key.index("}", start) + 2
        return profile_key[start : profile_key.rindex("}:profile")]

    def seen(self, user_id: str) -> str:
        """String of the user's dedup records (see :func:`profiles.store.dedup_records`),
        as stored before they moved into the profile's key; read until the user's next
        write merges them (see ``stored_user.lua``)."""
        return f"{self._user(user_id)}:dedup"

    def legacy_seen(self, user_id: str) -> str:
        """Sorted set of raw applied event ids, as stored before digests; read until it
        ages out (see ``load_profiles.lua``)."""
        return f"{self._user(user_id)}:seen"

    def tombstone(self, user_id: str, hashed: str) -> str:
        """String: when the user was erased (epoch ms), for a bounded time (see
        :mod:`profiles.privacy`). Named by ``hashed``, the keyed hash of the user id, not
        by the id, yet in the slot of the user's keys (the load script reads it)."""
        return f"{self.prefix}:{{{slot_tag(self.profile(user_id))}}}:erased:{hashed}"

    def counters(self, user_id: str) -> str:
        """Hash: counter field -> total (``HINCRBYFLOAT``), one hash per Redis Cluster hash
        slot, the one of the user's keys: the save script adds a write's increments in the
        same call as its profile (see :class:`profiles.store.ProfileWrite`); a total is the
        sum over every slot's hash."""
        return f"{self.prefix}:{{{slot_tag(self.profile(user_id))}}}:counters"

    def all_counters(self) -> str:
        """Hash: the counters of every user, on a single Redis node, where a script may
        write any key: one hash instead of one per slot (16,384 hashes of the same fields
        would cost far more memory, and reading them back far longer). Matched by
        :meth:`counters_pattern` like the per-slot hashes, so both layouts sum together
        (a move to Cluster keeps the totals)."""
        return f"{self.prefix}:{{counters}}:counters"

    def counters_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key :meth:`counters` makes (and for sorted
        sets whose name ends in a product id ending in ``:counters``: scan by type too)."""
        return f"{_glob_literal(self.prefix)}:{{*}}:counters"

    def suppressed(self) -> str:
        """Hash: keyed hash of an erased address -> when it was erased (epoch ms)."""
        return f"{self.prefix}:{{privacy}}:suppressed"

    def timers_due(self, partition: int) -> str:
        """Sorted set of one Kafka partition's timers: ``@<user id>`` -> when the user's
        soonest timer is due (epoch ms); see ``timer_buckets.lua``."""
        return f"{self.prefix}:{{timers.{partition}}}:due"

    def timers_data(self, partition: int) -> str:
        """Hash of one Kafka partition's timers: ``@<user id>`` -> all of the user's
        timers (id, due, stored form); see ``timer_buckets.lua``."""
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

    def anonymous(self, anonymous_id: str) -> str:
        """String: the user id an anonymous visitor id was linked to (the collector's
        Segment ``alias``/``identify``), with a TTL. Named by the anonymous id, outside
        any user's hash tag: the collector reads it before it knows the user."""
        return f"{self.prefix}:anonymous:{anonymous_id}"

    def delivery(self, request_id: str) -> str:
        """String: the mailer's record of one send request (claimed, delivered or failed;
        see ``streams/deliveries.py``), kept for ``NUDGE_MAILER_DEDUP_TTL``. Holds no
        address."""
        return f"{self.prefix}:{{mail.{request_id}}}:delivery"

    def delivery_lease(self, request_id: str) -> str:
        """String: present while a mailer holds the request's claim in an SMTP
        transaction; expires by itself (a claim without it was interrupted)."""
        return f"{self.prefix}:{{mail.{request_id}}}:lease"

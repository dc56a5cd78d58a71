"""Live user profiles, dedup and durable timers: Redis implementations and in-memory twins."""

from profiles.addresses import InvalidAddress, normalise_address
from profiles.behaviour import settle_feedback
from profiles.catalog import Product
from profiles.errors import CorruptProfile, InvalidEvent, ProfileError, StoreUnavailable
from profiles.events import KNOWN_EVENT_TYPES, Event, parse_event
from profiles.features import FeedbackConfig, LifecycleConfig
from profiles.fold import apply_event
from profiles.keys import Keys
from profiles.lookups import NO_LOOKUPS, Lookups, LookupSource, Ranked
from profiles.model import (
    Cart,
    CartLine,
    FeaturedSend,
    LastCart,
    Profile,
    ScoringConfig,
    SendRecord,
)
from profiles.redis_store import RedisProfileStore
from profiles.redis_timers import RedisTimerStore
from profiles.store import InMemoryProfileStore, ProfileStore, ProfileWrite, Snapshot
from profiles.timers import InMemoryTimerStore, Timer, TimerOps, TimerStore, timer_id

__all__ = [
    "KNOWN_EVENT_TYPES",
    "NO_LOOKUPS",
    "Cart",
    "CartLine",
    "CorruptProfile",
    "Event",
    "FeaturedSend",
    "FeedbackConfig",
    "InMemoryProfileStore",
    "InMemoryTimerStore",
    "InvalidAddress",
    "InvalidEvent",
    "Keys",
    "LastCart",
    "LifecycleConfig",
    "LookupSource",
    "Lookups",
    "Product",
    "Profile",
    "ProfileError",
    "ProfileStore",
    "ProfileWrite",
    "Ranked",
    "RedisProfileStore",
    "RedisTimerStore",
    "ScoringConfig",
    "SendRecord",
    "Snapshot",
    "StoreUnavailable",
    "Timer",
    "TimerOps",
    "TimerStore",
    "apply_event",
    "normalise_address",
    "parse_event",
    "settle_feedback",
    "timer_id",
]

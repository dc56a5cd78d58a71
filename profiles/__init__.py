"""Live user profiles, dedup and durable timers (Redis implementations and in-memory twins),
and the signed unsubscribe tokens and click links a mailer or web app verifies with nothing
but the keys."""

from profiles.addresses import InvalidAddress, mask_address, normalise_address
from profiles.aggregates import Activity, InMemoryStatistics, RecommendationConfig, Statistics
from profiles.attribution import Credit, Exposure, attribute, expose
from profiles.behaviour import settle_feedback
from profiles.catalog import (
    Catalog,
    CatalogError,
    InMemoryCatalog,
    InvalidProduct,
    Product,
    load_catalog,
    parse_product,
)
from profiles.errors import CorruptProfile, InvalidEvent, ProfileError, StoreUnavailable
from profiles.events import DEFAULT_MAX_EVENT_BYTES, KNOWN_EVENT_TYPES, Event, parse_event
from profiles.features import FeedbackConfig, LifecycleConfig
from profiles.fold import apply_event
from profiles.keys import Keys
from profiles.links import (
    ClickLink,
    InvalidLink,
    LinkSigner,
    OpenPixel,
    click_event,
    development_link_signer,
    open_event,
)
from profiles.lookup_cache import LookupCache
from profiles.lookups import NO_LOOKUPS, Lookups, LookupSource, Ranked
from profiles.model import (
    Cart,
    CartLine,
    ConsentChange,
    FeaturedSend,
    LastCart,
    Predicted,
    Profile,
    ScoringConfig,
    SendRecord,
)
from profiles.privacy import (
    InMemorySuppressionList,
    Pseudonyms,
    SuppressionList,
    SuppressionOps,
    personal_products,
)
from profiles.redis_aggregates import RedisStatistics
from profiles.redis_catalog import RedisCatalog
from profiles.redis_privacy import RedisSuppressionList
from profiles.redis_store import RedisProfileStore
from profiles.redis_timers import RedisTimerStore
from profiles.store import InMemoryProfileStore, ProfileStore, ProfileWrite, Snapshot
from profiles.timers import InMemoryTimerStore, Timer, TimerOps, TimerStore, timer_id
from profiles.unsubscribe import (
    InvalidToken,
    UnsubscribeRequest,
    UnsubscribeSigner,
    development_signer,
    unsubscribe_event,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "KNOWN_EVENT_TYPES",
    "NO_LOOKUPS",
    "Activity",
    "Cart",
    "CartLine",
    "Catalog",
    "CatalogError",
    "ClickLink",
    "ConsentChange",
    "CorruptProfile",
    "Credit",
    "Event",
    "Exposure",
    "FeaturedSend",
    "FeedbackConfig",
    "InMemoryCatalog",
    "InMemoryProfileStore",
    "InMemoryStatistics",
    "InMemorySuppressionList",
    "InMemoryTimerStore",
    "InvalidAddress",
    "InvalidEvent",
    "InvalidLink",
    "InvalidProduct",
    "InvalidToken",
    "Keys",
    "LastCart",
    "LifecycleConfig",
    "LinkSigner",
    "LookupCache",
    "LookupSource",
    "Lookups",
    "OpenPixel",
    "Predicted",
    "Product",
    "Profile",
    "ProfileError",
    "ProfileStore",
    "ProfileWrite",
    "Pseudonyms",
    "Ranked",
    "RecommendationConfig",
    "RedisCatalog",
    "RedisProfileStore",
    "RedisStatistics",
    "RedisSuppressionList",
    "RedisTimerStore",
    "ScoringConfig",
    "SendRecord",
    "Snapshot",
    "Statistics",
    "StoreUnavailable",
    "SuppressionList",
    "SuppressionOps",
    "Timer",
    "TimerOps",
    "TimerStore",
    "UnsubscribeRequest",
    "UnsubscribeSigner",
    "apply_event",
    "attribute",
    "click_event",
    "development_link_signer",
    "development_signer",
    "expose",
    "load_catalog",
    "mask_address",
    "normalise_address",
    "open_event",
    "parse_event",
    "parse_product",
    "personal_products",
    "settle_feedback",
    "timer_id",
    "unsubscribe_event",
]

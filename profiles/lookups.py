"""What a batch's folds and renders may read besides the profiles, fetched with the batch.

Recommendations, brand affinity and the population's best send hour read the catalog and
shop-wide statistics. Rule evaluation and rendering are pure, so the engine fetches what a
batch may need before folding it (one round trip at most, usually none: the worker keeps
a bounded cache) and hands it over as a :class:`Lookups`. ``simulate`` builds the same
object from its in-memory stores.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from profiles.catalog import Product

__all__ = ["NO_LOOKUPS", "LookupSource", "Lookups", "Ranked"]

#: ``(product_id, weight)`` pairs, strongest first, ties by product id
Ranked = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Lookups:
    #: catalog entries by product id: those the batch's events and profiles name, and
    #: those the statistics below rank
    products: Mapping[str, Product] = field(default_factory=dict)
    #: product id -> products bought with it (carts weigh less), decayed, top-K
    also_bought: Mapping[str, Ranked] = field(default_factory=dict)
    #: decayed shop-wide popularity, top-K
    popular: Ranked = ()
    #: category -> decayed popularity within it, top-K
    popular_by_category: Mapping[str, Ranked] = field(default_factory=dict)
    #: the population's decayed count of mail opens and clicks by local hour (24 values;
    #: empty when nothing is known yet)
    send_hours: tuple[float, ...] = ()
    #: address -> when it was erased (epoch ms), for the addresses the batch's events set
    #: that are on the suppression list (see :mod:`profiles.privacy`)
    erased_addresses: Mapping[str, int] = field(default_factory=dict)
    #: the store's experiment counters, as of a recent read (``strategy: thompson``
    #: samples from them; see :mod:`triggers.experiments`); empty when no rule needs them
    counters: Mapping[str, float] = field(default_factory=dict)


#: nothing known: cold start, and callers that render without a catalog
NO_LOOKUPS = Lookups()


class LookupSource(Protocol):
    async def lookups(self, product_ids: Collection[str]) -> Lookups:
        """What a batch naming ``product_ids`` may read: those products, the statistics,
        and the products the statistics rank."""
        ...

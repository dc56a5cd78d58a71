"""The shop's products, as recommendations and templates see them.

A product arrives from ``config/catalog.jsonl`` or the compacted ``nudge.catalog`` topic
(one JSON object per product, keyed by ``product_id``; a null value deletes it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Product"]


class Product(BaseModel):
    """One catalog entry. Unknown fields are refused; shop-specific data goes in
    ``attributes``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1)
    category: str | None = None
    brand: str | None = None
    price: float = Field(ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    url: str | None = None
    image_url: str | None = None
    in_stock: bool = True
    attributes: dict[str, Any] = {}

"""The shop's products, as recommendations and templates see them.

A product arrives from ``config/catalog.jsonl`` or the compacted ``nudge.catalog`` topic
(one JSON object per product, keyed by ``product_id``; a null value deletes it).
:class:`Catalog` is the store port; :class:`InMemoryCatalog` its twin
(:class:`profiles.redis_catalog.RedisCatalog` keeps one Redis hash).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.errors import ProfileError

__all__ = [
    "Catalog",
    "CatalogError",
    "InMemoryCatalog",
    "InvalidProduct",
    "Product",
    "dump_product",
    "load_catalog",
    "parse_product",
]


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


class InvalidProduct(ProfileError):
    """One catalog record does not satisfy the :class:`Product` contract."""


class CatalogError(ProfileError):
    """A catalog file has invalid lines; ``issues`` are ``file:line: reason`` each."""

    def __init__(self, issues: Sequence[str]) -> None:
        super().__init__("\n".join(issues))
        self.issues = list(issues)


def parse_product(raw: bytes | str, *, key: bytes | None = None) -> Product:
    """One product from its JSON; a topic record's ``key`` must be its product id."""
    try:
        product = Product.model_validate_json(raw)
    except ValidationError as exc:
        reasons = (f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise InvalidProduct("; ".join(reasons)) from exc
    if key is not None and key.decode("utf-8", "replace") != product.product_id:
        raise InvalidProduct(f"key {key!r} must equal product_id {product.product_id!r}")
    return product


def load_catalog(path: Path) -> list[Product]:
    """Every product of a JSON Lines file (blank lines skipped); a product id twice or
    any invalid line raises :class:`CatalogError` naming every bad line."""
    products: dict[str, Product] = {}
    issues = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                product = parse_product(line)
            except InvalidProduct as exc:
                issues.append(f"{path}:{number}: {exc}")
                continue
            if product.product_id in products:
                issues.append(f"{path}:{number}: product_id {product.product_id!r} repeated")
            products[product.product_id] = product
    if issues:
        raise CatalogError(issues)
    return list(products.values())


def dump_product(product: Product) -> bytes:
    """The stored form of a product (what the topic and the Redis hash hold)."""
    return orjson.dumps(product.model_dump(mode="json", exclude_defaults=True))


class Catalog(Protocol):
    async def get(self, product_ids: Collection[str]) -> dict[str, Product]:
        """The known products among ``product_ids`` (unknown ids are left out)."""
        ...

    async def put(self, products: Sequence[Product]) -> dict[str, Product]:
        """Store ``products``; return the entries they replaced, by product id."""
        ...

    async def delete(self, product_ids: Collection[str]) -> None: ...

    async def count(self) -> int:
        """How many products are stored."""
        ...


class InMemoryCatalog:
    """Dict-backed :class:`Catalog` for tests, ``simulate`` and benchmarks."""

    def __init__(self, products: Iterable[Product] = ()) -> None:
        self.products = {p.product_id: p for p in products}

    async def get(self, product_ids: Collection[str]) -> dict[str, Product]:
        return {pid: self.products[pid] for pid in product_ids if pid in self.products}

    async def put(self, products: Sequence[Product]) -> dict[str, Product]:
        replaced = await self.get([p.product_id for p in products])
        self.products.update((p.product_id, p) for p in products)
        return replaced

    async def delete(self, product_ids: Collection[str]) -> None:
        for pid in product_ids:
            self.products.pop(pid, None)

    async def count(self) -> int:
        return len(self.products)

"""Write ``config/catalog.jsonl``: the products the demo and the bench workload name.

The 3,700 items of :class:`story.Catalogue` (seed 7, the workload's default) with the
workload's names, categories and prices, plus the four products of ``nudge dev --demo``;
each with a brand (a few per category), a URL, an image URL, and one in thirty out of
stock. Deterministic: run it again and the file is the same.

    .venv/bin/python bench/make_catalog.py [--out config/catalog.jsonl]
"""

from __future__ import annotations

import argparse
import random
import re
from collections.abc import Iterator
from pathlib import Path

from harness import REPO
from story import Catalogue

from profiles.catalog import Product, dump_product
from streams.demo import PRODUCTS

#: brands per category (the first is the house brand, most common)
BRANDS = {
    "cards": ("Paper Fox", "Inkwell", "Hallmarked"),
    "candles": ("Wick & Co", "Ember", "Lumen"),
    "mugs": ("Clayworks", "Brew Bros", "Paper Fox"),
    "jewellery": ("Silverleaf", "Aurelia", "Tindrum"),
    "toys": ("Tumble", "Woodpecker", "Kiddo"),
    "books": ("Dog-ear Press", "Marginalia"),
    "stationery": ("Inkwell", "Paper Fox", "Ledger"),
    "home": ("Nest", "Hearth", "Lumen"),
    "kitchen": ("Hearth", "Clayworks", "Copperpot"),
    "garden": ("Greenthumb", "Nest"),
    "apparel": ("Woolly", "Tindrum"),
}
SHOP = "https://giftshop.example"
CDN = "https://cdn.giftshop.example/img"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _product(
    pid: str, name: str, category: str, price: float, currency: str, rng: random.Random
) -> Product:
    brands = BRANDS[category]
    brand = brands[0] if rng.random() < 0.5 else rng.choice(brands)
    return Product(
        product_id=pid,
        name=name,
        category=category,
        brand=brand,
        price=price,
        currency=currency,
        url=f"{SHOP}/{category}/{_slug(name)}",
        image_url=f"{CDN}/{pid}.jpg",
        in_stock=rng.random() >= 1 / 30,
    )


def products(seed: int = 7) -> Iterator[Product]:
    """The demo's products (in stock, USD), then the workload's (EUR)."""
    rng = random.Random(f"catalog:{seed}")
    for pid, name, category, price in PRODUCTS:
        yield _product(pid, name, category, price, "USD", rng).model_copy(update={"in_stock": True})
    for item in Catalogue.build(seed).items:
        yield _product(item.product_id, item.name, item.category, item.price, "EUR", rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "config" / "catalog.jsonl")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = args.out
    out.write_bytes(b"".join(dump_product(p) + b"\n" for p in products(args.seed)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""The demo shop's catalog: clothing and footwear with cross-sell links between categories.

Compatible categories are what a stylist would suggest next (socks and shoe care after
shoes, belts after jeans), so the cross-sell scenarios and recommenders built later have
real structure to find. Seasonal weights and new arrivals make the catalog move in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

CURRENCY = "RUB"
SHOP_URL = "https://shop.example"


@dataclass(frozen=True)
class CategorySpec:
    id: str
    name: str
    parent: str
    noun: str
    price_range: tuple[int, int]
    compatible: tuple[str, ...]
    # "winter", "summer" or "" (all year): scales how often the category is browsed.
    season: str = ""
    sizes: tuple[str, ...] = ("XS", "S", "M", "L", "XL")


_SHOE_SIZES = ("36", "37", "38", "39", "40", "41", "42", "43", "44", "45")
_ONE_SIZE = ("one size",)

PARENTS = {"footwear": "Footwear", "clothing": "Clothing", "accessories": "Accessories"}

CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("sneakers", "Sneakers", "footwear", "sneakers", (5990, 16990), ("socks", "shoe-care", "hoodies"), sizes=_SHOE_SIZES),
    CategorySpec("boots", "Boots", "footwear", "boots", (7990, 24990), ("socks", "shoe-care", "coats"), "winter", _SHOE_SIZES),
    CategorySpec("shoes", "Shoes", "footwear", "shoes", (6990, 19990), ("socks", "shoe-care", "belts", "trousers"), sizes=_SHOE_SIZES),
    CategorySpec("sandals", "Sandals", "footwear", "sandals", (2990, 8990), ("dresses", "t-shirts"), "summer", _SHOE_SIZES),
    CategorySpec("jeans", "Jeans", "clothing", "jeans", (3990, 12990), ("belts", "t-shirts", "shirts", "sneakers"), sizes=("28", "30", "32", "34", "36")),
    CategorySpec("trousers", "Trousers", "clothing", "trousers", (3490, 10990), ("belts", "shirts", "shoes")),
    CategorySpec("t-shirts", "T-shirts", "clothing", "t-shirt", (990, 3990), ("jeans", "hoodies"), "summer"),
    CategorySpec("shirts", "Shirts", "clothing", "shirt", (2490, 7990), ("trousers", "jeans", "belts")),
    CategorySpec("sweaters", "Sweaters", "clothing", "sweater", (3490, 11990), ("jeans", "scarves"), "winter"),
    CategorySpec("hoodies", "Hoodies", "clothing", "hoodie", (2990, 8990), ("jeans", "sneakers")),
    CategorySpec("jackets", "Jackets", "clothing", "jacket", (6990, 22990), ("jeans", "sweaters", "hats")),
    CategorySpec("coats", "Coats", "clothing", "coat", (11990, 39990), ("scarves", "gloves", "hats", "boots"), "winter"),
    CategorySpec("dresses", "Dresses", "clothing", "dress", (3990, 14990), ("bags", "sandals", "shoes"), "summer"),
    CategorySpec("socks", "Socks", "accessories", "socks", (390, 1290), ("sneakers",), sizes=("35-38", "39-42", "43-46")),
    CategorySpec("shoe-care", "Shoe care", "accessories", "shoe care kit", (490, 1990), ("boots", "shoes"), sizes=_ONE_SIZE),
    CategorySpec("belts", "Belts", "accessories", "belt", (1490, 5990), ("jeans", "trousers"), sizes=("85", "90", "95", "100")),
    CategorySpec("bags", "Bags", "accessories", "bag", (2990, 15990), ("dresses",), sizes=_ONE_SIZE),
    CategorySpec("hats", "Hats", "accessories", "hat", (990, 3990), ("scarves", "gloves", "coats"), "winter", _ONE_SIZE),
    CategorySpec("scarves", "Scarves", "accessories", "scarf", (990, 4990), ("hats", "gloves", "coats"), "winter", _ONE_SIZE),
    CategorySpec("gloves", "Gloves", "accessories", "gloves", (990, 3990), ("hats", "scarves", "coats"), "winter", ("S", "M", "L")),
)  # fmt: skip

BRANDS = (
    "Nordvik", "Ulmo", "Kestrel", "Marlow", "Tundra & Co", "Velora",
    "Birchwood", "Saltmarsh", "Orbita", "Ladoga", "Fjell", "Cobalt Lane",
)  # fmt: skip
MODELS = (
    "Classic", "Urban", "Trail", "Slim", "Relaxed", "Merino", "Waxed", "Heritage",
    "Street", "Studio", "Alpine", "Coastal", "Everyday", "Weekend", "City", "Nomad",
)  # fmt: skip
COLORS = ("black", "white", "navy", "olive", "beige", "grey", "brown", "burgundy")


@dataclass
class Product:
    id: str
    sku: str
    name: str
    category: str
    brand: str
    price: float
    color: str
    sizes: tuple[str, ...]
    # Days after the history starts when it goes on sale; 0 for the opening assortment.
    arrives_day: int = 0
    compatible: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        return f"{SHOP_URL}/p/{self.id}"

    def properties(self) -> dict[str, Any]:
        """The Segment e-commerce product object the site would send for this product."""
        return {
            "product_id": self.id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "variant": self.color,
            "price": self.price,
            "currency": CURRENCY,
            "url": self.url,
            "image_url": f"{SHOP_URL}/img/{self.id}.jpg",
        }

    def record(self) -> dict[str, Any]:
        """The row for catalog.products.upsert_products."""
        return {
            "id": self.id,
            "sku": self.sku,
            "name": self.name,
            "category_id": self.category,
            "brand": self.brand,
            "price": self.price,
            "currency": CURRENCY,
            "url": self.url,
            "image_url": f"{SHOP_URL}/img/{self.id}.jpg",
            "attributes": {
                "color": self.color,
                "sizes": list(self.sizes),
                "new_arrival": self.arrives_day > 0,
            },
        }


def category_records() -> list[dict[str, Any]]:
    """Parents first, then leaves with their compatible categories (for upsert_categories)."""
    parents = [{"id": pid, "name": name, "parent_id": None} for pid, name in PARENTS.items()]
    leaves = [
        {"id": c.id, "name": c.name, "parent_id": c.parent, "compatible": list(c.compatible)}
        for c in CATEGORIES
    ]
    return parents + leaves


def _shop_price(value: float) -> float:
    """Shop prices end in 90: 4 990, not 4 973."""
    return float(max(390, round(value / 100) * 100 - 10))


def build_catalog(rng: np.random.Generator, days: int) -> list[Product]:
    """10–24 products per category; about one in eight arrives during the history."""
    items: list[Product] = []
    for spec in CATEGORIES:
        low, high = spec.price_range
        count = int(rng.integers(10, 25))
        for n in range(count):
            brand = BRANDS[int(rng.integers(len(BRANDS)))]
            model = MODELS[int(rng.integers(len(MODELS)))]
            color = COLORS[int(rng.integers(len(COLORS)))]
            # Log-uniform within the range: many affordable items, a few expensive ones.
            price = _shop_price(float(np.exp(rng.uniform(np.log(low), np.log(high)))))
            arrives = int(rng.integers(1, days)) if days > 1 and rng.random() < 0.12 else 0
            pid = f"{spec.id}-{n + 1:03d}"
            items.append(
                Product(
                    id=pid,
                    sku=f"{spec.id[:3].upper()}{n + 1:03d}-{color[:3].upper()}",
                    name=f"{brand} {model} {spec.noun}, {color}",
                    category=spec.id,
                    brand=brand,
                    price=price,
                    color=color,
                    sizes=spec.sizes,
                    arrives_day=arrives,
                    compatible=spec.compatible,
                )
            )
    return items


def season_weight(spec: CategorySpec, month: int) -> float:
    """How much more (or less) a seasonal category is browsed in a given month."""
    winter = month in (11, 12, 1, 2)
    summer = month in (5, 6, 7, 8)
    if spec.season == "winter":
        return 1.8 if winter else 0.4 if summer else 1.0
    if spec.season == "summer":
        return 1.8 if summer else 0.4 if winter else 1.0
    return 1.0


CATEGORY_BY_ID = {c.id: c for c in CATEGORIES}

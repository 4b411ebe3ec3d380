"""The demo bank's products: cards, savings, loans, insurance and investments.

A bank's catalog is small and changes rarely, so it is a fixed table, not a random draw.
Each product says what the bank would check before approving it (``min_score``, on the
300–850 scale of the scoring trait) and the range of the amount an application asks for
(a credit limit, a loan, a first deposit). ``price`` is the product's annual fee: what a
product page shows. Compatible categories are the bank's cross-sell map (card protection
after a card, investments after savings), so the recommenders have structure to find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rapport.demo.catalog import Product

CURRENCY = "RUB"
BANK_URL = "https://bank.example"
BANK_NAME = "Example Bank"
# Kinds of product: what happens after approval (a card is delivered and activated; the
# others are opened on the spot).
CARD, ACCOUNT, LOAN, POLICY = "card", "account", "loan", "policy"


@dataclass(frozen=True)
class BankCategory:
    id: str
    name: str
    parent: str
    compatible: tuple[str, ...]


PARENTS = {
    "cards": "Cards",
    "saving": "Savings and deposits",
    "credit": "Loans",
    "protection": "Insurance",
    "investing": "Investments",
}

CATEGORIES: tuple[BankCategory, ...] = (
    BankCategory("debit-cards", "Debit cards", "cards", ("savings", "insurance")),
    BankCategory("credit-cards", "Credit cards", "cards", ("insurance", "debit-cards")),
    BankCategory("savings", "Savings accounts and deposits", "saving", ("investments",)),
    BankCategory("loans", "Loans", "credit", ("insurance", "credit-cards")),
    BankCategory("insurance", "Insurance", "protection", ("savings",)),
    BankCategory("investments", "Investments", "investing", ("savings",)),
)


@dataclass
class BankProduct(Product):
    """A product of the bank, in the shop catalog's shape (the catalog tables are shared)."""

    kind: str = CARD
    min_score: int = 0
    amount_range: tuple[int, int] = (0, 0)

    @property
    def url(self) -> str:
        return f"{BANK_URL}/products/{self.id}"

    def properties(self) -> dict[str, Any]:
        """The Segment product object the bank's site sends for this product."""
        return {
            "product_id": self.id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
            "currency": CURRENCY,
            "url": self.url,
            "kind": self.kind,
        }

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sku": self.sku,
            "name": self.name,
            "category_id": self.category,
            "brand": self.brand,
            "price": self.price,
            "currency": CURRENCY,
            "url": self.url,
            "image_url": None,
            "attributes": {
                "kind": self.kind,
                "annual_fee": self.price,
                "new_arrival": self.arrives_day > 0,
            },
        }


# id, name, category, kind, annual fee, minimal score, amount range.
_TABLE: tuple[tuple[str, str, str, str, float, int, tuple[int, int]], ...] = (
    ("debit-classic", "Classic debit card", "debit-cards", CARD, 0, 0, (0, 0)),
    ("debit-cashback", "Cashback debit card", "debit-cards", CARD, 990, 0, (0, 0)),
    ("debit-premium", "Premium debit card", "debit-cards", CARD, 9990, 700, (0, 0)),
    ("credit-120", "Credit card, 120 days interest-free", "credit-cards", CARD, 990, 620, (30_000, 300_000)),
    ("credit-travel", "Travel credit card", "credit-cards", CARD, 2990, 700, (100_000, 700_000)),
    ("credit-instalment", "Instalment card", "credit-cards", CARD, 0, 600, (20_000, 150_000)),
    ("savings-account", "Savings account", "savings", ACCOUNT, 0, 0, (10_000, 500_000)),
    ("deposit-6m", "6-month deposit", "savings", ACCOUNT, 0, 0, (50_000, 1_000_000)),
    ("deposit-12m", "12-month deposit", "savings", ACCOUNT, 0, 0, (50_000, 2_000_000)),
    ("loan-cash", "Cash loan", "loans", LOAN, 0, 640, (50_000, 1_500_000)),
    ("loan-car", "Car loan", "loans", LOAN, 0, 680, (500_000, 3_000_000)),
    ("mortgage", "Mortgage", "loans", LOAN, 0, 700, (2_000_000, 15_000_000)),
    ("insurance-card", "Card protection", "insurance", POLICY, 1290, 0, (0, 0)),
    ("insurance-travel", "Travel insurance", "insurance", POLICY, 1990, 0, (0, 0)),
    ("insurance-life", "Life insurance", "insurance", POLICY, 9900, 0, (0, 0)),
    ("broker", "Brokerage account", "investments", ACCOUNT, 0, 0, (10_000, 1_000_000)),
    ("iis", "Individual investment account", "investments", ACCOUNT, 0, 0, (10_000, 400_000)),
)  # fmt: skip
# Goes on sale halfway through the bank's time: the catalog's one new arrival.
NEW_ARRIVAL = "credit-instalment"

CATEGORY_BY_ID = {c.id: c for c in CATEGORIES}


def build_bank_catalog(days: int) -> list[BankProduct]:
    """The fixed product table; the new arrival goes on sale on day ``days // 2``."""
    items = []
    for pid, name, category, kind, fee, min_score, amounts in _TABLE:
        items.append(
            BankProduct(
                id=pid,
                sku=pid.upper(),
                name=name,
                category=category,
                brand=BANK_NAME,
                price=float(fee),
                color="",
                sizes=(),
                arrives_day=max(days // 2, 1) if pid == NEW_ARRIVAL and days > 1 else 0,
                compatible=CATEGORY_BY_ID[category].compatible,
                kind=kind,
                min_score=min_score,
                amount_range=amounts,
            )
        )
    return items


def category_records() -> list[dict[str, Any]]:
    """Parents first, then the categories with their cross-sell links."""
    parents = [{"id": pid, "name": name, "parent_id": None} for pid, name in PARENTS.items()]
    leaves = [
        {"id": c.id, "name": c.name, "parent_id": c.parent, "compatible": list(c.compatible)}
        for c in CATEGORIES
    ]
    return parents + leaves

"""Random buckets for holdouts: a stable hash of the customer id (and a salt) into 0–99.

The same integer arithmetic runs in Python and in SQL (SQLite and PostgreSQL), so a
customer is in the same bucket whichever evaluator asks. All intermediate values stay
below 2**62, inside both stores' 64-bit integers:

    x = (id mod P + S) mod P                 S = sha256(salt) mod P
    x = ((x * x mod P) * 48271 + 16807) mod P
    bucket = x mod 100

with P = 2**31 - 1 (a prime). Squaring makes it non-linear, so consecutive ids do not walk
through the buckets in a fixed stride, and a different salt gives an independent split.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

P = 2_147_483_647
_A = 48_271
_C = 16_807


def salt_number(salt: str) -> int:
    return int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big") % P


def bucket_of(customer_id: int, salt: str = "") -> int:
    x = (customer_id % P + salt_number(salt)) % P
    x = ((x * x % P) * _A + _C) % P
    return x % 100


def bucket_sql(customer_id: ColumnElement[Any], salt: str = "") -> ColumnElement[Any]:
    def lit(n: int) -> ColumnElement[Any]:
        return sa.literal_column(str(int(n)), sa.BigInteger)

    x = (customer_id % lit(P) + lit(salt_number(salt))) % lit(P)
    x = ((x * x % lit(P)) * lit(_A) + lit(_C)) % lit(P)
    return x % lit(100)

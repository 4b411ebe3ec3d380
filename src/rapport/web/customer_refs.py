"""Who a row is about, for pages that list other things (ledger entries, codes, tasks):
the name and address of each customer named, read in one query, for a link to the card.

The page masks the address for a role without ``view_personal`` (``personal`` in the
templates); only the profile's own columns are read, nothing else of the card.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from rapport.store.tables import customers

_CHUNK = 500


@dataclass(frozen=True)
class CustomerRef:
    id: int
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


def customer_refs(conn: sa.Connection, ids: Iterable[int | None]) -> dict[int, CustomerRef]:
    """The customers among ``ids`` that exist (an erased or unknown id is left out)."""
    wanted = sorted({int(i) for i in ids if i is not None})
    c = customers.c
    found: dict[int, CustomerRef] = {}
    for start in range(0, len(wanted), _CHUNK):
        for row in conn.execute(
            sa.select(c.id, c.first_name, c.last_name, c.email, c.phone).where(
                c.id.in_(wanted[start : start + _CHUNK])
            )
        ):
            found[int(row.id)] = CustomerRef(
                int(row.id), row.first_name, row.last_name, row.email, row.phone
            )
    return found

"""Which order lines a series applies to: its categories and all their descendants.

"Shoes" in a series means every sub-category of shoes the catalog has now, so the
series never needs editing when the catalog grows. Descendants come from one recursive
query over ``categories.parent_id``; UNION (not UNION ALL) ends it even if the catalog
has a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from rapport.loyalty.coupons.model import SeriesSettings
from rapport.loyalty.order import Line
from rapport.store.tables import categories


def with_descendants(conn: sa.Connection, roots: Iterable[str]) -> set[str]:
    """The given category ids and every category under them."""
    roots = list(dict.fromkeys(roots))
    if not roots:
        return set()
    base = sa.select(categories.c.id).where(categories.c.id.in_(roots))
    tree = base.cte("tree", recursive=True)
    tree = tree.union(sa.select(categories.c.id).where(categories.c.parent_id == tree.c.id))
    found = set(conn.execute(sa.select(tree.c.id)).scalars())
    return found | set(roots)


def eligible_lines(
    conn: sa.Connection, settings: SeriesSettings, lines: Iterable[Line]
) -> list[Line]:
    """The lines the discount applies to. A line without a category passes unless the
    series has an include list (there is nothing to include it by)."""
    included = with_descendants(conn, settings.include_categories)
    excluded = with_descendants(conn, settings.exclude_categories)
    chosen = []
    for line in lines:
        if settings.include_categories and line.category_id not in included:
            continue
        if line.category_id is not None and line.category_id in excluded:
            continue
        chosen.append(line)
    return chosen

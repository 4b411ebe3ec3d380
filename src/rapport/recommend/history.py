"""A customer's history as the ranking reads it: recent purchases and views, newest first.

Two readers of the same rows: :func:`read_customer` for one request (the customer row,
their latest order lines and latest views in one ``UNION ALL`` statement, so checking
that the customer exists costs no round trip of its own), and :func:`read_histories` for
a batch (a campaign chunk's message blocks: two set-based queries per chunk of ids).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.customers.profile import live_id
from rapport.recommend.rank import History
from rapport.recommend.strategies import ServeOptions
from rapport.store.tables import customers, identities, order_lines, orders, product_views, products
from rapport.store.types import BigID, UTCDateTime

CHUNK = 5000  # ids per IN list, well under any bound-parameter limit
# Orders whose products are not offered again: kept or returned, the customer has them.
OWNED_STATUSES = ("completed", "refunded")

Match = Callable[[Any], Any]  # a customer id column → the condition that picks the rows


def _days(now: datetime, then: datetime) -> float:
    return max((now - then).total_seconds() / 86400.0, 0.0)


@dataclass
class _Reading:
    """One customer's history as its rows arrive, newest first (lines, then views)."""

    now: datetime
    options: ServeOptions
    history: History = field(default_factory=History)
    first_order: int | None = None

    def line(self, order_pk: int, status: str, at: datetime, pid: str, category: Any) -> None:
        h = self.history
        h.bought.add(pid)
        if status != "completed":
            return
        if self.first_order is None:
            self.first_order = order_pk
        if order_pk == self.first_order:
            h.last_order.append(pid)
        if len(h.purchases) < self.options.history_lines:
            h.purchases.append((pid, _days(self.now, at), category))

    def view(self, pid: str, count: int, at: datetime, category: Any) -> None:
        if len(self.history.views) < self.options.history_views:
            self.history.views.append((pid, int(count), _days(self.now, at), category))

    def done(self) -> History:
        h = self.history
        h.purchases = _distinct_purchases(h.purchases)
        h.last_order = list(dict.fromkeys(h.last_order))
        return h


def _line_order() -> list[Any]:
    """Newest order first; an order's lines in the order they were stored."""
    return [orders.c.occurred_at.desc(), orders.c.id.desc(), order_lines.c.id]


def _view_order() -> list[Any]:
    v = product_views.c
    return [v.last_viewed_at.desc(), v.views.desc(), v.product_id]


def _lines_select(customer_matches: Match) -> sa.Select[Any]:
    o, line, p = orders.c, order_lines.c, products.c
    return (
        sa.select(
            o.customer_id,
            o.id,
            o.status,
            o.occurred_at,
            line.product_id,
            sa.func.coalesce(p.category_id, line.category_id),
        )
        .select_from(
            orders.join(order_lines, line.order_pk == o.id).outerjoin(
                products, p.id == line.product_id
            )
        )
        .where(customer_matches(o.customer_id), o.status.in_(OWNED_STATUSES))
    )


def _views_select(customer_matches: Match) -> sa.Select[Any]:
    v, p = product_views.c, products.c
    return (
        sa.select(v.customer_id, v.product_id, v.views, v.last_viewed_at, p.category_id)
        .select_from(product_views.outerjoin(products, p.id == v.product_id))
        .where(customer_matches(v.customer_id))
    )


def read_histories(
    conn: sa.Connection,
    customer_ids: Sequence[int],
    now: datetime,
    options: ServeOptions | None = None,
) -> dict[int, History]:
    """Each customer's purchases and views as :class:`History` (empty for none), two
    set-based queries per chunk of customers."""
    options = options or ServeOptions()
    ids = list(dict.fromkeys(int(c) for c in customer_ids))
    reading = {cid: _Reading(now, options) for cid in ids}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]

        def in_chunk(column: Any, chunk: list[int] = chunk) -> Any:
            return column.in_(chunk)

        lines = _lines_select(in_chunk).order_by(orders.c.customer_id, *_line_order())
        for cid, order_pk, status, at, pid, category in conn.execute(lines):
            reading[int(cid)].line(int(order_pk), status, at, pid, category)
        views = _views_select(in_chunk).order_by(product_views.c.customer_id, *_view_order())
        for cid, pid, count, at, category in conn.execute(views):
            reading[int(cid)].view(pid, count, at, category)
    return {cid: r.done() for cid, r in reading.items()}


def _null(type_: Any, name: str) -> Any:
    return sa.cast(sa.null(), type_).label(name)


def _constant(value: int, name: str) -> Any:
    return sa.literal_column(str(int(value)), sa.Integer()).label(name)


@functools.cache
def _customer_statement(by_user_id: bool) -> sa.CompoundSelect:
    """The customer's latest order lines, latest views and row as one statement:
    (part, seq, customer_id, ref, status, at, product_id, category, views), ordered.
    ``ref`` is the order's id for a line, ``merged_into`` for the customer.

    Built once per way of naming the customer (parameters ``who`` or ``user_id``, and
    the ``lines`` and ``views`` to read): building it costs more than running it."""
    who: Any = sa.bindparam("who", type_=BigID)
    if by_user_id:
        i = identities.c
        who = (
            sa.select(i.customer_id)
            .where(i.kind == "user_id", i.value == sa.bindparam("user_id", type_=sa.String()))
            .scalar_subquery()
        )

    def matches(column: Any) -> Any:
        return column == who

    number = sa.func.row_number
    lines = (
        _lines_select(matches)
        .add_columns(number().over(order_by=_line_order()).label("seq"))
        .order_by(*_line_order())
        .limit(sa.bindparam("lines", type_=sa.Integer()))
        .subquery()
    )
    views = (
        _views_select(matches)
        .add_columns(number().over(order_by=_view_order()).label("seq"))
        .order_by(*_view_order())
        .limit(sa.bindparam("views", type_=sa.Integer()))
        .subquery()
    )
    lc, vc, c = list(lines.c), list(views.c), customers.c
    text = sa.String()
    statement = sa.union_all(
        sa.select(
            _constant(0, "part"),
            lc[6].label("seq"),
            lc[0].label("customer_id"),
            lc[1].label("ref"),
            lc[2].label("status"),
            lc[3].label("at"),
            lc[4].label("product_id"),
            lc[5].label("category"),
            _null(sa.Integer(), "views"),
        ),
        sa.select(
            _constant(1, "part"),
            vc[5].label("seq"),
            vc[0].label("customer_id"),
            _null(BigID, "ref"),
            _null(text, "status"),
            vc[3].label("at"),
            vc[1].label("product_id"),
            vc[4].label("category"),
            vc[2].label("views"),
        ),
        sa.select(
            _constant(2, "part"),
            _constant(0, "seq"),
            c.id.label("customer_id"),
            c.merged_into.label("ref"),
            _null(text, "status"),
            _null(UTCDateTime(), "at"),
            _null(text, "product_id"),
            _null(text, "category"),
            _null(sa.Integer(), "views"),
        ).where(matches(c.id)),
    )
    return statement.order_by(sa.literal_column("part"), sa.literal_column("seq"))


def read_customer(
    conn: sa.Connection,
    now: datetime,
    *,
    customer_id: int | None = None,
    user_id: str | None = None,
    options: ServeOptions | None = None,
) -> tuple[int, History] | None:
    """The live customer (by Rapport id or the site's ``user_id``) and their history, in
    one statement; None when there is no such customer. A merged profile answers for
    its survivor (read again under the survivor's id: merges are rare)."""
    options = options or ServeOptions()
    if (customer_id is None) == (user_id is None):
        raise ValueError("name the customer by customer_id or by user_id")
    params: dict[str, Any] = {"lines": options.history_lines, "views": options.history_views}
    if user_id is not None:
        params["user_id"] = user_id
    else:
        params["who"] = customer_id
    reading = _Reading(now, options)
    found: tuple[int, Any] | None = None
    rows = conn.execute(_customer_statement(user_id is not None), params)
    for part, _, cid, ref, status, at, pid, category, views in rows:
        if part == 0:
            reading.line(int(ref), status, at, pid, category)
        elif part == 1:
            reading.view(pid, views, at, category)
        else:
            found = (int(cid), ref)
    if found is None:
        return None
    cid, merged_into = found
    if merged_into is None:
        return cid, reading.done()
    survivor = live_id(conn, int(merged_into))
    if survivor is None:
        return None
    return read_customer(conn, now, customer_id=survivor, options=options)


def _distinct_purchases(
    purchases: list[tuple[str, float, str | None]],
) -> list[tuple[str, float, str | None]]:
    seen: set[str] = set()
    out = []
    for item in purchases:
        if item[0] not in seen:
            seen.add(item[0])
            out.append(item)
    return out

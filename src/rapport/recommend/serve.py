"""Answer requests from the stored lists: a few indexed reads, whatever the shop's size.

One API request costs three statements: the customer with their order lines and views
(one ``UNION ALL``, :func:`read_customer`), every list the ranking may read (one more,
:class:`StoredLists`), and the rows of the best candidates (:func:`product_rows`). Lists
that are read in order (popular, new arrivals, compatible, every fallback) are read only
as deep as the answer can reach (``rank.reads``); the rest of one is read only when a
stream runs past it, which unavailable products can cause. Neighbour lists are summed,
so they are read whole. The build's record is kept in memory (:class:`BuildStamp`).

For a batch of asks (a campaign chunk's message blocks), :func:`read_histories` reads
every customer's history set-based instead, and the rest is shared (history.py).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rapport.recommend.availability import is_available
from rapport.recommend.build import last_build
from rapport.recommend.history import read_customer, read_histories
from rapport.recommend.rank import Ask, Candidate, candidates, reads
from rapport.recommend.strategies import ServeOptions
from rapport.store.tables import products, rec_lists

CHUNK = 5000  # ids per IN list, well under any bound-parameter limit

ListName = tuple[str, str]  # (kind, list key)
# Histories are read in history.py; importers of the serving find them here too.
__all__ = [
    "BuildStamp",
    "Pick",
    "StoredLists",
    "product_rows",
    "read_customer",
    "read_histories",
    "recommend",
    "recommend_many",
]


@dataclass(frozen=True)
class Pick:
    """One recommended product: its catalog row, who served it, and the score there."""

    product: dict[str, Any]
    strategy: str
    score: float

    def as_block(self) -> dict[str, Any]:
        """The product as templates see ``products`` items, plus strategy and score."""
        return {**self.product, "strategy": self.strategy, "score": self.score}


# ------------------------------------------------------------------ lists


class StoredLists:
    """The lists a batch of asks reads: every one in one statement, each at least to the
    depth its asks can reach; a list cut at a depth reads its rest when a stream runs
    past it (products that sold out since the build can make one)."""

    def __init__(self, conn: sa.Connection, wanted: Sequence[tuple[str, str, int | None]]):
        self._conn = conn
        # Lists of a kind are read to one depth, the deepest any of them needs: one
        # SELECT per kind (a batch's popular lists are read a little deeper than some
        # need, and the statement's shape stays one of a few, each built once).
        whole = {(kind, key) for kind, key, d in wanted if d is None}
        depth: dict[str, int | None] = {}
        self.rows: dict[ListName, list[tuple[str, float]]] = {}
        for kind, key, d in wanted:
            if (kind, key) not in whole:
                depth[kind] = max(depth.get(kind) or 0, d or 0)
            self.rows[(kind, key)] = []
        groups: dict[tuple[str, int | None], list[str]] = {}
        for kind, key in self.rows:
            reach = None if (kind, key) in whole else depth[kind]
            groups.setdefault((kind, reach), []).append(key)
        parts: list[tuple[str, list[str], int | None]] = []
        for (kind, reach), keys in groups.items():
            parts += [(kind, keys[i : i + CHUNK], reach) for i in range(0, len(keys), CHUNK)]
        batch: list[tuple[str, list[str], int | None]] = []
        for part in parts:
            if batch and sum(len(p[1]) for p in batch) + len(part[1]) > CHUNK:
                self._read(batch)
                batch = []
            batch.append(part)
        if batch:
            self._read(batch)
        self.cut: set[ListName] = set()  # filled the depth they were read to: may go on
        for kind, names, reach in parts:
            if reach is not None:
                self.cut.update((kind, k) for k in names if len(self.rows[(kind, k)]) >= reach)

    def _read(self, parts: list[tuple[str, list[str], int | None]]) -> None:
        """Several kinds' lists in one statement (a SELECT each, joined by UNION ALL)."""
        params: dict[str, Any] = {}
        for n, (kind, keys, reach) in enumerate(parts):
            params.update({f"kind{n}": kind, f"keys{n}": keys})
            if reach is not None:
                params[f"depth{n}"] = reach
        shape = tuple(reach is not None for _, _, reach in parts)
        for kind, key, _, pid, score in self._conn.execute(_lists_statement(shape), params):
            self.rows[(kind, key)].append((pid, float(score)))

    def get(self, kind: str, key: str) -> Iterator[tuple[str, float]]:
        """One list, best first, its rest read the first time any stream needs it."""
        name = (kind, key)
        at = 0
        while True:
            rows = self.rows.get(name, [])
            while at < len(rows):
                yield rows[at]
                at += 1
            if name not in self.cut:
                return
            self._read_rest(name)

    def _read_rest(self, name: ListName) -> None:
        kind, key = name
        self.cut.discard(name)
        params = {"kind": kind, "key": key, "start": len(self.rows[name])}
        rows = self._conn.execute(_rest_statement(), params)
        self.rows[name].extend((pid, float(score)) for pid, score in rows)


@functools.cache
def _lists_statement(shape: tuple[bool, ...]) -> sa.Select[Any] | sa.CompoundSelect:
    """(kind, list_key, position, product_id, score) of the lists of ``len(shape)``
    kinds: parameters ``kind<n>`` and ``keys<n>``, and ``depth<n>`` where ``shape[n]``
    (else whole lists); ordered by list and position. Built once per shape."""
    r = rec_lists.c
    selects = []
    for n, to_depth in enumerate(shape):
        query = sa.select(r.kind, r.list_key, r.position, r.product_id, r.score).where(
            r.kind == sa.bindparam(f"kind{n}", type_=sa.String()),
            r.list_key.in_(sa.bindparam(f"keys{n}", expanding=True, type_=sa.String())),
        )
        if to_depth:
            query = query.where(r.position < sa.bindparam(f"depth{n}", type_=sa.Integer()))
        selects.append(query)
    if len(selects) == 1:
        return selects[0].order_by(r.kind, r.list_key, r.position)
    order: list[Any] = [sa.literal_column(c) for c in ("kind", "list_key", "position")]
    return sa.union_all(*selects).order_by(*order)


@functools.cache
def _rest_statement() -> sa.Select[Any]:
    """One list (``kind``, ``key``) from position ``start`` on."""
    r = rec_lists.c
    return (
        sa.select(r.product_id, r.score)
        .where(
            r.kind == sa.bindparam("kind", type_=sa.String()),
            r.list_key == sa.bindparam("key", type_=sa.String()),
            r.position >= sa.bindparam("start", type_=sa.Integer()),
        )
        .order_by(r.position)
    )


# ------------------------------------------------------------------ products


def product_rows(conn: sa.Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), CHUNK):
        rows = conn.execute(_products_statement(), {"ids": unique[start : start + CHUNK]})
        found.update({str(r.id): dict(zip(_PRODUCT_COLUMNS, r, strict=True)) for r in rows})
    return found


# The columns of ``SELECT products``, as plain str (JSON encoders take exactly str keys).
_PRODUCT_COLUMNS = [str(c.name) for c in products.columns]


@functools.cache
def _products_statement() -> sa.Select[Any]:
    return sa.select(products).where(
        products.c.id.in_(sa.bindparam("ids", expanding=True, type_=sa.String()))
    )


def first_round(limit: int) -> int:
    """Candidates the first round checks against the catalog: the limit and a margin.
    The build leaves unavailable products out of every list, so only those that sold
    out since miss; one product read fills nearly every answer, and a short one reads
    again (twice what is missing, and ten more)."""
    return limit + max(5, limit // 4)


def recommend_many(
    conn: sa.Connection, asks: Sequence[Ask], options: ServeOptions | None = None
) -> list[list[Pick]]:
    """The picks for each ask, in order; available catalog products only."""
    options = options or ServeOptions()
    first = [first_round(a.limit) for a in asks]
    stored = StoredLists(
        conn, [need for a, n in zip(asks, first, strict=True) for need in reads(a, options, n)]
    )
    streams = [candidates(a, stored.get, options) for a in asks]
    picks: list[list[Pick]] = [[] for _ in asks]
    rows: dict[str, dict[str, Any] | None] = {}
    open_asks = list(range(len(asks)))
    rounds = 0
    while open_asks:
        pending: dict[int, list[Candidate]] = {}
        for i in open_asks:
            want = max(asks[i].limit - len(picks[i]), 0)
            size = first[i] if rounds == 0 else 2 * want + 10
            batch = []
            for c in streams[i]:
                batch.append(c)
                if len(batch) >= size:
                    break
            pending[i] = batch
        rounds += 1
        missing = [c.product_id for b in pending.values() for c in b if c.product_id not in rows]
        if missing:
            found = product_rows(conn, missing)
            for pid in missing:
                row = found.get(pid)
                rows[pid] = row if row is not None and is_available(row["attributes"]) else None
        still_open = []
        for i, batch in pending.items():
            for c in batch:
                row = rows.get(c.product_id)
                if row is not None and len(picks[i]) < asks[i].limit:
                    picks[i].append(Pick(row, c.strategy, c.score))
            if batch and len(picks[i]) < asks[i].limit:
                still_open.append(i)
        open_asks = still_open
    return picks


def recommend(conn: sa.Connection, ask: Ask, options: ServeOptions | None = None) -> list[Pick]:
    return recommend_many(conn, [ask], options)[0]


# ------------------------------------------------------------------ the build's record


class BuildStamp:
    """The last build's record (``built_at`` …), kept in memory and read again at most
    once every ``max_age`` seconds, so a request does not pay a statement for it. An
    answer may name the previous build for up to ``max_age`` seconds after a rebuild
    committed (the lists themselves are always read from the store).

    ``clock`` is a monotonic clock in seconds, replaceable by tests.
    """

    def __init__(self, max_age: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._record: dict[str, Any] | None = None
        self._read_at: float | None = None

    def get(self, conn: sa.Connection) -> dict[str, Any] | None:
        """The record (None before the first build), read from ``conn`` when stale."""
        now = self._clock()
        with self._lock:
            fresh = self._read_at is not None and now - self._read_at < self.max_age
            if fresh:
                return self._record
        record = last_build(conn)
        with self._lock:
            self._record, self._read_at = record, now
        return record

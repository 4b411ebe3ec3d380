"""Answer requests from the stored lists: a few indexed reads, whatever the shop's size.

One API request costs one or two statements (:func:`recommend`): the customer with their
order lines and views (one ``UNION ALL``, :func:`read_customer`) when a customer is
named, and one statement (:class:`RequestLists`) that reads, for the candidates an answer
can reach, the lists with each product's catalog row, the asked product's row (its
category names the lists a product page reads, and its absence is the 404), and on
PostgreSQL the neighbour lists already summed. Lists read in order (popular, new
arrivals, compatible, every fallback) are read only as deep as the answer can reach
(``rank.plan``), and a fallback list only when the lists before it ran short; whatever a
stream runs past is read when it gets there, which unavailable products can cause.

For a batch of asks (a campaign chunk's message blocks), :func:`read_histories` reads
every customer's history set-based, :class:`StoredLists` every list the batch needs in
one statement, and the products come in one more (:func:`recommend_many`). The build's
record is kept in memory (:class:`BuildStamp`).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from rapport.recommend.availability import is_available
from rapport.recommend.build import last_build
from rapport.recommend.history import read_customer, read_histories
from rapport.recommend.rank import Ask, Candidate, candidates, plan, reads
from rapport.recommend.strategies import ServeOptions
from rapport.store.tables import products, rec_lists

CHUNK = 5000  # ids per IN list, well under any bound-parameter limit

ListName = tuple[str, str]  # (kind, list key)
# Histories are read in history.py; importers of the serving find them here too.
__all__ = [
    "BuildStamp",
    "Pick",
    "RequestLists",
    "StoredLists",
    "UnknownProduct",
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


class _Lists:
    """Lists read so far, each best first. A list in ``cut`` may go on past what was read
    (it filled the depth it was read to, or was not read yet): the rest is read the first
    time a stream runs past it."""

    def __init__(self, conn: sa.Connection):
        self._conn = conn
        self.rows: dict[ListName, list[tuple[str, float]]] = {}
        self.cut: set[ListName] = set()

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
        got = self.rows.setdefault(name, [])
        params = {"kind": kind, "key": key, "start": len(got)}
        got.extend((pid, float(score)) for pid, score in self._conn.execute(_rest(), params))


class StoredLists(_Lists):
    """The lists a batch of asks reads: every one in one statement, each at least to the
    depth its asks can reach; a list cut at a depth reads its rest when a stream runs
    past it (products that sold out since the build can make one)."""

    def __init__(self, conn: sa.Connection, wanted: Sequence[tuple[str, str, int | None]]):
        super().__init__(conn)
        # Lists of a kind are read to one depth, the deepest any of them needs: one
        # SELECT per kind (a batch's popular lists are read a little deeper than some
        # need, and the statement's shape stays one of a few, each built once).
        whole = {(kind, key) for kind, key, d in wanted if d is None}
        depth: dict[str, int | None] = {}
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
def _rest() -> sa.Select[Any]:
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


# ------------------------------------------------------------------ one request


class UnknownProduct(LookupError):
    """The asked product is not in the catalog."""


# Stands for the asked product's category while the request's statement finds it.
_ASKED_CATEGORY = "\x00the asked product's category"

# Parts of a request's statement, in the order it returns them.
_PRODUCT, _SUMMED, _LIST, _NEIGHBOURS, _ITEMS = range(5)


@dataclass(frozen=True)
class _Shape:
    """What a request's statement holds; one statement is built per shape."""

    postgres: bool
    product: bool  # the asked product's row
    neighbours: str  # "sum" / "one" (summed in the database: seeds, one seed), "whole" or ""
    lists: tuple[bool, ...]  # lists read in order; True: keyed by the asked product's category
    own: int  # how many of ``lists`` are the strategy's own (read in any case)
    items: bool  # catalog rows of products known already


class RequestLists(_Lists):
    """Everything one ask's first round of candidates needs, in one statement.

    * the lists the stream reads in order (its own, then the fallbacks), each to the
      plan's depth, every row with its product's catalog row (a left join, so a product
      missing from the catalog comes back as none); a fallback list only when every
      list before it came back short — when one did not, the stream's first round ends
      before the next list, and the later ones are read when a stream gets there;
    * the neighbour strategies' lists: on PostgreSQL summed by the database (an ordered
      aggregate adds the terms in the order ``rank._weighted_sum`` does, so the floats
      are the same), the customer's products left out, the best ``wanted`` with their
      rows, the rest read if a stream runs past them; on SQLite, which has no ordered
      aggregate before 3.44 and sums with compensation from 3.43, read whole and summed
      by ``rank``;
    * the catalog rows of the products the strategy starts from (the views of
      ``viewed_not_bought``);
    * with ``find_category``, the asked product's row: its category names the lists of a
      product page (``UnknownProduct`` when it is missing).
    """

    def __init__(
        self,
        conn: sa.Connection,
        ask: Ask,
        options: ServeOptions,
        wanted: int,
        *,
        find_category: bool = False,
    ):
        super().__init__(conn)
        if find_category and ask.product is not None:
            ask = dataclasses.replace(ask, product_category=_ASKED_CATEGORY)
        else:
            find_category = False
        self.ask = ask
        self.products: dict[str, dict[str, Any] | None] = {}
        self._plan = p = plan(ask, options, wanted)
        postgres = conn.dialect.name == "postgresql"
        neighbours = ask.strategy if p.seeds else None
        self._summing = postgres and bool(neighbours)  # the database sums the neighbours
        self._summed: list[tuple[str, float]] = []
        self._summed_cut = False
        # Fallbacks cannot be reached in the first round when the strategy's own known
        # products fill it: they are left for a stream that runs past.
        own_fills = len(p.items) >= wanted
        ordered = p.own + ([] if own_fills else p.fallbacks)
        shape = _Shape(
            postgres=postgres,
            product=find_category,
            neighbours=_neighbours_form(postgres, len(p.seeds)),
            lists=tuple(key == _ASKED_CATEGORY for _, key in ordered),
            own=len(p.own),
            items=bool(p.items),
        )
        params: dict[str, Any] = {"depth": p.depth, "last": p.depth - 1, "wanted": wanted}
        if find_category:
            params["product"] = ask.product
        if neighbours:
            params.update(neighbours=neighbours, skip=sorted(p.skip))
            params.update(_seed_params(p.seeds) if postgres else {"seeds": list(p.seeds)})
        for n, (kind, key) in enumerate(ordered):
            params[f"kind{n}"] = kind
            if key != _ASKED_CATEGORY:
                params[f"key{n}"] = key
        if p.items:
            params["items"] = p.items
        found: dict[str, Any] | None = None
        got: list[list[tuple[str, float]]] = [[] for _ in ordered]
        whole: dict[str, list[tuple[str, float]]] = {key: [] for key in p.seeds}
        result = conn.execute(_request_statement(shape), params)
        for part, n, key, pid, score, _position, *row in result:
            if part == _NEIGHBOURS:
                whole[key].append((pid, float(score)))
                continue
            product = dict(zip(_PRODUCT_COLUMNS, row, strict=True)) if row[0] else None
            if part == _PRODUCT:
                found = product
                continue
            self.products[pid] = product
            if part == _SUMMED:
                self._summed.append((pid, float(score)))
            elif part == _LIST:
                got[n].append((pid, float(score)))
        category = ask.product_category
        if find_category:
            if found is None:
                raise UnknownProduct(ask.product)
            category = found["category_id"]
            self.ask = dataclasses.replace(ask, product_category=category)

        def named(kind: str, key: str) -> ListName | None:
            """The list's name, the asked product's category put in (None: it has none)."""
            if key != _ASKED_CATEGORY:
                return kind, key
            return (kind, category) if category is not None else None

        self._summed.sort(key=lambda kv: (-kv[1], kv[0]))  # the order rank sums in
        self._summed_cut = len(self._summed) >= wanted
        if neighbours and not postgres:
            for key, read in whole.items():
                self.rows[(neighbours, key)] = read
        # Which lists came back: the strategy's own always; a fallback while every list
        # before it came back short (the statement's own conditions, from the same rows).
        short = len(p.items) < wanted
        if neighbours:
            if postgres:
                short = not self._summed_cut
            else:
                distinct = {pid for rows in whole.values() for pid, _ in rows} - p.skip
                short = len(distinct) < wanted
        own_short = True
        for n, (kind, key) in enumerate(ordered):
            came = n < len(p.own) or short
            was_short = len(got[n]) < p.depth
            if n < len(p.own):
                own_short = own_short and was_short
                if n == len(p.own) - 1:
                    short = short and own_short
            else:
                short = short and was_short
            name = named(kind, key)
            if name is None or name in self.rows:  # no such list, or the same one again
                continue
            self.rows[name] = got[n] if came else []
            if not came or not was_short:
                self.cut.add(name)
        for kind, key in p.fallbacks if own_fills else []:
            name = named(kind, key)
            if name is not None and name not in self.rows:
                self.rows[name] = []
                self.cut.add(name)

    def sums(self, kind: str) -> Iterator[tuple[str, float]]:
        """The neighbour strategy's candidates summed by the database, best first; the
        rest read the first time a stream runs past the first ``wanted``."""
        at = 0
        while True:
            while at < len(self._summed):
                yield self._summed[at]
                at += 1
            if not self._summed_cut:
                return
            self._summed_cut = False
            p = self._plan
            params = {"neighbours": kind, "skip": sorted(p.skip), "start": len(self._summed)}
            params.update(_seed_params(p.seeds))
            rest = self._conn.execute(_summed_rest(len(p.seeds) == 1), params)
            self._summed.extend((pid, float(score)) for pid, score in rest)

    def stream(self, options: ServeOptions) -> Iterator[Candidate]:
        """The ask's candidates (``rank.candidates``) over what this statement read."""
        return candidates(self.ask, self.get, options, self.sums if self._summing else None)


def _neighbours_form(postgres: bool, seeds: int) -> str:
    if not seeds:
        return ""
    if not postgres:
        return "whole"
    return "one" if seeds == 1 else "sum"


def _product_columns(table: Any) -> list[Any]:
    return [table.c[name].label(f"p_{name}") for name in _PRODUCT_COLUMNS]


def _no_product() -> list[Any]:
    return [sa.cast(sa.null(), c.type).label(f"p_{c.name}") for c in products.columns]


def _constant(value: int, name: str) -> Any:
    return sa.literal_column(str(int(value)), sa.Integer()).label(name)


def _text_param(name: str, postgres: bool) -> Any:
    """A list of strings as one parameter: an array on PostgreSQL (one statement text
    whatever the length, so the server prepares it once), an expanding IN on SQLite."""
    if postgres:
        return sa.bindparam(name, type_=postgresql.ARRAY(sa.String()))
    return sa.bindparam(name, expanding=True, type_=sa.String())


def _is_in(column: Any, name: str, postgres: bool) -> Any:
    if postgres:
        return column == sa.any_(_text_param(name, True))
    return column.in_(_text_param(name, False))


def _not_in(column: Any, name: str, postgres: bool) -> Any:
    if postgres:
        return column != sa.all_(_text_param(name, True))
    return column.not_in(_text_param(name, False))


def _summed(first: bool, one_seed: bool) -> sa.Select[Any]:
    """A neighbour strategy's lists summed (PostgreSQL): Σ weight · score per product in
    seed order, the skipped products left out, best first (ties: the lower id, compared
    as code points); the best ``wanted`` (``first``), or from ``start`` on.

    One seed (a product page) is its own statement: no sum (``0.0 + w · s`` is ``w · s``)
    and no array to unnest, whose length a prepared statement's generic plan cannot know —
    the server would otherwise plan every execution anew (a tenth of a millisecond of
    running against most of a millisecond of planning)."""
    r = rec_lists.alias("neighbour")
    mine = r.c.kind == sa.bindparam("neighbours", type_=sa.String())
    if one_seed:
        total = sa.bindparam("weight", type_=sa.Float()) * r.c.score
        query = sa.select(r.c.product_id, total.label("score")).where(
            mine,
            r.c.list_key == sa.bindparam("seed", type_=sa.String()),
            _not_in(r.c.product_id, "skip", True),
        )
    else:
        seeds = (
            sa.func.unnest(
                sa.bindparam("seeds", type_=postgresql.ARRAY(sa.String())),
                sa.bindparam("weights", type_=postgresql.ARRAY(sa.Float())),
            )
            .table_valued(
                sa.column("list_key", sa.String()),
                sa.column("weight", sa.Float()),
                with_ordinality="seq",
            )
            .render_derived(name="seeds")
        )
        term = seeds.c.weight * r.c.score
        total = sa.func.sum(postgresql.aggregate_order_by(term, seeds.c.seq), type_=sa.Float())
        query = (
            sa.select(r.c.product_id, total.label("score"))
            .select_from(seeds.join(r, sa.and_(mine, r.c.list_key == seeds.c.list_key)))
            .where(_not_in(r.c.product_id, "skip", True))
            .group_by(r.c.product_id)
        )
    query = query.order_by(sa.desc("score"), r.c.product_id.collate("C"))
    if first:
        return query.limit(sa.bindparam("wanted", type_=sa.Integer()))
    return query.offset(sa.bindparam("start", type_=sa.Integer()))


@functools.cache
def _summed_rest(one_seed: bool) -> sa.Select[Any]:
    return _summed(False, one_seed)


def _seed_params(seeds: dict[str, float]) -> dict[str, Any]:
    """The seeds of a sum summed by the database, as ``_summed`` takes them."""
    if len(seeds) == 1:
        ((seed, weight),) = seeds.items()
        return {"seed": seed, "weight": weight}
    return {"seeds": list(seeds), "weights": list(seeds.values())}


@functools.lru_cache(maxsize=256)
def _request_statement(shape: _Shape) -> sa.CompoundSelect:
    """One request's statement: (part, n, list_key, product_id, score, p_<column>…),
    ordered by part, n, list key and position. Built once per shape."""
    pg = shape.postgres
    parts: list[sa.Select[Any]] = []
    asked_category = (
        sa.select(products.c.category_id)
        .where(products.c.id == sa.bindparam("product", type_=sa.String()))
        .scalar_subquery()
    )

    def head(part: int, n: int, key: Any, pid: Any, score: Any, position: Any) -> list[Any]:
        return [
            _constant(part, "part"),
            _constant(n, "n"),
            key.label("list_key"),
            pid.label("product_id"),
            score.label("score"),
            position.label("position"),
        ]

    null_text = sa.cast(sa.null(), sa.String())
    null_float = sa.cast(sa.null(), sa.Float())
    null_int = sa.cast(sa.null(), sa.Integer())
    if shape.product:
        p = products.alias("asked")
        parts.append(
            sa.select(*head(_PRODUCT, 0, null_text, p.c.id, null_float, null_int))
            .add_columns(*_product_columns(p))
            .where(p.c.id == sa.bindparam("product", type_=sa.String()))
        )
    # Whether the strategy's own candidates came back short (fallbacks are read then).
    own_short: list[Any] = []
    if shape.neighbours in ("sum", "one"):
        summed = _summed(True, shape.neighbours == "one").cte("summed")
        p = products.alias("summed_product")
        parts.append(
            sa.select(*head(_SUMMED, 0, null_text, summed.c.product_id, summed.c.score, null_int))
            .add_columns(*_product_columns(p))
            .select_from(summed.outerjoin(p, p.c.id == summed.c.product_id))
        )
        count = sa.select(sa.func.count()).select_from(summed).scalar_subquery()
        own_short.append(count < sa.bindparam("wanted", type_=sa.Integer()))
    elif shape.neighbours == "whole":
        r = rec_lists.alias("neighbour")
        mine = sa.and_(
            r.c.kind == sa.bindparam("neighbours", type_=sa.String()),
            _is_in(r.c.list_key, "seeds", pg),
        )
        parts.append(
            sa.select(*head(_NEIGHBOURS, 0, r.c.list_key, r.c.product_id, r.c.score, r.c.position))
            .add_columns(*_no_product())
            .where(mine)
        )
        x = rec_lists.alias("neighbour_count")
        distinct = (
            sa.select(sa.func.count(sa.distinct(x.c.product_id)))
            .where(
                x.c.kind == sa.bindparam("neighbours", type_=sa.String()),
                _is_in(x.c.list_key, "seeds", pg),
                _not_in(x.c.product_id, "skip", pg),
            )
            .scalar_subquery()
        )
        own_short.append(distinct < sa.bindparam("wanted", type_=sa.Integer()))

    def key_of(n: int) -> Any:
        if shape.lists[n]:
            return asked_category
        return sa.bindparam(f"key{n}", type_=sa.String())

    def short(n: int) -> Any:
        """List n has no row at the last position the first round can reach."""
        x = rec_lists.alias(f"probe{n}")
        return ~sa.exists().where(
            x.c.kind == sa.bindparam(f"kind{n}", type_=sa.String()),
            x.c.list_key == key_of(n),
            x.c.position == sa.bindparam("last", type_=sa.Integer()),
        )

    for n in range(len(shape.lists)):
        r = rec_lists.alias(f"list{n}")
        p = products.alias(f"product{n}")
        waits = [] if n < shape.own else [*own_short, *(short(m) for m in range(n))]
        parts.append(
            sa.select(*head(_LIST, n, r.c.list_key, r.c.product_id, r.c.score, r.c.position))
            .add_columns(*_product_columns(p))
            .select_from(r.outerjoin(p, p.c.id == r.c.product_id))
            .where(
                r.c.kind == sa.bindparam(f"kind{n}", type_=sa.String()),
                r.c.list_key == key_of(n),
                r.c.position < sa.bindparam("depth", type_=sa.Integer()),
                *waits,
            )
        )
    if shape.items:
        p = products.alias("item")
        parts.append(
            sa.select(*head(_ITEMS, 0, null_text, p.c.id, null_float, null_int))
            .add_columns(*_product_columns(p))
            .where(_is_in(p.c.id, "items", pg))
        )
    if not parts:  # nothing to read (no seeds and no fallbacks): an empty answer
        parts.append(
            sa.select(*head(_ITEMS, 0, null_text, null_text, null_float, null_int))
            .add_columns(*_no_product())
            .where(sa.false())
        )
    order: list[Any] = [sa.literal_column(c) for c in ("part", "n", "list_key", "position")]
    return sa.union_all(*parts).order_by(*order)


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
    """The picks for each ask, in order; available catalog products only. A batch's lists
    are read in one statement and its products in one more per round."""
    options = options or ServeOptions()
    first = [first_round(a.limit) for a in asks]
    stored = StoredLists(
        conn, [need for a, n in zip(asks, first, strict=True) for need in reads(a, options, n)]
    )
    streams = [candidates(a, stored.get, options) for a in asks]
    return _picks(conn, asks, streams, first, {})


def recommend(
    conn: sa.Connection,
    ask: Ask,
    options: ServeOptions | None = None,
    *,
    find_category: bool = False,
) -> list[Pick]:
    """One ask's picks, its lists and their products read in one statement
    (:class:`RequestLists`). With ``find_category``, the asked product's category is read
    in the same statement (``ask.product_category`` is not used), and
    :class:`UnknownProduct` raised when the catalog has no such product."""
    options = options or ServeOptions()
    wanted = first_round(ask.limit)
    lists = RequestLists(conn, ask, options, wanted, find_category=find_category)
    rows = {pid: _available(row) for pid, row in lists.products.items()}
    return _picks(conn, [lists.ask], [lists.stream(options)], [wanted], rows)[0]


def _available(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return row if row is not None and is_available(row["attributes"]) else None


def _picks(
    conn: sa.Connection,
    asks: Sequence[Ask],
    streams: Sequence[Iterable[Candidate]],
    first: Sequence[int],
    rows: dict[str, dict[str, Any] | None],
) -> list[list[Pick]]:
    """Candidates taken from each stream in rounds — the first ``first[i]``, then twice
    what is missing and ten more — and kept when their product is available, until each
    ask has its limit or its stream ends. ``rows`` holds the products read already (None:
    missing or unavailable); the others are read once per round, for every ask at once."""
    iterators = [iter(s) for s in streams]
    picks: list[list[Pick]] = [[] for _ in asks]
    open_asks = list(range(len(asks)))
    rounds = 0
    while open_asks:
        pending: dict[int, list[Candidate]] = {}
        for i in open_asks:
            want = max(asks[i].limit - len(picks[i]), 0)
            size = first[i] if rounds == 0 else 2 * want + 10
            batch = []
            for c in iterators[i]:
                batch.append(c)
                if len(batch) >= size:
                    break
            pending[i] = batch
        rounds += 1
        missing = [c.product_id for b in pending.values() for c in b if c.product_id not in rows]
        if missing:
            found = product_rows(conn, missing)
            for pid in missing:
                rows[pid] = _available(found.get(pid))
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

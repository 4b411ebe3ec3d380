"""The scheduled build: read the store, compute every list, replace ``rec_lists`` whole.

The new lists replace the old in one transaction (delete, then insert: ``COPY`` on
PostgreSQL, one ``executemany`` on SQLite), so a request reads either the old build or
the new one, never half of each; readers are not blocked meanwhile (MVCC, SQLite's WAL).
What was built, when, from how much and in how long is kept in
``app_settings['recommendations']`` for the API, the CLI and the UI to show.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from rapport.recommend.data import IntArray, read_snapshot
from rapport.recommend.model import Model, Progress, fit
from rapport.recommend.strategies import BuildOptions
from rapport.segments.config import read_setting, write_setting
from rapport.store.engine import writing
from rapport.store.tables import rec_lists

log = logging.getLogger("rapport.recommend")

SETTING = "recommendations"
INSERT_CHUNK = 50_000


@dataclass(frozen=True)
class BuildResult:
    built_at: datetime
    cutoff: datetime
    personal_model: str
    rows: dict[str, int]
    lists: dict[str, int]
    inputs: dict[str, int]
    seconds: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        return {
            "built_at": self.built_at.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "personal_model": self.personal_model,
            "rows": self.rows,
            "lists": self.lists,
            "inputs": self.inputs,
            "seconds": self.seconds,
        }


def _copy_rows(conn: sa.Connection, rows: Iterable[tuple[str, str, int, str, float]]) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(
            "COPY rec_lists (kind, list_key, position, product_id, score) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _insert_rows(conn: sa.Connection, rows: Iterable[tuple[str, str, int, str, float]]) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    sql = (
        "INSERT INTO rec_lists (kind, list_key, position, product_id, score) VALUES (?, ?, ?, ?, ?)"
    )
    chunk: list[tuple[str, str, int, str, float]] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= INSERT_CHUNK:
                cursor.executemany(sql, chunk)
                chunk = []
        if chunk:
            cursor.executemany(sql, chunk)
    finally:
        cursor.close()


def write_lists(conn: sa.Connection, model: Model) -> dict[str, int]:
    """Replace every stored list with the model's; rows written per kind."""
    conn.execute(rec_lists.delete())
    ids = model.snapshot.catalog.ids
    written: dict[str, int] = {}
    for kind, lists in model.lists.items():
        rows = lists.rows(ids)
        if conn.dialect.name == "postgresql":
            _copy_rows(conn, rows)
        else:
            _insert_rows(conn, rows)
        written[kind] = len(lists)
    return written


def build(
    engine: sa.Engine,
    now: datetime,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Rebuild every list from the store as it is at ``now``."""
    options = options or BuildOptions()
    report = progress or (lambda stage, done, total: None)
    started = time.perf_counter()
    report("reading", 0, 1)
    with engine.connect() as conn:
        snapshot = read_snapshot(conn, now)
    read_seconds = round(time.perf_counter() - started, 3)
    report("reading", 1, 1)
    model = fit(snapshot, options, progress)
    t = time.perf_counter()
    report("writing", 0, 1)
    with writing(engine) as conn:
        rows = write_lists(conn, model)
        seconds = {"read": read_seconds, **model.seconds}
        seconds["write"] = round(time.perf_counter() - t, 3)
        seconds["total"] = round(time.perf_counter() - started, 3)
        p = snapshot.purchases
        result = BuildResult(
            built_at=now,
            cutoff=now,
            personal_model=model.personal_model,
            rows=rows,
            lists={kind: lists.list_count for kind, lists in model.lists.items()},
            inputs={
                "products": snapshot.catalog.size,
                "available_products": int(snapshot.catalog.available.sum()),
                "categories": len(snapshot.catalog.category_ids),
                "order_lines": len(p),
                "orders": _distinct(p.order),
                "customers": _distinct(p.customer),
                "views": len(snapshot.views),
            },
            seconds=seconds,
        )
        write_setting(conn, SETTING, result.as_json(), now)
    report("writing", 1, 1)
    log.info("recommendations built in %.1f s: %s", seconds["total"], rows)
    return result


def build_daily(engine: sa.Engine, now: datetime) -> BuildResult | None:
    """The worker's daily rebuild. A failure is logged and the previous lists keep
    serving: stale recommendations beat none, and the rest of the day's work goes on."""
    try:
        return build(engine, now)
    except Exception:
        log.exception("recommendations not rebuilt; the previous lists keep serving")
        return None


def _distinct(values: IntArray) -> int:
    return len(np.unique(values))


def last_build(conn: sa.Connection) -> dict[str, Any] | None:
    """What the last build recorded, or None before the first."""
    found = read_setting(conn, SETTING)
    return dict(found) if isinstance(found, dict) else None

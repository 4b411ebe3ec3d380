"""The dry run's sandbox: shadow tables in one rolled-back transaction, shared ones read-only.

The engine writes runs, step-log lines and outbox rows. In a dry run those tables are
*shadowed*: temporary tables with the same names, private to the dry run's connection,
which both databases resolve before the shared ones (PostgreSQL searches ``pg_temp``
first, SQLite its ``temp`` schema). That is what keeps a dry run harmless while the
product is live:

* the engine sees only the dry run's runs, never a live run of another scenario (it
  would otherwise load, change and lock the live runs of the customers it replays);
* no dispatcher can see the dry run's messages, committed or not;
* the shared tables are only read, and the database enforces it: on PostgreSQL the
  transaction turns read-only once the shadows exist (temporary tables stay writable),
  on SQLite an authorizer refuses writes to the main database. A dry run therefore takes
  no lock that ingest, workers or the dispatcher wait for, however long it runs, and a
  step that tried to change a card would fail the dry run instead of changing it.

Everything, shadows included, is rolled back at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from rapport.store.tables import (
    outbox,
    scenario_runs,
    scenario_step_log,
    scenario_versions,
    scenarios,
    tasks,
)

# Past this many events a dry run must be asked for explicitly: it holds one transaction
# (and, on PostgreSQL, vacuum's horizon) open for as long as it replays.
DEFAULT_MAX_EVENTS = 100_000
SHADOWED = (scenarios, scenario_versions, scenario_runs, scenario_step_log, outbox, tasks)
# Dry-run run ids start this far above the live ones, so an outcome branch can never find
# a real "Message Opened" of a real run under a dry-run message key.
ID_GAP = 1_000_000


class SandboxError(RuntimeError):
    """The store is set up so that a dry run could not be kept apart from live data."""


@contextmanager
def sandbox(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One transaction, always rolled back, on a connection nobody else shares.

    On PostgreSQL the connection is a fresh server session, thrown away afterwards: a
    pooled session may hold statements prepared before the shadow tables existed, and
    those keep pointing at the shared tables (PostgreSQL re-plans a statement when an
    object it uses changes, not when a new table would shadow one).
    """
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.invalidate()
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()
            if postgres:
                conn.invalidate()
            else:
                _dbapi(conn).set_authorizer(None)


def _dbapi(conn: sa.Connection) -> Any:
    return conn.connection.dbapi_connection


def shadow_tables(conn: sa.Connection, now: datetime) -> str:
    """Create the shadows; returns the schema of the shared tables (to read them by name).

    Run ids in the shadow start above the live ones (see ``ID_GAP``).
    """
    postgres = conn.dialect.name == "postgresql"
    schema = _shared_schema(conn) if postgres else "main"
    live_runs = scenario_runs.to_metadata(sa.MetaData(), schema=schema)
    first_id = (conn.execute(sa.select(sa.func.max(live_runs.c.id))).scalar() or 0) + ID_GAP
    md = sa.MetaData()
    for table in SHADOWED:
        copy = table.to_metadata(md)
        ddl = str(CreateTable(copy, include_foreign_key_constraints=[]).compile(conn))
        conn.exec_driver_sql(ddl.replace("CREATE TABLE", "CREATE TEMPORARY TABLE", 1))
        for index in copy.indexes:
            conn.execute(CreateIndex(index))
    if postgres:
        _check_shadowed(conn)
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('scenario_runs', 'id'), :n)"),
            {"n": first_id},
        )
    else:  # SQLite gives a new row the highest rowid plus one: keep a row at the start
        conn.execute(
            scenario_runs.insert().values(
                id=first_id,
                scenario_id=-1,
                version=0,
                customer_id=0,
                status="placeholder",
                context={},
                started_at=now,
                updated_at=now,
            )
        )
    return schema


def _shared_schema(conn: sa.Connection) -> str:
    """The schema the shared tables are found in, before anything shadows them."""
    return str(
        conn.execute(
            sa.text(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.oid = to_regclass('outbox')"
            )
        ).scalar_one()
    )


def _check_shadowed(conn: sa.Connection) -> None:
    """Refuse to go on if a search_path puts pg_temp after the shared schema."""
    for table in SHADOWED:
        persistence = conn.execute(
            sa.text("SELECT relpersistence FROM pg_class WHERE oid = to_regclass(:t)"),
            {"t": table.name},
        ).scalar_one()
        if persistence != "t":
            raise SandboxError(
                f"the search_path resolves {table.name!r} to the shared table; a dry run "
                "needs pg_temp searched first (the default)"
            )


def copy_history(
    conn: sa.Connection,
    schema: str,
    customers_of: sa.Select[Any],
    since: datetime,
    end: datetime,
    leave_out_scenario: int,
) -> None:
    """Messages really queued between ``since`` and ``end`` to the customers of
    ``customers_of``, so frequency caps count them as they did then. One scenario's own
    real messages are left out: the dry run makes its own."""
    o = outbox.to_metadata(sa.MetaData(), schema=schema).c
    columns = ["idempotency_key", "customer_id", "channel", "recipient", "body_text"]
    columns += ["headers", "data", "fallback", "status", "next_attempt_at"]
    columns += ["created_at", "updated_at", "campaign_id", "scenario_id"]
    rows = sa.select(
        sa.literal("history:") + sa.cast(o.id, sa.String),
        o.customer_id,
        o.channel,
        sa.literal(""),
        sa.literal(""),
        o.headers,
        o.data,
        o.fallback,
        o.status,
        o.next_attempt_at,
        o.created_at,
        o.updated_at,
        o.campaign_id,
        o.scenario_id,
    ).where(
        o.created_at > since,
        o.created_at < end,
        o.status != "skipped",
        o.customer_id.in_(customers_of),
        sa.or_(o.scenario_id.is_(None), o.scenario_id != str(leave_out_scenario)),
    )
    conn.execute(outbox.insert().from_select(columns, rows))


def forbid_shared_writes(conn: sa.Connection) -> None:
    """From here on only the shadow tables may change; the database refuses the rest."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        return
    import sqlite3

    writes = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
    ddl = {
        sqlite3.SQLITE_CREATE_TABLE,
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_DROP_TABLE,
        sqlite3.SQLITE_DROP_INDEX,
        sqlite3.SQLITE_ALTER_TABLE,
    }

    def authorize(action: int, _a: Any, _b: Any, database: str | None, _src: Any) -> int:
        if action in ddl or (action in writes and database == "main"):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    # Setting an authorizer expires the connection's prepared statements, so cached ones
    # are checked too.
    _dbapi(conn).set_authorizer(authorize)

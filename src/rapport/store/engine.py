"""Engines for the embedded SQLite default and for PostgreSQL (psycopg 3)."""

from __future__ import annotations

import select
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url


def json_text(value: Any) -> str:
    """A JSON column's text, as the store writes it (keys need not be strings)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here, not the psycopg2 SQLAlchemy defaults to."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    url = normalise_url(url)
    options: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        options["pool_size"] = 10
        options["max_overflow"] = 20
    options.update(kwargs)
    engine = sa.create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif not options.get("pool_pre_ping"):
        _check_liveness(engine)
    return engine


IDLE_PING_SECONDS = 30.0  # a pooled connection idle this long is pinged before use


def _check_liveness(engine: sa.Engine) -> None:
    """Make sure a connection taken from the pool is alive, without a round trip per use.

    ``pool_pre_ping`` sends ``SELECT 1`` on every checkout: a round trip per request, a
    large share of a short read's time on a busy machine. Instead, a connection is pinged
    only when there is a reason to doubt it: it sat in the pool for ``IDLE_PING_SECONDS``
    or more (idle connections are the ones firewalls and idle timeouts cut), or its
    socket has input waiting although no statement is running — the server's farewell
    when it restarted or ended the session (``pg_terminate_backend``, a timeout), or the
    end of the stream. Anything else was in use moments ago and has had nothing from the
    server since: it is handed out as it is. A failed ping discards the connection and
    every older one in the pool, as ``pool_pre_ping`` does, and the checkout carries on
    with a new connection.
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info["rapport_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["rapport_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("rapport_idle_since")
        idle = since is None or time.monotonic() - since >= IDLE_PING_SECONDS
        if not idle and not _input_waiting(dbapi_conn):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as err:  # any failure of SELECT 1 condemns the connection
            raise sa.exc.InvalidatePoolError(f"liveness check failed: {err}") from err
        if not alive:
            raise sa.exc.InvalidatePoolError("liveness check failed")


def _input_waiting(dbapi_conn: Any) -> bool:
    """Whether an idle connection has something to read (or is closed or broken)."""
    if getattr(dbapi_conn, "closed", False) or getattr(dbapi_conn, "broken", False):
        return True
    try:
        poller = select.poll()
        poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))  # readable, or hung up, or in error
    except (OSError, ValueError, AttributeError):
        return True


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL, so readers never wait for the writer; and BEGIN IMMEDIATE for writes.

    A deferred transaction that reads and then writes can fail to upgrade its lock when
    another writer committed in between; transactions opened with :func:`writing` take the
    write lock up front instead, and plain reads stay deferred so they never queue.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("rapport_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: committed on success, rolled back on any error.

    On SQLite the threads of one process (the ingest writer, the dispatcher, the scenario
    and sweep loops) take turns on a first-come-first-served lock before ``BEGIN
    IMMEDIATE``. Left to SQLite's busy handler, a waiting writer polls with sleeps of up
    to 100 ms and a busy writer keeps winning the lock back: under steady ingest the
    dispatcher waited seconds for its turn.
    """
    lock = _write_lock(engine) if engine.dialect.name == "sqlite" else None
    if lock is not None and not lock.acquire(_LOCK_WAIT):
        lock = None  # waited as long as SQLite would: leave it to SQLite's busy handler
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(rapport_write=True)
            with conn.begin():
                yield conn
    finally:
        if lock is not None:
            lock.release()


_LOCK_WAIT = 30.0  # seconds, as the connections' busy_timeout


class _FairLock:
    """A reentrant lock granted in the order it was asked for."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, timeout: float) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._waiting:
                self._owner, self._depth = me, 1
                return True
            gate = threading.Lock()
            gate.acquire()
            self._waiting.append(gate)
        handed = gate.acquire(timeout=timeout)  # released by the holder, handing over
        with self._mutex:
            if not handed and gate in self._waiting:
                self._waiting.remove(gate)
                return False
            self._owner, self._depth = me, 1  # handed over, if only just now
            return True

    def release(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth:
                return
            if self._waiting:
                self._owner = _HANDED
                self._waiting.popleft().release()
            else:
                self._owner = None


_HANDED = -1  # no thread has this id: the lock is on its way to the next in line
_write_locks: dict[str, _FairLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(engine: sa.Engine) -> _FairLock:
    key = engine.url.database or f"engine-{id(engine)}"
    with _write_locks_guard:
        found = _write_locks.get(key)
        if found is None:
            found = _write_locks[key] = _FairLock()
        return found


def upsert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (both SQLite and PostgreSQL have it)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)

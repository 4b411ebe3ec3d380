"""SQLite: the write-ahead log is copied into the database by a thread of its own.

By default SQLite checkpoints inside the commit that takes the log past 1,000 pages: that
commit copies the pages and syncs the file before it returns, and the request waiting on
it takes tens of milliseconds longer (the slowest single-event ingests in process went
from 35-46 ms to 20-22 ms without it). ``rapport serve`` turns that off for its own
connections and checkpoints here instead, every ``interval`` seconds. A passive checkpoint
waits for no one: writers carry on appending to the log while it copies, and it copies
what no reader still needs.

Other processes on the same file (``rapport import``, ``rapport worker``) keep SQLite's
own checkpoints, so the log stays bounded even if no server runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

log = logging.getLogger("rapport.store")


class WalCheckpointer:
    """Checkpoints a SQLite engine's log every ``interval`` seconds; its connections no
    longer checkpoint in their commits while it runs. Does nothing for PostgreSQL."""

    def __init__(self, engine: sa.Engine, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        in_file = engine.url.database not in (None, "", ":memory:")
        self.active = engine.dialect.name == "sqlite" and in_file and interval > 0
        self.checkpoints = 0  # completed passes, for tests and logs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.active or self._thread is not None:
            return
        if not event.contains(self.engine, "connect", _no_autocheckpoint):
            event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # pooled connections come back without autocheckpoint
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rapport-wal", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        # Two apps on one engine (tests do this) share the listener: the first to stop
        # removes it.
        if event.contains(self.engine, "connect", _no_autocheckpoint):
            event.remove(self.engine, "connect", _no_autocheckpoint)
        self.checkpoint()  # leave the log copied in for whoever opens the file next
        self.engine.dispose()  # and the pool with SQLite's own checkpoints again

    def checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint: (busy, pages in the log, pages copied)."""
        raw = self.engine.raw_connection()  # outside any transaction (autocommit)
        try:
            row = raw.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        finally:
            raw.close()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
            except Exception:  # tried again next time; SQLite's log only grows meanwhile
                log.exception("checkpointing the SQLite log failed")


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

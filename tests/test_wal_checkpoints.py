"""SQLite's write-ahead log is checkpointed by the server's own thread, not in commits."""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

from rapport.store.checkpoints import WalCheckpointer
from rapport.store.engine import create_engine, writing


def _autocheckpoint(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def test_commits_leave_the_log_to_the_checkpointer(tmp_path):
    path = tmp_path / "wal.db"
    engine = create_engine(f"sqlite:///{path}")
    with writing(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE blobs (b BLOB)")
    assert _autocheckpoint(engine) == 1000  # SQLite's own, before the checkpointer runs
    checkpointer = WalCheckpointer(engine, interval=3600)  # never on its own in this test
    checkpointer.start()
    try:
        assert _autocheckpoint(engine) == 0
        # 6 MB in commits of 64 KB: past the 1,000 pages (4 MB) at which a commit would
        # have checkpointed and started the log again from its beginning.
        for _ in range(96):
            with writing(engine) as conn:
                conn.exec_driver_sql("INSERT INTO blobs VALUES (randomblob(65536))")
        assert os.path.getsize(f"{path}-wal") > 6_000_000
        busy, pages, copied = checkpointer.checkpoint()
        assert (busy, copied) == (0, pages) and pages > 1500
    finally:
        checkpointer.stop()
    assert _autocheckpoint(engine) == 1000  # the pool is SQLite's again
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar_one() == 96
    engine.dispose()


def test_the_thread_checkpoints_on_its_beat(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'beat.db'}")
    checkpointer = WalCheckpointer(engine, interval=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpointer.checkpoints >= 3
    finally:
        checkpointer.stop()
    engine.dispose()


def test_postgres_and_memory_stores_are_left_alone(_engines):
    assert not WalCheckpointer(_engines["postgres"]).active
    memory = create_engine("sqlite://")
    assert not WalCheckpointer(memory).active
    assert not WalCheckpointer(_engines["sqlite"], interval=0).active
    memory.dispose()


def test_two_checkpointers_on_one_engine_stop_in_any_order(tmp_path):
    """Two apps made on one engine (as tests do) each start and stop their own."""
    engine = create_engine(f"sqlite:///{tmp_path / 'two.db'}")
    first, second = WalCheckpointer(engine, 3600), WalCheckpointer(engine, 3600)
    first.start()
    second.start()
    assert _autocheckpoint(engine) == 0
    first.stop()
    second.stop()
    assert _autocheckpoint(engine) == 1000
    engine.dispose()

"""Fixtures: every storage test runs on SQLite and on PostgreSQL, against real servers."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from rapport.access.keys import create_key
from rapport.api.app import create_app
from rapport.clock import SimulatedClock
from rapport.settings import Settings
from rapport.store.engine import create_engine
from rapport.store.migrate import upgrade
from rapport.store.tables import metadata
from tests.postgres_server import create_database, server_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Rich fixes a console's width when it is made (the CLI's at import), from COLUMNS if set.
# Parallel workers inherit the parent terminal's 80 columns, and their temporary paths are
# longer: a wide console keeps printed paths on one line; a test that needs another width
# sets it for its call (typer makes its help console per call).
os.environ["COLUMNS"] = "200"
os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url, drop = create_database(server_url())
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def _engines(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[dict[str, sa.Engine]]:
    sqlite_path = tmp_path_factory.mktemp("store") / "rapport.db"
    engines = {
        "sqlite": create_engine(f"sqlite:///{sqlite_path}"),
        "postgres": create_engine(postgres_url),
    }
    for engine in engines.values():
        upgrade(engine)
    yield engines
    for engine in engines.values():
        engine.dispose()


def _clean(engine: sa.Engine) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for name in tables:
                conn.exec_driver_sql(f"DELETE FROM {name}")
            conn.exec_driver_sql("DELETE FROM sqlite_sequence") if _has_sequence(conn) else None


def _has_sequence(conn: sa.Connection) -> bool:
    return bool(
        conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first()
    )


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, _engines: dict[str, sa.Engine]) -> sa.Engine:
    """An empty, migrated store; the test runs once on each backend."""
    eng = _engines[request.param]
    _clean(eng)
    return eng


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def settings(engine: sa.Engine) -> Settings:
    # No background sweeper or dispatcher: tests move the simulated clock and run them.
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        sweep_seconds=0,
        dispatch=False,
        scenario_seconds=0,
    )


@pytest.fixture
def app(settings: Settings, engine: sa.Engine, clock: SimulatedClock):  # type: ignore[no-untyped-def]
    return create_app(settings, engine=engine, clock=clock)


@pytest.fixture
def write_key(engine: sa.Engine) -> str:
    return create_key(engine, "write", "tests", T0).key


@pytest.fixture
def secret_key(engine: sa.Engine) -> str:
    return create_key(engine, "secret", "tests", T0).key


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a real loopback port, for clients that speak real HTTP (the SDKs)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


ROOT = Path(__file__).parent.parent

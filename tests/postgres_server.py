"""Find a PostgreSQL server for the tests and benchmarks, or start a throwaway one.

Order (as the design guide says): $RAPPORT_TEST_DATABASE_URL; else a server on
127.0.0.1:5432 (user postgres); else a new cluster under a temporary directory, started
with the PostgreSQL binaries installed on the machine. If none of that works the run
fails with the reason: the suite never skips Postgres silently.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _start_throwaway() -> str:
    bindir = _binaries()
    if bindir is None:
        raise RuntimeError(
            "no PostgreSQL reachable (set RAPPORT_TEST_DATABASE_URL or run one on "
            "127.0.0.1:5432) and no initdb to start one: install the postgresql package"
        )
    root = tempfile.mkdtemp(prefix="rapport-pg-")
    data = os.path.join(root, "data")
    port = _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        os.chmod(root, 0o777)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            f"{bindir}/pg_ctl",
            "-D",
            data,
            "-l",
            os.path.join(root, "log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def server_url() -> str:
    """The URL of a reachable server's maintenance database."""
    explicit = os.environ.get("RAPPORT_TEST_DATABASE_URL")
    if explicit:
        if not _reachable(explicit):
            raise RuntimeError(f"RAPPORT_TEST_DATABASE_URL={explicit} is not reachable")
        return explicit
    if _reachable(DEFAULT_URL):
        return DEFAULT_URL
    url = _start_throwaway()
    for _ in range(50):
        if _reachable(url):
            return url
        time.sleep(0.2)
    raise RuntimeError("the throwaway PostgreSQL server did not come up")


def create_database(server: str, prefix: str = "rapport_test") -> tuple[str, object]:
    """A fresh database on the server, and a function that drops it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = server.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    url = f"{base}/{name}"

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


if __name__ == "__main__":
    try:
        print(f"PostgreSQL for tests: {server_url()}")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

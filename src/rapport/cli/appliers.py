"""The applier processes of a worker that applies queued ingest in several lanes.

`rapport worker` with ``--appliers N`` (or ``RAPPORT_INGEST_LANES`` on PostgreSQL) is
applier 0 of N itself and starts the others as `rapport worker --ingest-only --applier k/N`
processes: processes, not threads, because an applier spends half its time in Python and
threads would share one interpreter lock. They are restarted if one exits, and stopped
(interrupted, then killed after a minute) when the worker stops.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import typer

from rapport.ingest.lanes import MAX_LANES

log = logging.getLogger("rapport.worker")


def parse_applier(text: str) -> tuple[int, int]:
    """``"k/N"``: applier number k (from 0) of N."""
    number, slash, count = text.partition("/")
    if not slash or not number.strip().isdigit() or not count.strip().isdigit():
        raise typer.BadParameter(f"{text!r}: expected NUMBER/COUNT, such as 1/2")
    k, n = int(number), int(count)
    if not 0 <= k < n <= MAX_LANES:
        raise typer.BadParameter(f"{text!r}: needs 0 ≤ NUMBER < COUNT ≤ {MAX_LANES}")
    return k, n


class ApplierProcesses:
    def __init__(self, count: int, database_url: str) -> None:
        self.count = count
        # The store's address goes by environment, not on a command line others can read.
        self.env = {**os.environ, "RAPPORT_DATABASE_URL": database_url}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, k: int) -> None:
        self.procs[k] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rapport.cli",
                "worker",
                "--ingest-only",
                "--applier",
                f"{k}/{self.count}",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        for k in range(1, self.count):
            self._spawn(k)

    def check(self) -> None:
        """Start again any applier that exited."""
        for k, proc in list(self.procs.items()):
            code = proc.poll()
            if code is not None:
                log.warning(
                    "ingest applier %d/%d exited (%s); starting it again", k, self.count, code
                )
                self._spawn(k)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

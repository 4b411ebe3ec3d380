"""The demo's mail catcher: an SMTP server on loopback that keeps every message it gets.

The demo sends real e-mail through the real SMTP backend, so what a campaign produces is
the exact bytes a provider would get (MIME, tracked links, DKIM). Those bytes must not
leave the machine, and someone should be able to read them: the catcher accepts any
sender and recipient on 127.0.0.1 and stores each message in a Maildir.

A Maildir (one file per message, written into ``tmp/`` and moved into ``new/``) needs no
server and no lock: the catcher can run in ``rapport demo mailcatcher`` while ``rapport
serve`` lists the same directory at ``/mail`` (``RAPPORT_MAIL_CATCHER_DIR``), and what
was caught is still there after both restart.

The reading side lists a page by the files' delivery times (one ``stat`` per message,
headers parsed only for the page shown) and keeps the parsed headers of each file, which
never changes once delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import itertools
import json
import mailbox
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# Deliveries in this process: what keeps its file names apart within a microsecond.
_DELIVERIES = itertools.count(1)
_START_SECONDS = 30.0  # for the catcher's process to import, bind and say which port


class _Store:
    """The aiosmtpd handler: every message goes into the Maildir, with its envelope.

    A message is written into ``tmp/`` and renamed into ``new/`` (the Maildir delivery
    protocol, so a reader never sees half a file), without ``mailbox.Maildir.add``'s
    fsync: that made every message wait for the disk before the SMTP reply, which was
    most of what an e-mail cost the demo. A caught message survives the processes
    stopping; only a crash of the machine itself can lose the last ones, which for a
    catcher of test mail is no loss."""

    def __init__(self, directory: Path) -> None:
        mailbox.Maildir(directory, create=True)  # tmp/, new/ and cur/
        self.directory = Path(directory)
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    def add(self, data: bytes) -> str:
        """Deliver one message; its Maildir key (unique: time, process, a counter)."""
        now = time.time()
        key = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_DELIVERIES)}.{self._host}"
        tmp = self.directory / "tmp" / key
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, self.directory / "new" / key)
        return key

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # What a delivering MTA prepends: the envelope sender and recipients, which the
        # headers need not show (Bcc, a bounce address).
        stamp = f"Return-Path: <{envelope.mail_from or ''}>\r\n"
        stamp += "".join(f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos)
        data = stamp.encode("utf-8", "surrogateescape") + (envelope.original_content or b"")
        key = self.add(data)
        return f"250 2.0.0 Ok: stored as {key}"


class _Controller(Controller):
    """aiosmtpd's controller, also on port 0 (the system picks a free one)."""

    def _trigger_server(self) -> None:
        server = self.server
        if self.port == 0 and isinstance(server, asyncio.Server):
            self.port = int(server.sockets[0].getsockname()[1])
        super()._trigger_server()


def _serve() -> None:
    """The catcher's process (``python -c``, arguments: directory, host, port): says
    ``port N`` (or ``error …``) on stdout, then serves until its stdin ends, which is
    the parent saying stop, or the parent gone. Ctrl+C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    directory, host, port = sys.argv[-3], sys.argv[-2], int(sys.argv[-1])
    try:
        controller = _Controller(
            _Store(Path(directory)),
            hostname=host,
            port=port,
            decode_data=False,
            # Any sender's test message, however large, is accepted: it is a catcher.
            data_size_limit=None,
        )
        controller.start()
    except Exception as exc:  # a taken port, an unwritable directory: the parent says so
        print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        return
    print(f"port {controller.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


# The catcher's process imports the modules of the parent's path (a source checkout, a
# benchmark's own entry), not only those installed.
_CHILD = (
    "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
    "from rapport.demo.mailcatcher import _serve; _serve()"
)


class MailCatcher:
    """An SMTP server in a process of its own that stores what it receives in ``directory``.

    ``port`` 0 takes a free port; :attr:`port` says which once started. Use as a context
    manager, or ``start()``/``stop()``.

    Its own process, not a thread of the sender's: on a thread, every message's SMTP
    dialogue and file took turns with the sender on one interpreter lock, and the demo's
    dispatcher (the sender) waited for it; a process answers on another core.
    """

    def __init__(self, directory: str | Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = Path(directory)
        self.host = host
        mailbox.Maildir(self.directory, create=True)  # there at once, like the catcher's files
        self._port = port
        self._process: subprocess.Popen[str] | None = None
        self._pid: int | None = None  # the last process's, for ``received`` after a stop

    @property
    def port(self) -> int:
        return self._port

    @property
    def received(self) -> int:
        """Messages this catcher stored (its files carry its process id)."""
        if self._pid is None:
            return 0
        mark = f"P{self._pid}Q"
        return sum(mark in name for _, name, _ in _files(self.directory))

    def start(self) -> MailCatcher:
        paths = json.dumps([p for p in sys.path if p])
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, paths, str(self.directory), self.host, str(self._port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        answer = "error it did not start in time"
        ready = select.select([process.stdout], [], [], _START_SECONDS)[0]
        if ready:
            answer = process.stdout.readline().strip() or (
                f"error its process ended (exit code {process.wait(5)})"
            )
        if not answer.startswith("port "):
            _end(process)
            raise RuntimeError(f"the mail catcher on {self.host}:{self._port}: {answer[6:]}")
        self._port = int(answer.split()[1])
        self._process, self._pid = process, process.pid
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _end(process)

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _end(process: subprocess.Popen[str]) -> None:
    """Close the catcher's stdin (its signal to stop) and wait for it; kill it if it hangs."""
    with contextlib.suppress(OSError):  # it ended already
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


# -- reading what was caught -----------------------------------------------------------


@dataclass(frozen=True)
class CaughtMail:
    """One stored message as a list shows it."""

    key: str
    received_at: datetime
    sender: str
    to: str
    subject: str


def _decoded(value: Any) -> str:
    """A header as text; a header the parser cannot decode is shown as it came."""
    try:
        return str(value) if value is not None else ""
    except Exception:  # malformed encoded words in a hostile message
        return repr(value)


@lru_cache(maxsize=20_000)
def _summary(path: str, mtime_ns: int, key: str) -> CaughtMail:
    """Headers of one delivered file (immutable, so cached by path and time)."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    headers = BytesHeaderParser(policy=policy.default).parsebytes(head)
    to = _decoded(headers["To"]) or ", ".join(
        _decoded(v) for v in headers.get_all("Delivered-To", [])
    )
    return CaughtMail(
        key=key,
        received_at=datetime.fromtimestamp(mtime_ns / 1e9, UTC),
        sender=_decoded(headers["From"]),
        to=to,
        subject=_decoded(headers["Subject"]),
    )


def _files(directory: Path) -> list[tuple[int, str, str]]:
    """(delivery time in ns, key, path) of every delivered message: ``new/`` and ``cur/``.

    The Maildir key is the file name up to the ``:`` that starts its flags.
    """
    found = []
    for sub in ("new", "cur"):
        try:
            entries = os.scandir(directory / sub)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                found.append((entry.stat().st_mtime_ns, entry.name.split(":", 1)[0], entry.path))
    return found


def list_mail(
    directory: str | Path, *, offset: int = 0, limit: int = 50
) -> tuple[list[CaughtMail], int]:
    """One page of messages, newest first, and how many there are in all."""
    files = sorted(_files(Path(directory)), key=lambda f: (f[0], f[1]), reverse=True)
    page = files[offset : offset + limit]
    return [_summary(path, mtime, key) for mtime, key, path in page], len(files)


@dataclass(frozen=True)
class MailDetail:
    summary: CaughtMail
    message: EmailMessage
    raw: bytes
    html: str | None
    text: str | None


def _part_text(part: Any) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):  # unknown charset, bad encoding
        payload = part.get_payload(decode=True) or b""
        return bytes(payload).decode("utf-8", "replace")


def read_mail(directory: str | Path, key: str) -> MailDetail | None:
    """The stored message ``key`` with its HTML and text parts; None if there is none."""
    match = next((f for f in _files(Path(directory)) if f[1] == key), None)
    if match is None:
        return None
    mtime, _, path = match
    with open(path, "rb") as f:
        raw = f.read()
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    html = text = None
    try:
        html = _part_text(message.get_body(preferencelist=("html",)))
        text = _part_text(message.get_body(preferencelist=("plain",)))
    except Exception:  # a malformed MIME tree: the raw view still shows it
        pass
    return MailDetail(_summary(path, mtime, key), message, raw, html, text)

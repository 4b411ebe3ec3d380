"""E-mail over SMTP (aiosmtplib), through a small pool of connections kept open.

Opening an SMTP session costs a TCP (and often TLS) handshake, a greeting, EHLO and AUTH:
several round trips that would dominate a campaign if paid per message. The backend keeps
up to ``pool_size`` sessions open, sends over them concurrently, and returns them to the
pool after each batch; a session the server closed meanwhile is replaced once.

Outcomes follow SMTP's own split: 4xx replies, timeouts and broken connections are
``failed`` (the dispatcher retries later), a 5xx reply to RCPT or DATA is ``rejected``
(this recipient or this message will not be accepted; retrying is pointless). A refused
sender is ``failed``: it is the sender's configuration, and a retry after fixing it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Literal

import aiosmtplib

from rapport.messaging.channels.base import Backend, OutgoingMessage, SendResult
from rapport.messaging.channels.email_mime import DkimKey, build_email, envelope_sender

Security = Literal["plain", "starttls", "tls"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    # plain: no TLS (a local relay); starttls: upgrade after EHLO (port 587); tls: implicit
    # TLS from the first byte (port 465).
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = "Rapport <noreply@localhost>"
    # The right-hand side of Message-IDs; defaults to the sender's domain.
    message_id_domain: str | None = None
    pool_size: int = 4
    timeout: float = 30.0
    dkim: tuple[DkimKey, ...] = ()
    # A custom context (a private CA); None uses the system's trust store.
    tls_context: ssl.SSLContext | None = field(default=None, compare=False)
    local_hostname: str | None = None


class SmtpBackend(Backend):
    channel = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        if settings.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.settings = settings
        self.id_domain = settings.message_id_domain or (
            parseaddr(settings.sender)[1].rpartition("@")[2] or "localhost"
        )
        self._idle: list[aiosmtplib.SMTP] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the pool --------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=s.tls_context,
            local_hostname=s.local_hostname,
        )

    def _same_loop(self) -> None:
        """Sessions belong to the event loop that opened them; a new loop starts afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._idle = []
            self._loop = loop

    async def _acquire(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected session, and whether it was reused (it may have gone stale)."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
        client = self._client()
        await client.connect()
        return client, False

    async def _discard(self, client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(Exception):  # closing a broken transport
            client.close()

    # -- sending ---------------------------------------------------------------------

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self._same_loop()
        results: list[SendResult | None] = [None] * len(messages)
        queue = list(enumerate(messages))
        queue.reverse()

        async def worker() -> None:
            client: aiosmtplib.SMTP | None = None
            reused = False
            try:
                while queue:
                    index, msg = queue.pop()
                    if client is None:
                        try:
                            client, reused = await self._acquire()
                        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                            results[index] = SendResult(msg.id, "failed", error=_describe(exc))
                            continue
                    result, client_ok = await self._send_one(client, msg)
                    if not client_ok and reused:
                        # A pooled session the server had closed: one fresh try.
                        await self._discard(client)
                        client = None
                        try:
                            client, reused = await self._acquire()
                            result, client_ok = await self._send_one(client, msg)
                        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                            result = SendResult(msg.id, "failed", error=_describe(exc))
                            client_ok = False
                    results[index] = result
                    reused = True
                    if not client_ok and client is not None:
                        await self._discard(client)
                        client = None
            finally:
                if client is not None and client.is_connected:
                    self._idle.append(client)

        workers = min(self.settings.pool_size, len(messages))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return [r for r in results if r is not None]

    async def _send_one(
        self, client: aiosmtplib.SMTP, msg: OutgoingMessage
    ) -> tuple[SendResult, bool]:
        """The result, and whether the session is still fit for the next message."""
        s = self.settings
        if msg.channel != "email":
            return SendResult(msg.id, "rejected", error=f"not an email: {msg.channel}"), True
        try:
            raw = build_email(msg, sender=s.sender, id_domain=self.id_domain, keys=s.dkim)
        except (ValueError, TypeError) as exc:
            return SendResult(msg.id, "rejected", error=f"cannot build the message: {exc}"), True
        try:
            _, reply = await client.sendmail(envelope_sender(msg, s.sender), [msg.to], raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code = refused.code if refused is not None else 0
            error = f"{code} {refused.message}" if refused is not None else str(exc)
            return SendResult(msg.id, _by_code(code), error=error), True
        except aiosmtplib.SMTPSenderRefused as exc:
            return SendResult(
                msg.id, "failed", error=f"sender refused: {exc.code} {exc.message}"
            ), True
        except aiosmtplib.SMTPServerDisconnected as exc:
            return SendResult(msg.id, "failed", error=_describe(exc)), False
        except aiosmtplib.SMTPResponseException as exc:
            # DATA refused (content, size, policy) or an odd reply to MAIL/RCPT.
            status = _by_code(exc.code)
            return SendResult(msg.id, status, error=f"{exc.code} {exc.message}"), True
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(msg.id, "failed", error=_describe(exc)), False
        return SendResult(msg.id, "sent", provider_id=reply or None), True

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


def _by_code(code: int) -> Literal["failed", "rejected"]:
    return "rejected" if 500 <= code < 600 else "failed"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

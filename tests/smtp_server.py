"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives.

It counts connections, so tests can see the pool reuse them, and answers 550 for the
addresses in ``reject`` and 451 for those in ``defer``, as a real mail server would.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import _free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class MailStore:
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    reject: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such user here"
        if address in self.defer:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        with self.lock:
            self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data))
            n = len(self.messages)
        return f"250 2.0.0 Ok: queued as Q{n}"


class _Counting(SMTP):
    def connection_made(self, transport: Any) -> None:
        store: MailStore = self.event_handler
        with store.lock:
            store.connections += 1
        super().connection_made(transport)


class MailServer(Controller):
    def __init__(self, store: MailStore, port: int, **kwargs: Any) -> None:
        super().__init__(store, hostname="127.0.0.1", port=port, **kwargs)

    def factory(self) -> SMTP:
        return _Counting(self.handler, **self.SMTP_kwargs)


def start(
    store: MailStore,
    *,
    tls_context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
) -> tuple[MailServer, int]:
    port = _free_port()
    kwargs: dict[str, Any] = {"decode_data": False}
    if tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=True)
    if auth is not None:

        def check(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and (data.login.decode(), data.password.decode()) == auth
            )
            return AuthResult(success=ok, handled=False)

        kwargs.update(authenticator=check, auth_require_tls=tls_context is not None)
    server = MailServer(store, port, **kwargs)
    server.start()
    store.connections = 0  # start() makes one connection of its own to see the server is up
    return server, port


def self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for 127.0.0.1, made on the spot."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    return server_ctx, client_ctx

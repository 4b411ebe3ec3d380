"""SMS over SMPP 3.4 with smpplib: one bound transceiver session, delivery receipts back.

smpplib is synchronous and its session is a socket, so the backend keeps one session bound
as a transceiver (submit and receive on one bind, which is what most SMSCs license), a
listener thread that reads every PDU the SMSC sends, and runs submissions in a worker
thread (``asyncio.to_thread``) so the event loop never blocks on the socket. Responses are
matched to submissions by sequence number; writes are serialised by a lock because the
listener answers ``enquire_link`` and ``deliver_sm`` on the same socket.

A long text is split by :mod:`sms_encoding` (GSM-7 or UCS-2, UDH concatenation), and each
part is a ``submit_sm``; the message is ``sent`` when every part is accepted, and its
``provider_id`` is the SMSC ids of its parts, comma-separated. Delivery receipts arrive per
part as ``deliver_sm`` with the receipt bit in ``esm_class``; the backend answers them and
calls ``on_receipt(provider message id, stat)`` (``DELIVRD``, ``UNDELIV``, ``EXPIRED``...)
from the listener thread, so the callback must be quick and thread-safe (put it on a queue).

A submit_sm_resp error naming the destination (invalid address, TON, NPI) or the message
length → rejected; anything else (throttling, a full queue, a system error, a timeout, a
lost session) → failed, and a lost session is bound again on the next send.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.smpp

from rapport.messaging.channels import sms_encoding
from rapport.messaging.channels.base import Backend, OutgoingMessage, SendResult

log = logging.getLogger(__name__)

ReceiptHandler = Callable[[str, str], None]
PERMANENT_STATUSES = {0x01, 0x0B, 0x50, 0x51}  # RINVMSGLEN, RINVDSTADR, RINVDSTTON, RINVDSTNPI
RECEIPT_BIT = 0x04  # esm_class: "SMSC delivery receipt"
MESSAGE_STATES = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED",
    5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD",
}  # fmt: skip
_RECEIPT = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>\w+)", re.IGNORECASE | re.DOTALL)


def parse_receipt(short_message: bytes | str) -> tuple[str, str] | None:
    """``(message id, stat)`` from receipt text (SMPP 3.4 appendix B), or None."""
    text = short_message.decode("latin-1") if isinstance(short_message, bytes) else short_message
    match = _RECEIPT.search(text)
    return (match["id"], match["stat"].upper()) if match else None


class _Sequences:
    """smpplib's generator is not thread-safe; submissions and the listener both draw."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._last = 0

    @property
    def sequence(self) -> int:
        return self._last

    def next_sequence(self) -> int:
        with self._lock:
            self._last = next(self._counter) % 0x7FFFFFFF or next(self._counter)
            return self._last


class _Client(smpplib.client.Client):
    """smpplib's client with writes serialised: two threads share one socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_lock = threading.Lock()

    def send_pdu(self, p: Any) -> bool:
        with self.write_lock:
            return bool(super().send_pdu(p))


class SmppBackend(Backend):
    channel = "sms"

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        *,
        source_addr: str,
        source_addr_ton: int = 5,  # alphanumeric sender; use 1 (international) for numbers
        source_addr_npi: int = 0,
        system_type: str = "",
        registered_delivery: bool = True,
        on_receipt: ReceiptHandler | None = None,
        timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.source = (source_addr_ton, source_addr_npi, source_addr)
        self.registered_delivery = registered_delivery
        self.on_receipt = on_receipt
        self.timeout = timeout
        self.enquire_link_interval = enquire_link_interval
        self._client: _Client | None = None
        self._listener: threading.Thread | None = None
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()  # guards the session and _pending
        self._references = itertools.count(1)

    # --- session ---------------------------------------------------------------------------

    def _session(self) -> _Client:
        with self._lock:
            if self._client is not None and self._listener and self._listener.is_alive():
                return self._client
            self._drop_locked("session lost")
            client = _Client(
                self.host,
                self.port,
                timeout=self.timeout,
                sequence_generator=_Sequences(),
                allow_unknown_opt_params=True,
            )
            client.connect()
            try:
                client.bind_transceiver(
                    system_id=self.system_id,
                    password=self.password,
                    system_type=self.system_type,
                )
            except Exception:
                client.disconnect()
                raise
            # The listener's idle read timeout is when it sends enquire_link to keep the bind.
            client._socket.settimeout(self.enquire_link_interval)
            client.set_message_sent_handler(self._on_submit_resp)
            client.set_message_received_handler(self._on_deliver)
            client.set_error_pdu_handler(self._on_error_pdu)
            self._client = client
            self._listener = threading.Thread(
                target=self._listen, args=(client,), name="smpp-listener", daemon=True
            )
            self._listener.start()
            return client

    def _listen(self, client: _Client) -> None:
        try:
            while client.state != smpplib.consts.SMPP_CLIENT_STATE_OPEN:
                client.read_once()
        except Exception as exc:  # the socket closed or broke: pending submits fail
            log.info("SMPP session ended: %r", exc)
        with self._lock:
            if self._client is client:
                self._drop_locked("session lost")

    def _drop_locked(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        self._pending.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.disconnect()
        self._client = None

    def _on_submit_resp(self, pdu: Any, **_: Any) -> None:
        with self._lock:
            future = self._pending.pop(pdu.sequence, None)
        if future is not None and not future.done():
            future.set_result(pdu)

    def _on_error_pdu(self, pdu: Any) -> None:
        # Called before the normal handler; generic_nack reaches only here.
        if pdu.command != "submit_sm_resp":
            self._on_submit_resp(pdu)

    def _on_deliver(self, pdu: Any, **_: Any) -> int:
        if not (getattr(pdu, "esm_class", 0) or 0) & RECEIPT_BIT:
            return smpplib.consts.SMPP_ESME_ROK  # a mobile-originated reply: not ours to read
        receipt = parse_receipt(pdu.short_message or b"")
        receipted = getattr(pdu, "receipted_message_id", None)
        state = getattr(pdu, "message_state", None)
        if receipted:  # the TLVs, when present, are authoritative
            receipted = receipted.decode() if isinstance(receipted, bytes) else str(receipted)
            stat = MESSAGE_STATES.get(state or 0) or (receipt[1] if receipt else "UNKNOWN")
            receipt = (receipted, stat)
        if receipt and self.on_receipt is not None:
            try:
                self.on_receipt(*receipt)
            except Exception:
                log.exception("delivery receipt handler failed")
        return smpplib.consts.SMPP_ESME_ROK

    # --- sending ---------------------------------------------------------------------------

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return await asyncio.to_thread(self._send_all, list(messages))

    def _send_all(self, messages: list[OutgoingMessage]) -> list[SendResult]:
        submitted: list[tuple[OutgoingMessage, list[Future[Any]]] | SendResult] = []
        for msg in messages:
            submitted.append(self._submit(msg))
        return [item if isinstance(item, SendResult) else self._wait(*item) for item in submitted]

    def _submit(
        self, msg: OutgoingMessage
    ) -> tuple[OutgoingMessage, list[Future[Any]]] | SendResult:
        to = msg.to.replace(" ", "").lstrip("+")
        if not to.isdigit() or not 6 <= len(to) <= 15:
            return SendResult(msg.id, "rejected", error=f"not a phone number: {msg.to!r}")
        if not msg.body_text:
            return SendResult(msg.id, "rejected", error="empty text")
        try:
            encoded = sms_encoding.encode(msg.body_text, next(self._references))
        except ValueError as exc:
            return SendResult(msg.id, "rejected", error=str(exc))
        try:
            client = self._session()
        except Exception as exc:
            return SendResult(msg.id, "failed", error=f"cannot bind: {exc!r}")
        ton, npi, source = self.source
        futures: list[Future[Any]] = []
        try:
            for part in encoded.parts:
                pdu = smpplib.smpp.make_pdu(
                    "submit_sm",
                    client=client,
                    source_addr_ton=ton,
                    source_addr_npi=npi,
                    source_addr=msg.data.get("sender", source),
                    dest_addr_ton=1,  # international
                    dest_addr_npi=1,  # E.164
                    destination_addr=to,
                    esm_class=0x40 if encoded.udhi else 0x00,
                    data_coding=encoded.data_coding,
                    registered_delivery=1 if self.registered_delivery else 0,
                    short_message=part,
                )
                future: Future[Any] = Future()
                with self._lock:
                    self._pending[pdu.sequence] = future
                futures.append(future)
                client.send_pdu(pdu)
        except Exception as exc:
            for future in futures:
                future.cancel()
            return SendResult(msg.id, "failed", error=f"submit failed: {exc!r}")
        return msg, futures

    def _wait(self, msg: OutgoingMessage, futures: list[Future[Any]]) -> SendResult:
        ids: list[str] = []
        for i, future in enumerate(futures, start=1):
            try:
                resp = future.result(timeout=self.timeout)
            except FutureTimeout:
                return SendResult(msg.id, "failed", error=f"no submit_sm_resp for part {i}")
            except Exception as exc:
                return SendResult(msg.id, "failed", error=f"part {i}: {exc}")
            status = int(resp.status or 0)
            if status:
                description = smpplib.consts.DESCRIPTIONS.get(status, "unknown error")
                error = f"part {i} of {len(futures)}: 0x{status:08X} {description}"
                if i > 1:
                    error += f" (parts accepted before it: {', '.join(ids)})"
                if status in PERMANENT_STATUSES:
                    return SendResult(msg.id, "rejected", error=error)
                return SendResult(msg.id, "failed", error=error)
            message_id = resp.message_id
            ids.append(message_id.decode() if isinstance(message_id, bytes) else str(message_id))
        return SendResult(msg.id, "sent", provider_id=",".join(ids))

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            client, listener = self._client, self._listener
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
        if listener is not None:
            listener.join(timeout=self.timeout)  # ends when unbind_resp puts the state to OPEN
        with self._lock:
            if self._client is client:
                self._drop_locked("backend closed")

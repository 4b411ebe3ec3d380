"""The SMPP backend against a real SMSC on loopback (smpp34's server), and the SMS encoding.

The SMSC runs on its own event loop in a thread, binds our transceiver, answers each
submit_sm, and sends a delivery receipt (deliver_sm) for every accepted part, so the test
sees segment counts, encodings and UDHs as the SMSC received them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import smpp34

from rapport.messaging.channels import sms_encoding
from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.sms_smpp import SmppBackend, parse_receipt
from tests.channel_fakes import free_port


@dataclass
class Smsc:
    port: int
    submits: list[Any] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    unbinds: int = 0


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    """Destinations ending 400 are refused as invalid, 429 throttled, 999 get UNDELIV."""
    state = Smsc(free_port())
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def run() -> None:
        server = smpp34.Server("127.0.0.1", state.port, system_id="fake-smsc")
        await server.start()
        ready.set()
        sessions: dict[str, Any] = {}
        counter = 0
        receipts_out: set[Any] = set()  # keep the sends referenced until they finish
        try:
            while True:
                event = await server.next()
                if isinstance(event, smpp34.Esme):
                    sessions[event.session_id] = event
                    state.binds.append(event.system_id)
                elif isinstance(event, smpp34.Unbound):
                    state.unbinds += 1
                elif isinstance(event, smpp34.SubmitSmEvent):
                    state.submits.append(event)
                    dest = event.destination_addr
                    if dest.endswith("400"):
                        event.reject(smpp34.ESME_RINVDSTADR)
                        continue
                    if dest.endswith("429"):
                        event.reject(smpp34.ESME_RTHROTTLED)
                        continue
                    counter += 1
                    message_id = f"smsc-{counter}"
                    event.accept(message_id)
                    if event.registered_delivery & 1:
                        stat = "UNDELIV" if dest.endswith("999") else "DELIVRD"
                        text = (
                            f"id:{message_id} sub:001 dlvr:001 submit date:2603011200 "
                            f"done date:2603011201 stat:{stat} err:000 text:hello"
                        )
                        esme = sessions[event.session_id]
                        receipts_out.add(
                            asyncio.ensure_future(
                                esme.deliver_sm(
                                    dest, text.encode(), source_addr=dest, esm_class=0x04
                                )
                            )
                        )
        finally:
            await server.stop()

    main = loop.create_task(run())

    def serve_forever() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        loop.close()

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert ready.wait(10), "SMSC did not start"
    yield state
    loop.call_soon_threadsafe(main.cancel)
    thread.join(timeout=5)


def _backend(smsc: Smsc, receipts: list[tuple[str, str]] | None = None, **kw: Any) -> SmppBackend:
    return SmppBackend(
        "127.0.0.1",
        smsc.port,
        "rapport",
        "secret",
        source_addr="Shop",
        on_receipt=(lambda mid, stat: receipts.append((mid, stat)))
        if receipts is not None
        else None,
        timeout=5,
        **kw,
    )


def _send(backend: SmppBackend, messages: list[OutgoingMessage]):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        try:
            return await backend.send(messages)
        finally:
            await backend.close()

    return asyncio.run(run())


def _wait_for(predicate, seconds: float = 5) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _msg(mid: str, text: str, to: str = "+447700900001") -> OutgoingMessage:
    return OutgoingMessage(mid, "sms", to, text)


def test_segments_and_encodings_at_the_smsc_with_receipts(smsc: Smsc) -> None:
    receipts: list[tuple[str, str]] = []
    backend = _backend(smsc, receipts)
    texts = {
        "gsm160": "a" * 160,  # one GSM-7 part
        "gsm161": "b" * 161,  # two parts: 153 + 8
        "euro": "€" * 80,  # 160 septets: extension characters count double, still one part
        "euro81": "€" * 81,  # 162 septets: 76 + 5 characters, an escape pair never split
        "ucs70": "я" * 70,  # one UCS-2 part
        "ucs71": "я" * 71,  # two: 67 + 4
        "emoji": "😀" * 36,  # 72 UTF-16 units: 33 + 3 emoji, no surrogate pair split
    }
    numbers = {k: f"+4477009000{i:02d}" for i, k in enumerate(texts)}  # one per message
    results = _send(backend, [_msg(k, v, to=numbers[k]) for k, v in texts.items()])
    assert [r.status for r in results] == ["sent"] * len(texts), results
    by_text: dict[str, list[Any]] = {}
    for submit in smsc.submits:
        by_text.setdefault(submit.destination_addr, []).append(submit)
    assert smsc.binds == ["rapport"]  # one bound session for the whole batch
    parts = smsc.submits
    assert len(parts) == 1 + 2 + 1 + 2 + 1 + 2 + 2
    assert all(p.dest_addr_ton == 1 and p.dest_addr_npi == 1 for p in parts)
    assert all(p.source_addr == "Shop" and p.registered_delivery == 1 for p in parts)

    # Reassemble each message as a handset would, from what the SMSC received.
    for (key, text), result in zip(texts.items(), results, strict=True):
        n = len((result.provider_id or "").split(","))
        mine = by_text[numbers[key].lstrip("+")]
        assert len(mine) == n, key
        if n > 1:  # the SMSC may take parts in any order; the UDH says which is which
            mine.sort(key=lambda p: p.short_message[5])
        coding = sms_encoding.UCS2 if key.startswith(("ucs", "emoji")) else sms_encoding.GSM7
        assert {p.data_coding for p in mine} == {coding}, key
        if n > 1:
            assert all(p.esm_class & 0x40 for p in mine), key
            udhs = [p.short_message[:6] for p in mine]
            assert {u[3] for u in udhs} == {udhs[0][3]}  # one reference per message
            assert [(u[:3], u[4], u[5]) for u in udhs] == [
                (b"\x05\x00\x03", n, i) for i in range(1, n + 1)
            ]
        else:
            assert not mine[0].esm_class & 0x40
        joined = "".join(
            sms_encoding.decode(p.data_coding, p.short_message, udhi=n > 1) for p in mine
        )
        assert joined == text, key
    counts = {k: len((r.provider_id or "").split(",")) for k, r in zip(texts, results, strict=True)}
    assert counts == {
        "gsm160": 1, "gsm161": 2, "euro": 1, "euro81": 2, "ucs70": 1, "ucs71": 2, "emoji": 2,
    }  # fmt: skip
    assert [len(p.short_message) - 6 for p in by_text[numbers["gsm161"][1:]]] == [153, 8]
    assert [len(p.short_message) - 6 for p in by_text[numbers["ucs71"][1:]]] == [134, 8]
    # A receipt for every accepted part, reported by the SMSC's message id.
    all_ids = [i for r in results for i in (r.provider_id or "").split(",")]
    _wait_for(lambda: len(receipts) == len(all_ids))
    assert sorted(receipts) == sorted((i, "DELIVRD") for i in all_ids)
    _wait_for(lambda: smsc.unbinds == 1)  # close() unbinds


def test_smsc_errors_map_to_rejected_and_failed(smsc: Smsc) -> None:
    receipts: list[tuple[str, str]] = []
    results = _send(
        _backend(smsc, receipts),
        [
            _msg("bad", "hi", to="+15550000400"),
            _msg("slow", "hi", to="+15550000429"),
            _msg("undeliv", "hi", to="+15550000999"),
            _msg("nonum", "hi", to="ann@example.com"),
            _msg("empty", "", to="+15550000001"),
        ],
    )
    assert [(r.message_id, r.status) for r in results] == [
        ("bad", "rejected"),
        ("slow", "failed"),
        ("undeliv", "sent"),
        ("nonum", "rejected"),
        ("empty", "rejected"),
    ]
    assert "0x0000000B" in (results[0].error or "")
    assert "0x00000058" in (results[1].error or "")
    _wait_for(lambda: receipts == [(results[2].provider_id, "UNDELIV")])
    assert len(smsc.submits) == 3


def test_no_smsc_is_a_failure_and_session_rebinds(smsc: Smsc) -> None:
    [down] = _send(
        SmppBackend("127.0.0.1", free_port(), "x", "y", source_addr="Shop", timeout=1),
        [_msg("m", "hi")],
    )
    assert down.status == "failed" and "cannot bind" in (down.error or "")
    backend = _backend(smsc, registered_delivery=False)

    async def twice() -> list[str]:
        out = []
        for i in range(2):
            [r] = await backend.send([_msg(f"m{i}", "hi")])
            out.append(r.status)
            await backend.close()  # the next send binds again
        return out

    assert asyncio.run(twice()) == ["sent", "sent"]
    assert smsc.binds == ["rapport", "rapport"]
    assert all(p.registered_delivery == 0 for p in smsc.submits)


def test_parse_receipt():
    text = b"id:0A1B2C sub:001 dlvr:001 submit date:2603011200 done date:2603011201 stat:EXPIRED err:000 text:"
    assert parse_receipt(text) == ("0A1B2C", "EXPIRED")
    assert parse_receipt("ID:77 Stat:delivrd") == ("77", "DELIVRD")
    assert parse_receipt(b"hello, a reply from the customer") is None


@pytest.mark.parametrize(
    ("text", "coding", "parts"),
    [
        ("", sms_encoding.GSM7, 1),
        ("a" * 160, sms_encoding.GSM7, 1),
        ("a" * 161, sms_encoding.GSM7, 2),
        ("a" * 306, sms_encoding.GSM7, 2),
        ("a" * 307, sms_encoding.GSM7, 3),
        ("[" * 80, sms_encoding.GSM7, 1),
        ("[" * 81, sms_encoding.GSM7, 2),
        ("a" * 152 + "€" + "a" * 10, sms_encoding.GSM7, 2),
        ("Привет" * 11 + "!!!!", sms_encoding.UCS2, 1),  # 70 units
        ("я" * 134, sms_encoding.UCS2, 2),
        ("я" * 135, sms_encoding.UCS2, 3),
        ("Ciao “friend”", sms_encoding.UCS2, 1),  # curly quotes are not GSM-7
    ],
)
def test_encoding_and_segment_counts(text: str, coding: int, parts: int) -> None:
    encoded = sms_encoding.encode(text)
    assert encoded.data_coding == coding
    assert len(encoded.parts) == parts
    udhi = len(encoded.parts) > 1
    assert "".join(sms_encoding.decode(coding, p, udhi) for p in encoded.parts) == text


def test_escape_pair_is_never_split():
    text = "a" * 152 + "€" + "a" * 10  # the euro's two septets would straddle 153
    first, second = sms_encoding.encode(text).parts
    assert len(first) - 6 == 152 and first[-1] == ord("a")
    assert second[6:8] == bytes([0x1B, 0x65])


def test_too_long_is_refused():
    with pytest.raises(ValueError, match="over 255"):
        sms_encoding.encode("a" * 153 * 256)

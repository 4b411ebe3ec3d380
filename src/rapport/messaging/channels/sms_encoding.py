"""SMS text encoding and splitting: GSM 03.38 7-bit when every character allows it, else UCS-2.

Getting this right is money: every part is billed. A GSM-7 message holds 160 septets, or
153 per part once a 6-octet concatenation header (UDH) takes its room; characters of the
extension table (``€ [ ] { } \\ ^ ~ |`` and form feed) take two septets (escape + char),
and a part never ends between the two. UCS-2 holds 70 UTF-16 code units, 67 per part, and
a part never ends inside a surrogate pair (an emoji). One character outside GSM-7 turns the
whole message UCS-2, which is why a stray curly quote halves a message's capacity.

Septets travel unpacked, one per octet, which is what ``data_coding = 0`` means on SMPP
binds; the SMSC packs them for the air interface.
"""

from __future__ import annotations

from dataclasses import dataclass

# GSM 03.38 basic character set, indexed by septet value; 0x1B is the escape to the extension.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
ESCAPE = 0x1B
_BASIC = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != ESCAPE}

GSM7, UCS2 = 0x00, 0x08  # SMPP data_coding values
SINGLE = {GSM7: 160, UCS2: 70}  # units in a message that fits one part
PART = {GSM7: 153, UCS2: 67}  # units per part after the 6-octet UDH
MAX_PARTS = 255  # the 8-bit concatenation header counts parts in one octet


@dataclass(frozen=True)
class Encoded:
    data_coding: int
    parts: list[bytes]  # each part's short_message, UDH included when there are several

    @property
    def udhi(self) -> bool:
        return len(self.parts) > 1


def is_gsm7(text: str) -> bool:
    return all(ch in _BASIC or ch in GSM7_EXTENSION for ch in text)


def _gsm7_units(text: str) -> list[bytes]:
    """Each character as its septets (one, or escape + one), so splits respect pairs."""
    return [
        bytes([_BASIC[ch]]) if ch in _BASIC else bytes([ESCAPE, GSM7_EXTENSION[ch]]) for ch in text
    ]


def _ucs2_units(text: str) -> list[bytes]:
    """Each character as UTF-16-BE: two octets, or four for a surrogate pair."""
    return [ch.encode("utf-16-be") for ch in text]


def _split(units: list[bytes], capacity: int, width: int) -> list[bytes]:
    """Greedy packing of whole characters into parts of ``capacity`` code units."""
    parts: list[bytes] = []
    current = bytearray()
    for unit in units:
        if (len(current) + len(unit)) // width > capacity:
            parts.append(bytes(current))
            current = bytearray()
        current += unit
    if current or not parts:
        parts.append(bytes(current))
    return parts


def encode(text: str, reference: int = 0) -> Encoded:
    """``text`` as SMPP short messages; ``reference`` (0-255) ties the parts together."""
    if is_gsm7(text):
        coding, units, width = GSM7, _gsm7_units(text), 1
    else:
        coding, units, width = UCS2, _ucs2_units(text), 2
    total = sum(len(u) for u in units) // width
    if total <= SINGLE[coding]:
        return Encoded(coding, [b"".join(units)])
    bodies = _split(units, PART[coding], width)
    if len(bodies) > MAX_PARTS:
        raise ValueError(f"message needs {len(bodies)} parts, over {MAX_PARTS}")
    ref = reference & 0xFF
    parts = [
        bytes([0x05, 0x00, 0x03, ref, len(bodies), i]) + body
        for i, body in enumerate(bodies, start=1)
    ]
    return Encoded(coding, parts)


def decode(data_coding: int, short_message: bytes, udhi: bool = False) -> str:
    """The text of one received part; the inverse of :func:`encode` for one part."""
    if udhi and short_message:
        short_message = short_message[1 + short_message[0] :]
    if data_coding == UCS2:
        return short_message.decode("utf-16-be")
    reverse_ext = {v: k for k, v in GSM7_EXTENSION.items()}
    out, escaped = [], False
    for septet in short_message:
        if escaped:
            out.append(reverse_ext.get(septet, " "))
            escaped = False
        elif septet == ESCAPE:
            escaped = True
        else:
            out.append(GSM7_BASIC[septet & 0x7F])
    return "".join(out)


def segments(text: str) -> int:
    """How many parts (billed messages) ``text`` takes."""
    return len(encode(text).parts)

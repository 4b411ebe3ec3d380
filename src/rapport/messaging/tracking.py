"""Signed tokens for the links Rapport puts in messages, and the rewriting that adds them.

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, kind NUL payload))[:22]``
(128 bits of MAC). ``kind`` keeps a token made for one purpose from being replayed for
another: an open token cannot unsubscribe anyone. A click token carries its target URL
inside the signed payload, so the redirect goes only where the message pointed and an
altered or forged link is refused (no open redirect).

Kinds and payloads:

* ``o`` open pixel — the message key (the outbox idempotency key);
* ``c`` click — the message key and the URL, separated by a newline;
* ``u`` unsubscribe — customer id, channel and message key;
* ``p`` preference page — customer id;
* ``t`` Telegram deep link — customer id.

messaging signs and verifies; the routes that receive the requests hand the resulting
events to the pipeline (DESIGN.md §3).
"""

from __future__ import annotations

import base64
import hmac
import html as html_lib
import re
from dataclasses import dataclass

KINDS = ("o", "c", "u", "p", "t")
_MAC_CHARS = 22


class BadToken(ValueError):
    """The token was not made by us with this key for this purpose (or is malformed)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, kind: str, payload: bytes) -> str:
    digest = hmac.digest(key, kind.encode() + b"\0" + payload, "sha256")
    return _b64(digest)[:_MAC_CHARS]


def sign(key: bytes, kind: str, *parts: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    payload = "\n".join(parts).encode()
    return f"{_b64(payload)}.{_mac(key, kind, payload)}"


def verify(key: bytes, kind: str, token: str) -> list[str]:
    """The parts signed into ``token``; BadToken if it is not genuine."""
    body, dot, mac = token.partition(".")
    if not dot or not body or len(mac) != _MAC_CHARS:
        raise BadToken("malformed token")
    try:
        payload = _unb64(body)
    except (ValueError, TypeError):
        raise BadToken("malformed token") from None
    if not hmac.compare_digest(mac, _mac(key, kind, payload)):
        raise BadToken("the token's signature does not match")
    try:
        return payload.decode().split("\n")
    except UnicodeDecodeError:
        raise BadToken("malformed token") from None


@dataclass(frozen=True)
class Links:
    """Builds the public URLs of one Rapport server (``public_url``)."""

    base_url: str
    key: bytes

    def _url(self, path: str, token: str) -> str:
        # A token is base64url and a dot: nothing in it needs quoting.
        return f"{self.base_url.rstrip('/')}/{path}/{token}"

    def open_pixel(self, message_key: str) -> str:
        return self._url("t/o", sign(self.key, "o", message_key))

    def click(self, message_key: str, url: str) -> str:
        return self._url("t/c", sign(self.key, "c", message_key, url))

    def unsubscribe(self, customer_id: int, channel: str, message_key: str) -> str:
        return self._url("u", sign(self.key, "u", str(customer_id), channel, message_key))

    def preferences(self, customer_id: int) -> str:
        return self._url("p", sign(self.key, "p", str(customer_id)))

    def telegram_start(self, customer_id: int) -> str:
        """The ``start`` parameter of a t.me deep link (≤ 64 characters of [A-Za-z0-9_-])."""
        return sign(self.key, "t", str(customer_id)).replace(".", "-")

    def telegram_customer(self, start: str) -> int:
        """The customer a ``/start`` parameter was made for; BadToken if forged."""
        if len(start) <= _MAC_CHARS + 1 or start[-_MAC_CHARS - 1] != "-":
            raise BadToken("malformed token")
        token = start[: -_MAC_CHARS - 1] + "." + start[-_MAC_CHARS:]
        (customer,) = verify(self.key, "t", token)
        if not customer.isdigit():
            raise BadToken("malformed token")
        return int(customer)


_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)


def track_clicks(html: str, links: Links, message_key: str, keep: frozenset[str]) -> str:
    """Point every http(s) link of ``html`` at the click redirect, except those in ``keep``
    (the unsubscribe and preference links, which must work without a redirect)."""

    def swap(m: re.Match[str]) -> str:
        target = html_lib.unescape(m.group(3))
        if target in keep:
            return m.group(0)
        quote_ = m.group(2)
        return f"{m.group(1)}{quote_}{html_lib.escape(links.click(message_key, target))}{quote_}"

    return _HREF.sub(swap, html)


def add_open_pixel(html: str, pixel_url: str) -> str:
    """A 1×1 image just before ``</body>`` (or at the end when there is none)."""
    tag = (
        f'<img src="{pixel_url}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )
    at = _last_body_end(html)
    return html + tag if at < 0 else html[:at] + tag + html[at:]


def _last_body_end(html: str) -> int:
    """Where the last ``</body>`` (any case) starts, or -1: ``html.lower().rfind(…)``
    without lower-casing a whole 20 KB document per message (the tag is near the end)."""
    at = len(html)
    while (at := html.rfind("</", 0, at)) >= 0:
        if html[at : at + 7].lower() == "</body>":
            return at
    return -1

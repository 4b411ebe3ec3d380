"""SMS through a generic HTTP gateway: most SMS aggregators are "POST JSON, get an id back".

Rather than one file per aggregator, the request is described by configuration: URL,
method, an auth header, and a JSON body template whose strings may hold the placeholders
``{to}``, ``{text}``, ``{sender}`` and ``{id}``. A string that is exactly one placeholder
is replaced by the value itself; placeholders inside longer strings are substituted as text.
Substitution is literal (no ``str.format``), so braces in the message text are harmless.
For ``GET`` the template must be flat and becomes the query string.

Status mapping: 2xx → sent, with the provider id read from the answer at ``id_path``
(dotted keys and list indices: ``messages.0.id``); 4xx → rejected, except the codes in
``transient_statuses`` (by default 401/403: credentials are the operator's problem and
rejecting would burn through the audience; 408/429: timing) → failed; 5xx, timeouts,
connection errors → failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rapport.messaging.channels._http import HttpBackend, json_or_none, short
from rapport.messaging.channels.base import OutgoingMessage, SendResult

DEFAULT_TEMPLATE: dict[str, Any] = {
    "to": "{to}",
    "text": "{text}",
    "from": "{sender}",
    "reference": "{id}",
}
PLACEHOLDERS = ("to", "text", "sender", "id")
PHONE = re.compile(r"^\+?[1-9][0-9]{5,14}$")  # E.164 digits, with or without the plus


def render_template(template: Any, values: Mapping[str, Any]) -> Any:
    """The template with placeholders replaced, recursively through dicts and lists."""
    if isinstance(template, dict):
        return {k: render_template(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render_template(v, values) for v in template]
    if isinstance(template, str):
        for name in PLACEHOLDERS:
            token = "{" + name + "}"
            if template == token:
                return values[name]
            if token in template:
                template = template.replace(
                    token, "" if values[name] is None else str(values[name])
                )
        return template
    return template


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path (``messages.0.id``), or None when any step is missing."""
    node = document
    for step in path.split("."):
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif (
            isinstance(node, list)
            and step.lstrip("-").isdigit()
            and -len(node) <= int(step) < len(node)
        ):
            node = node[int(step)]
        else:
            return None
    return node


class HttpSmsBackend(HttpBackend):
    channel = "sms"

    def __init__(
        self,
        url: str,
        *,
        method: str = "POST",
        auth_header: tuple[str, str] | None = None,
        body_template: Mapping[str, Any] | None = None,
        sender: str | None = None,
        id_path: str = "id",
        transient_statuses: Iterable[int] = (401, 403, 408, 429),
        timeout: float = 10.0,
        concurrency: int = 10,
    ) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency)
        self.method = method.upper()
        if self.method not in ("POST", "PUT", "GET"):
            raise ValueError(f"method must be POST, PUT or GET, not {method!r}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"gateway url must be http(s): {url!r}")
        self.url = url
        self.template = dict(body_template if body_template is not None else DEFAULT_TEMPLATE)
        if self.method == "GET" and any(isinstance(v, dict | list) for v in self.template.values()):
            raise ValueError("a GET template must be flat: it becomes the query string")
        self.headers = dict([auth_header]) if auth_header else {}
        self.sender = sender
        self.id_path = id_path
        self.transient = frozenset(transient_statuses)

    async def send_one(self, msg: OutgoingMessage) -> SendResult:
        to = msg.to.replace(" ", "")
        if not PHONE.match(to):
            return SendResult(msg.id, "rejected", error=f"not a phone number: {msg.to!r}")
        if not msg.body_text:
            return SendResult(msg.id, "rejected", error="empty text")
        sender = msg.data.get("sender", self.sender)
        values = {"to": to, "text": msg.body_text, "sender": sender, "id": msg.id}
        body = render_template(self.template, values)
        if self.method == "GET":
            params = {k: "" if v is None else str(v) for k, v in body.items()}
            response = await self.http().get(self.url, params=params, headers=self.headers)
        else:
            response = await self.http().request(
                self.method, self.url, json=body, headers=self.headers
            )
        status = response.status_code
        if 200 <= status < 300:
            provider_id = dig(json_or_none(response), self.id_path)
            return SendResult(
                msg.id, "sent", provider_id=None if provider_id is None else str(provider_id)
            )
        error = f"HTTP {status}: {short(response.text)}"
        if 400 <= status < 500 and status not in self.transient:
            return SendResult(msg.id, "rejected", error=error)
        return SendResult(msg.id, "failed", error=error)

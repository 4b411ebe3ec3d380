"""A tracking-API request body turned into messages: the one place that knows what each
endpoint's body holds.

The endpoints call it when a request arrives. With queued ingest the inbox keeps the body
as it arrived, and the applier calls it again; the same body and time of receipt give the
same messages, so what was validated is what gets applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rapport.errors import InvalidInput, Problem
from rapport.ingest.incoming import Incoming
from rapport.ingest.messages import MESSAGE_TYPES, parse_batch, parse_message

# The endpoints that take a list of messages, and the source their events are stored with.
BATCH_SOURCES = {"batch": "api", "import": "import"}
KINDS = (*MESSAGE_TYPES, *BATCH_SOURCES)


def messages_of(
    kind: str,
    body: Any,
    *,
    received_at: datetime,
    phone_region: str,
    max_message_bytes: int,
) -> list[Incoming]:
    """Validate a decoded body of endpoint ``kind``; raise InvalidInput naming every bad
    field. A single-message endpoint's type comes from its path."""
    if kind not in KINDS:
        raise InvalidInput([Problem("kind", f"unknown endpoint {kind!r}")])
    if kind in BATCH_SOURCES:
        if not isinstance(body, dict):
            raise InvalidInput([Problem("body", "must be a JSON object with a 'batch' list")])
        if "batch" not in body:
            raise InvalidInput([Problem("batch", "is required")])
        defaults = {k: body[k] for k in ("context", "sentAt") if body.get(k) is not None}
        return parse_batch(
            body["batch"],
            received_at=received_at,
            phone_region=phone_region,
            max_message_bytes=max_message_bytes,
            source=BATCH_SOURCES[kind],
            defaults=defaults,
        )
    if not isinstance(body, dict):
        raise InvalidInput([Problem("body", "must be a JSON object")])
    return [
        parse_message(
            {**body, "type": kind},
            where="",
            received_at=received_at,
            phone_region=phone_region,
            max_bytes=max_message_bytes,
        )
    ]

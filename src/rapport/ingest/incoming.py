"""The one normalised form of a message that every step after parsing reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rapport.ingest.traits import Attributes


@dataclass(slots=True)
class Incoming:
    """One message in the form every later step reads."""

    type: str
    message_id: str
    name: str
    user_id: str | None
    anonymous_id: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    occurred_at: datetime
    received_at: datetime
    source: str
    previous_id: str | None = None
    group_id: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    attributes: Attributes | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

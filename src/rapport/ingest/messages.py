"""The Segment tracking spec: message shapes, validation, and one normalised form.

Everything is checked before anything is stored, and every problem is reported with the
index of the message and the path of the field, so a rejected batch is easy to fix.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator
from pydantic import ValidationError as PydanticValidationError

from rapport.clock import utc
from rapport.errors import InvalidInput, Problem
from rapport.ingest import ecommerce
from rapport.ingest.incoming import Incoming
from rapport.ingest.traits import contact_points, read_attributes

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")

# The timeline name of calls that are not `track`.
TYPE_EVENT_NAMES = {
    "identify": "Identify",
    "page": "Page Viewed",
    "screen": "Screen Viewed",
    "group": "Group",
    "alias": "Alias",
}


def _ident(value: Any) -> Any:
    """Segment SDKs send ids as strings, some back offices as numbers: both are accepted."""
    if isinstance(value, bool):
        raise ValueError("must be a string or a number, not a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    return value


def _required_ident(value: Any) -> Any:
    value = _ident(value)
    if value is None:
        raise ValueError("must not be empty")
    return value


# The validator sits outside the ``| None`` so a blank id reads as "not given" rather than
# failing as "not a string"; required ids say they must not be empty.
_IdText = Annotated[str, Field(max_length=200)]
Ident = Annotated[_IdText, BeforeValidator(_required_ident)]
OptionalIdent = Annotated[_IdText | None, BeforeValidator(_ident)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messageId: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    userId: OptionalIdent = None
    anonymousId: OptionalIdent = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self) -> _Message:
        if self.userId is None and self.anonymousId is None:
            raise ValueError("either userId or anonymousId is required")
        return self


class Identify(_Message):
    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)


class Track(_Message):
    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=200)]
    properties: dict[str, Any] = Field(default_factory=dict)


class Page(_Message):
    type: Literal["page"]
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Screen(_Message):
    type: Literal["screen"]
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Group(_Message):
    type: Literal["group"]
    groupId: Ident
    traits: dict[str, Any] = Field(default_factory=dict)


class Alias(_Message):
    type: Literal["alias"]
    userId: Ident
    previousId: Ident


Message = Annotated[Identify | Track | Page | Screen | Group | Alias, Field(discriminator="type")]
_adapter: TypeAdapter[Identify | Track | Page | Screen | Group | Alias] = TypeAdapter(Message)


def _where(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in MESSAGE_TYPES:
            continue  # the discriminator's branch name is noise to a user
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts).replace(".[", "[")


def _problems_of(exc: PydanticValidationError, prefix: str) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        if err["type"] == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            reason = f"unknown message type {tag!r} (expected one of {', '.join(MESSAGE_TYPES)})"
        elif err["type"] == "union_tag_not_found":
            reason = "type is required"
        else:
            reason = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(_where(prefix, tuple(err["loc"])), reason))
    return problems


def occurred_at(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction: trust the server's clock, keep the client's offsets."""
    if timestamp is None:
        return received_at
    timestamp = utc(timestamp)
    if sent_at is None:
        return timestamp
    return received_at - (utc(sent_at) - timestamp)


def parse_message(
    raw: Any,
    *,
    where: str,
    received_at: datetime,
    phone_region: str,
    max_bytes: int,
    source: str = "api",
    defaults: dict[str, Any] | None = None,
) -> Incoming:
    """Validate one raw message; raise InvalidInput naming every bad field."""
    if not isinstance(raw, dict):
        raise InvalidInput([Problem(where, "each message must be a JSON object")])
    size = len(orjson.dumps(raw))
    if size > max_bytes:
        raise InvalidInput(
            [Problem(where, f"message is {size} bytes; the limit is {max_bytes} bytes")]
        )
    if defaults:
        raw = _with_defaults(raw, defaults)
    try:
        msg = _adapter.validate_python(raw)
    except PydanticValidationError as exc:
        raise InvalidInput(_problems_of(exc, where)) from None

    stamp = msg.timestamp or msg.originalTimestamp
    incoming = Incoming(
        type=msg.type,
        message_id=msg.messageId or str(uuid.uuid4()),
        name=msg.event if isinstance(msg, Track) else TYPE_EVENT_NAMES[msg.type],
        user_id=msg.userId,
        anonymous_id=msg.anonymousId,
        properties={},
        context=msg.context,
        occurred_at=occurred_at(stamp, msg.sentAt, received_at),
        received_at=received_at,
        source=source,
    )
    problems: list[Problem] = []
    if isinstance(msg, Track | Page | Screen):
        incoming.properties = msg.properties
        if isinstance(msg, Page | Screen):
            if msg.name is not None:
                incoming.properties = {**msg.properties, "name": msg.name}
            if msg.category is not None:
                incoming.properties = {**incoming.properties, "category": msg.category}
    elif isinstance(msg, Identify):
        incoming.traits = _identify_traits(msg)
        incoming.attributes = read_attributes(incoming.traits, msg.context, where, problems)
    elif isinstance(msg, Group):
        incoming.group_id = msg.groupId
        incoming.traits = msg.traits
        incoming.properties = {"groupId": msg.groupId, "traits": msg.traits}
    elif isinstance(msg, Alias):
        incoming.previous_id = msg.previousId
        incoming.properties = {"previousId": msg.previousId}

    own_traits, context = {}, msg.context
    if isinstance(msg, Identify):
        # context.traits is already folded into an identify's traits; read it once.
        own_traits, context = incoming.traits, {**msg.context, "traits": None}
    incoming.emails, incoming.phones = contact_points(
        own_traits, context, where, phone_region, problems
    )
    ecommerce.validate(incoming, where, problems)
    if problems:
        raise InvalidInput(problems)
    return incoming


def _identify_traits(msg: Identify) -> dict[str, Any]:
    """RudderStack's SDKs send identify traits in ``context.traits`` only; Segment's in
    ``traits``. Both are read, and ``traits`` wins where they disagree."""
    ctx_traits = msg.context.get("traits")
    if isinstance(ctx_traits, dict) and ctx_traits:
        return {**ctx_traits, **msg.traits}
    return msg.traits


def _with_defaults(raw: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Batch-level context, sentAt and type (from the endpoint) apply to each message."""
    merged = dict(raw)
    for key, value in defaults.items():
        if key == "context" and isinstance(value, dict):
            own = raw.get("context")
            merged["context"] = {**value, **own} if isinstance(own, dict) else own or value
        elif key == "type":
            merged["type"] = value
        elif merged.get(key) is None:
            merged[key] = value
    return merged


def parse_batch(
    raws: Any,
    *,
    received_at: datetime,
    phone_region: str,
    max_message_bytes: int,
    source: str = "api",
    defaults: dict[str, Any] | None = None,
    prefix: str = "batch",
) -> list[Incoming]:
    """All or nothing: one bad message rejects the batch, and every bad one is listed."""
    if not isinstance(raws, list):
        raise InvalidInput([Problem(prefix, "must be a list of messages")])
    if not raws:
        raise InvalidInput([Problem(prefix, "is empty")])
    out: list[Incoming] = []
    problems: list[Problem] = []
    for i, raw in enumerate(raws):
        try:
            out.append(
                parse_message(
                    raw,
                    where=f"{prefix}[{i}]",
                    received_at=received_at,
                    phone_region=phone_region,
                    max_bytes=max_message_bytes,
                    source=source,
                    defaults=defaults,
                )
            )
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return out

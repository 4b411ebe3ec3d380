"""Channel configuration: which backend each channel uses and its settings.

Kept in the store (``app_settings['channels']``) so an operator changes it from the API or
the settings page without a restart; validated by these models on every write, so a
stored configuration always builds (``backends.check_config`` also builds every backend
before a write is stored). Secrets (passwords, tokens, private keys) are stored as given
and never returned by the API: ``redacted`` shows them as ``REDACTED``, and a write that
sends ``REDACTED`` back keeps the stored value, so a settings form can round-trip what it
was shown. Errors name the field as the operator wrote it (``email.port``), not pydantic's
path through the union of backends. Turning a section into a backend is ``backends``.

Each channel section names its ``backend``; ``memory`` keeps messages in the process
(tests, the demo). A channel without a section is not configured: its messages wait in
the outbox until it is.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import dkim.crypto
import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from rapport.errors import InvalidInput, Problem
from rapport.store.engine import upsert
from rapport.store.tables import app_settings

SETTING_KEY = "channels"

# What the API shows instead of a secret; sent back unchanged, it keeps the stored one.
REDACTED = "***"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Sending limits around the backend (the dispatcher's Route): messages per second.
    rate: float | None = Field(None, gt=0)
    burst: float | None = Field(None, gt=0)


class MemoryConfig(_Section):
    backend: Literal["memory"] = "memory"


class DkimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1)
    selector: str = Field(min_length=1)
    # Before the key: the key is checked against it.
    algorithm: Literal["rsa", "ed25519"] = "rsa"
    # PEM for rsa; the base64 32-byte seed for ed25519.
    private_key: str = Field(min_length=1)

    @field_validator("private_key")
    @classmethod
    def _key_parses(cls, key: str, info: ValidationInfo) -> str:
        """A key that cannot sign would only fail at send time, for every message."""
        if key == REDACTED:
            return key  # stands for the stored key, checked when that was stored
        if info.data.get("algorithm") == "ed25519":
            try:
                seed = base64.b64decode(key.strip(), validate=True)
            except (binascii.Error, ValueError):
                seed = b""
            if len(seed) != 32:
                raise ValueError("an ed25519 key is the base64 of a 32-byte seed")
        else:
            try:
                dkim.crypto.parse_pem_private_key(key.encode())
            except Exception:  # dkimpy raises its own and ASN.1 errors alike
                raise ValueError("not a PEM RSA private key") from None
        return key


class SmtpConfig(_Section):
    backend: Literal["smtp"] = "smtp"
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["plain", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = "Rapport <noreply@localhost>"
    message_id_domain: str | None = None
    pool_size: int = Field(4, ge=1, le=64)
    timeout: float = Field(30.0, gt=0)
    dkim: list[DkimConfig] = Field(default_factory=list)


class SmsHttpConfig(_Section):
    backend: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT", "GET"] = "POST"
    auth_header: tuple[str, str] | None = None
    body_template: dict[str, Any] | None = None
    sender: str | None = None
    id_path: str = "id"
    timeout: float = Field(10.0, gt=0)


class SmppConfig(_Section):
    backend: Literal["smpp"] = "smpp"
    host: str
    port: int = Field(2775, ge=1, le=65535)
    system_id: str
    password: str
    source_addr: str
    source_addr_ton: int = 5
    source_addr_npi: int = 0
    system_type: str = ""


class WebPushConfig(_Section):
    backend: Literal["webpush"] = "webpush"
    vapid_public_key: str = Field(min_length=1)
    vapid_private_key: str = Field(min_length=1)
    subject: str = Field(pattern=r"^(mailto:|https://)")
    ttl: int = Field(86400, ge=0)


class FcmConfig(_Section):
    backend: Literal["fcm"] = "fcm"
    project_id: str = Field(min_length=1)
    # The service account key file's JSON (client_email, private_key, token_uri).
    service_account: dict[str, Any]
    base_url: str = "https://fcm.googleapis.com"


class TelegramConfig(_Section):
    backend: Literal["telegram"] = "telegram"
    bot_token: str = Field(min_length=1)
    # The bot's @username without the @: deep links are https://t.me/<bot_username>?start=…
    bot_username: str = Field(min_length=1)
    # Telegram echoes it in X-Telegram-Bot-Api-Secret-Token on every webhook call.
    webhook_secret: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]{1,256}$")
    base_url: str = "https://api.telegram.org"


class WebhookConfig(_Section):
    backend: Literal["webhook"] = "webhook"
    # Signs the channel's messages; event subscriptions sign with their own secret.
    secret: str = Field(min_length=1)
    timeout: float = Field(10.0, gt=0)


Email = Annotated[SmtpConfig | MemoryConfig, Field(discriminator="backend")]
Sms = Annotated[SmsHttpConfig | SmppConfig | MemoryConfig, Field(discriminator="backend")]
WebPush = Annotated[WebPushConfig | MemoryConfig, Field(discriminator="backend")]
Push = Annotated[FcmConfig | MemoryConfig, Field(discriminator="backend")]
Telegram = Annotated[TelegramConfig | MemoryConfig, Field(discriminator="backend")]
Webhook = Annotated[WebhookConfig | MemoryConfig, Field(discriminator="backend")]


class ChannelsConfig(BaseModel):
    """One optional section per channel (the names of ``channels.base.CHANNELS``)."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    sms: Sms | None = None
    webpush: WebPush | None = None
    push: Push | None = None
    telegram: Telegram | None = None
    webhook: Webhook | None = None


CHANNEL_NAMES = tuple(ChannelsConfig.model_fields)
Section = (
    SmtpConfig
    | SmsHttpConfig
    | SmppConfig
    | WebPushConfig
    | FcmConfig
    | TelegramConfig
    | WebhookConfig
    | MemoryConfig
)

# Where each backend keeps its secrets ("*": every item of a list). These are what the API
# shows as REDACTED and what a write that sends REDACTED back keeps from the store.
_SECRETS: dict[str, tuple[tuple[str | int, ...], ...]] = {
    "smtp": (("password",), ("dkim", "*", "private_key")),
    "http": (("auth_header", 1),),
    "smpp": (("password",),),
    "webpush": (("vapid_private_key",),),
    "fcm": (("service_account", "private_key"),),
    "telegram": (("bot_token",), ("webhook_secret",)),
    "webhook": (("secret",),),
}
# A list item is the same item in the stored and the new document when these agree, so
# removing the first DKIM key does not hand the second one the first one's secret.
_ITEM_IDENTITY = ("domain", "selector")
_MISSING = object()


@dataclass(frozen=True)
class StoredChannels:
    config: ChannelsConfig
    # None while nothing was ever stored.
    updated_at: datetime | None


def dump(config: ChannelsConfig) -> dict[str, Any]:
    """The stored form: configured sections only, defaults written out."""
    return config.model_dump(mode="json", exclude_none=True)


def load_channels(conn: sa.Connection) -> StoredChannels:
    """The stored configuration; an empty one (nothing configured) when none was stored."""
    row = conn.execute(
        sa.select(app_settings.c.value, app_settings.c.updated_at).where(
            app_settings.c.key == SETTING_KEY
        )
    ).first()
    if row is None:
        return StoredChannels(ChannelsConfig(), None)
    return StoredChannels(parse_channels(row.value), row.updated_at)


def save_channels(conn: sa.Connection, config: ChannelsConfig, now: datetime) -> None:
    stmt = upsert(conn, app_settings).values(key=SETTING_KEY, value=dump(config), updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt)


def parse_channels(doc: Any, stored: ChannelsConfig | None = None) -> ChannelsConfig:
    """Validate a whole configuration; REDACTED secrets are taken from ``stored``.

    Raises InvalidInput whose problems name each bad field as ``email.port`` or
    ``email.dkim[0].private_key``, every problem at once.
    """
    if not isinstance(doc, dict):
        raise InvalidInput([Problem("", "the channel configuration is a JSON object")])
    doc = _keep_secrets(doc, dump(stored) if stored is not None else {})
    problems = _leftover_redactions(doc)
    try:
        config = ChannelsConfig.model_validate(doc)
    except ValidationError as exc:
        problems += _problems(exc, doc)
    if problems:
        # A REDACTED secret with nothing stored also breaks the field's own rules: say it once.
        first: dict[str, Problem] = {}
        for problem in problems:
            first.setdefault(problem.where, problem)
        raise InvalidInput(list(first.values()))
    return config


def with_section(
    stored: ChannelsConfig, channel: str, change: Any, *, merge: bool = True
) -> ChannelsConfig:
    """``stored`` with one channel's section changed, validated like a whole configuration.

    With ``merge`` the change's fields are laid over the stored section when both name the
    same backend (a settings form that sends only what changed); a change naming another
    backend replaces the section. ``change`` None removes the section.
    """
    if channel not in CHANNEL_NAMES:
        raise InvalidInput([Problem("", f"unknown channel {channel!r}")])
    doc = dump(stored)
    if change is None:
        doc.pop(channel, None)
        return parse_channels(doc, stored)
    if not isinstance(change, dict):
        raise InvalidInput([Problem(channel, "a channel's configuration is a JSON object")])
    current = doc.get(channel)
    if (
        merge
        and isinstance(current, dict)
        and change.get("backend", current.get("backend")) == current.get("backend")
    ):
        change = {**current, **change}
    doc[channel] = change
    return parse_channels(doc, stored)


def redacted(config: ChannelsConfig) -> dict[str, Any]:
    """The configuration as the API shows it: every secret replaced by REDACTED."""
    doc = dump(config)
    for channel, section in doc.items():
        for path in _secret_paths(section):
            if _get(section, path) not in (_MISSING, None):
                _set(section, path, REDACTED)
        doc[channel] = section
    return doc


# -- secrets in documents --------------------------------------------------------------


def _secret_paths(section: Any) -> list[tuple[str | int, ...]]:
    """The concrete paths of the secrets in one section document."""
    if not isinstance(section, dict):
        return []
    found: list[tuple[str | int, ...]] = []
    for pattern in _SECRETS.get(str(section.get("backend")), ()):
        found += _expand(section, pattern)
    return found


def _expand(doc: Any, pattern: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    if not pattern:
        return [()]
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        if not isinstance(doc, list):
            return []
        return [(i, *tail) for i, item in enumerate(doc) for tail in _expand(item, rest)]
    child = _get(doc, (head,))
    if child is _MISSING:
        return []
    return [(head, *tail) for tail in _expand(child, rest)]


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        in_dict = isinstance(doc, dict) and isinstance(key, str) and key in doc
        in_list = isinstance(doc, list | tuple) and isinstance(key, int) and 0 <= key < len(doc)
        if not (in_dict or in_list):
            return _MISSING
        doc = doc[key]
    return doc


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _copy(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_copy(v) for v in doc]
    return doc


def _keep_secrets(doc: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with each REDACTED secret replaced by the stored one, where there is one."""
    doc = _copy(doc)
    for channel, section in doc.items():
        old = stored.get(channel)
        if not isinstance(old, dict) or not isinstance(section, dict):
            continue
        if section.get("backend", old.get("backend")) != old.get("backend"):
            continue  # another backend: the stored secrets belong to something else
        for path in _secret_paths({**section, "backend": old.get("backend")}):
            if _get(section, path) == REDACTED:
                value = _stored_secret(section, old, path)
                if value is not _MISSING:
                    _set(section, path, value)
    return doc


def _stored_secret(
    section: dict[str, Any], old: dict[str, Any], path: tuple[str | int, ...]
) -> Any:
    """The stored value at ``path``; list items that are objects (DKIM keys) are matched by
    identity rather than position."""
    old_path: list[str | int] = []
    for depth, key in enumerate(path):
        item = _get(section, path[: depth + 1])
        if isinstance(key, int) and isinstance(item, dict):
            candidates = _get(old, tuple(old_path))
            if not isinstance(candidates, list):
                return _MISSING
            wanted = tuple(item.get(k) for k in _ITEM_IDENTITY)
            match = [
                i
                for i, c in enumerate(candidates)
                if isinstance(c, dict) and tuple(c.get(k) for k in _ITEM_IDENTITY) == wanted
            ]
            if not match:
                return _MISSING
            old_path.append(match[0])
        else:
            old_path.append(key)
    value = _get(old, tuple(old_path))
    return _MISSING if value in (None, REDACTED) else value


def _leftover_redactions(doc: dict[str, Any]) -> list[Problem]:
    return [
        Problem(
            _where((channel, *path)), f"{REDACTED!r} keeps the stored secret, but none is stored"
        )
        for channel, section in doc.items()
        for path in _secret_paths(section)
        if _get(section, path) == REDACTED
    ]


# -- error locations -------------------------------------------------------------------


def _problems(exc: ValidationError, doc: dict[str, Any]) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        reason = error["msg"].removeprefix("Value error, ")
        if len(loc) >= 2:
            section = doc.get(str(loc[0]))
            if isinstance(section, dict) and loc[1] == section.get("backend"):
                del loc[1]  # pydantic names the union member; the operator wrote none
        if error["type"] == "union_tag_invalid":
            loc.append("backend")
            reason = f"must be one of {_backends(str(loc[0]))}"
        elif error["type"] == "union_tag_not_found":
            loc.append("backend")
            reason = f"required: one of {_backends(str(loc[0]))}"
        problems.append(Problem(_where(tuple(loc)), reason))
    return problems


def _backends(channel: str) -> str:
    field = ChannelsConfig.model_fields.get(channel)
    if field is None:
        return ""
    return ", ".join(str(m.model_fields["backend"].default) for m in _members(field.annotation))


def _members(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        else:
            found += _members(arg)
    return found


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out

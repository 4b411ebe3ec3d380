"""Channel configuration: which backend each channel uses and its settings.

Kept in the store (``app_settings['channels']``) so an operator changes it from the API or
the settings page without a restart; validated by these models on every write, so a
stored configuration always builds. Secrets (passwords, tokens, private keys) are stored
as given and never returned by the API (see ``redacted``).

Each channel section names its ``backend``; ``memory`` keeps messages in the process
(tests, the demo). A channel without a section is not configured: its messages wait in
the outbox until it is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    # PEM for rsa; the base64 32-byte seed for ed25519.
    private_key: str = Field(min_length=1)
    algorithm: Literal["rsa", "ed25519"] = "rsa"


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
    method: Literal["POST", "GET"] = "POST"
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

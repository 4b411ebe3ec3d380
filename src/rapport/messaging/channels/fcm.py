"""Mobile push over Firebase Cloud Messaging's HTTP v1 API.

``to`` is the app's FCM registration token. Each message is one
``POST {base_url}/v1/projects/{project_id}/messages:send`` with
``{"message": {"token", "notification": {"title", "body"}, "data"}}``: the notification
shows even when the app is not running, and ``data`` carries what the app needs to react
to a tap (a URL, the message id). FCM only accepts string values in ``data``, so other
values are sent as JSON text rather than refused.

Authentication is OAuth2 with the service account's own key (the JWT bearer grant,
RFC 7523): an RS256 assertion signed with the key file's ``private_key`` is exchanged at
its ``token_uri`` for an access token. We sign it ourselves with PyJWT instead of pulling
in google-auth for one POST. The token lives an hour and is reused until five minutes
before it expires; one lock makes a concurrent batch fetch it once, and a 401 (revoked
or rotated early) drops it and retries the message once with a fresh one.

Status mapping, from what each answer means for the token: 200 → sent (``provider_id``
is the message ``name``); 404 ``UNREGISTERED`` (the app was uninstalled or the token
expired), 400 ``INVALID_ARGUMENT`` (a malformed token or message) and 403
``SENDER_ID_MISMATCH`` (the token belongs to another project) → rejected, the error
starting with that code so the caller can revoke the token (``token_gone``); 429 and 5xx
→ failed, and a ``Retry-After`` pauses the backend like Telegram's flood limit does;
401/403 otherwise and a failing token endpoint → failed: the operator's setup is wrong,
not the recipient.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rapport.clock import Clock, SystemClock
from rapport.messaging.channels._http import HttpBackend, json_or_none, short
from rapport.messaging.channels.base import OutgoingMessage, SendResult

DEFAULT_BASE_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # seconds; Google refuses assertions that live longer
REFRESH_MARGIN = 300  # seconds before expiry when a cached access token is replaced
MAX_PAUSE = 600.0  # seconds: a Retry-After longer than this is the dispatcher's business
MAX_TOKEN_LENGTH = 4096
# Keys FCM reserves in ``data``; a message using them is refused by FCM every time.
RESERVED_DATA_KEYS = ("from", "notification", "message_type")
RESERVED_DATA_PREFIXES = ("google", "gcm")


@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a service account key file (JSON) the grant needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    token_uri: str
    private_key_id: str | None = None

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ServiceAccount:
        """Checked when the backend is built, so a broken key file fails configuration,
        not every send."""
        missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
        if missing:
            raise ValueError(f"the service account lacks {', '.join(missing)}")
        try:
            key = serialization.load_pem_private_key(str(info["private_key"]).encode(), None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the service account's private_key is not a PEM key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service account's private_key must be an RSA key")
        token_uri = str(info["token_uri"])
        if not token_uri.startswith(("https://", "http://")):
            raise ValueError("the service account's token_uri must be an http(s) URL")
        key_id = info.get("private_key_id")
        return cls(str(info["client_email"]), key, token_uri, str(key_id) if key_id else None)


class TokenError(Exception):
    """The token endpoint did not give us an access token."""


def token_gone(result: SendResult) -> bool:
    """Whether a result says the registration token can never be used again, so the
    subscription should be revoked (``push_subscriptions.revoke``).

    An ``INVALID_ARGUMENT`` counts only when FCM blames the token: the same code also
    answers a malformed message, and that is the template's fault, not the device's.
    """
    error = result.error or ""
    if result.status != "rejected":
        return False
    if error.startswith(("UNREGISTERED", "SENDER_ID_MISMATCH")):
        return True
    return error.startswith("INVALID_ARGUMENT") and (
        error.startswith("INVALID_ARGUMENT (message.token)") or "registration token" in error
    )


class FcmBackend(HttpBackend):
    """``service_account`` is the key file's JSON as a dict; ``clock`` dates the assertion
    and ages the cached token, so it must be the wall clock outside tests (Google checks
    the assertion's times against its own)."""

    channel = "push"

    def __init__(
        self,
        project_id: str,
        service_account: Mapping[str, Any],
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        concurrency: int = 20,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency)
        if not project_id:
            raise ValueError("a Firebase project id is required")
        self.project_id = project_id
        self.account = ServiceAccount.from_info(service_account)
        self.base_url = base_url.rstrip("/")
        self.clock = clock or SystemClock()
        self._access: tuple[str, float] | None = None  # (token, use until: clock timestamp)
        self._lock: asyncio.Lock | None = None
        self._paused_until = 0.0  # time.monotonic() before which we do not call FCM
        self.token_fetches = 0  # how many access tokens were fetched; for operators' metrics

    async def close(self) -> None:
        await super().close()
        self._lock = None  # a lock belongs to one event loop; the next use may be another

    def assertion(self) -> str:
        """The signed JWT the token endpoint exchanges for an access token."""
        now = int(self.clock.now().timestamp())
        claims = {
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        headers = {"kid": self.account.private_key_id} if self.account.private_key_id else None
        return jwt.encode(claims, self.account.private_key, algorithm="RS256", headers=headers)

    async def access_token(self, *, stale: str | None = None) -> str:
        """A valid access token; ``stale`` names one FCM refused, which is then replaced
        (unless a concurrent send already replaced it)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self.clock.now().timestamp()
            if self._access is not None:
                token, until = self._access
                if token != stale and until > now:
                    return token
            self._access = None
            token, lifetime = await self._fetch_token()
            margin = min(REFRESH_MARGIN, lifetime / 2)
            self._access = (token, now + lifetime - margin)
            return token

    async def _fetch_token(self) -> tuple[str, float]:
        self.token_fetches += 1
        try:
            response = await self.http().post(
                self.account.token_uri,
                data={"grant_type": GRANT_TYPE, "assertion": self.assertion()},
            )
        except httpx.TimeoutException:
            raise TokenError("access token: the token endpoint timed out") from None
        except httpx.TransportError as exc:
            raise TokenError(f"access token: connection error: {exc!r}") from None
        body = json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            detail = (
                f"{body.get('error')}: {body.get('error_description', '')}".strip(": ")
                if isinstance(body, dict)
                else short(response.text)
            )
            raise TokenError(f"access token: HTTP {response.status_code}: {detail}")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("access token: the answer has no access_token")
        try:
            lifetime = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, max(lifetime, 1.0)

    async def send_one(self, msg: OutgoingMessage) -> SendResult:
        wait = self._paused_until - time.monotonic()
        if wait > 0:
            return SendResult(msg.id, "failed", error=_retry_after_text("paused", wait))
        try:
            body = self.payload(msg)
        except ValueError as exc:
            return SendResult(msg.id, "rejected", error=str(exc))
        url = f"{self.base_url}/v1/projects/{self.project_id}/messages:send"
        stale: str | None = None
        for _ in range(2):  # the second round only after a 401, with a fresh token
            try:
                token = await self.access_token(stale=stale)
            except TokenError as exc:
                return SendResult(msg.id, "failed", error=str(exc))
            response = await self.http().post(
                url, content=body, headers=_auth(token, "application/json")
            )
            if response.status_code != 401:
                break
            stale = token
        return self._result(msg, response)

    def payload(self, msg: OutgoingMessage) -> bytes:
        """The request body; ValueError for a message FCM would refuse every time."""
        token = msg.to.strip()
        if not token:
            raise ValueError("INVALID_ARGUMENT: no recipient token")
        if len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise ValueError("INVALID_ARGUMENT (message.token): not a registration token")
        if not msg.body_text.strip() and not msg.subject:
            raise ValueError("empty notification: no title and no text")
        data: dict[str, str] = {"id": msg.id}
        for key, value in msg.data.items():
            if key in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
                raise ValueError(f"data key {key!r} is reserved by FCM")
            data[key] = value if isinstance(value, str) else orjson.dumps(value).decode()
        notification = {"body": msg.body_text}
        if msg.subject:
            notification["title"] = msg.subject
        return orjson.dumps(
            {"message": {"token": token, "notification": notification, "data": data}}
        )

    def _result(self, msg: OutgoingMessage, response: httpx.Response) -> SendResult:
        status = response.status_code
        body = json_or_none(response)
        if status == 200:
            name = body.get("name") if isinstance(body, dict) else None
            return SendResult(msg.id, "sent", provider_id=str(name) if name else None)
        code, field, message = _error_of(body, response)
        if status in (400, 404) or code == "SENDER_ID_MISMATCH":
            reason = code or ("UNREGISTERED" if status == 404 else "INVALID_ARGUMENT")
            where = f" ({field})" if field else ""
            return SendResult(msg.id, "rejected", error=f"{reason}{where}: {message}")
        error = f"{code} (HTTP {status}): {message}" if code else f"HTTP {status}: {message}"
        pause = _retry_after(response.headers.get("Retry-After"))
        if pause is not None and (status == 429 or status >= 500):
            pause = min(pause, MAX_PAUSE)
            self._paused_until = max(self._paused_until, time.monotonic() + pause)
            error += f" ({_retry_after_text('rate limited', pause)})"
        return SendResult(msg.id, "failed", error=error)


def _auth(token: str, content_type: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": content_type}


def _error_of(body: Any, response: httpx.Response) -> tuple[str | None, str | None, str]:
    """FCM's most specific error code (the FcmError detail, else the RPC status), the
    request field it blames (``message.token`` for a bad token) and its text."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, short(response.text) or response.reason_phrase
    code, field = error.get("status"), None
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("errorCode") and code == error.get("status"):
            code = detail["errorCode"]
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") and field is None:
                field = str(violation["field"])
    return (str(code) if code else None), field, short(str(error.get("message") or ""))


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    # Real time, not the injected clock: the date is the provider's, on the wall clock.
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _retry_after_text(what: str, seconds: float) -> str:
    return f"{what}: retry after {max(1, round(seconds))} s"

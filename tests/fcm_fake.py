"""A local fake of Google's OAuth2 token endpoint and FCM's HTTP v1 send, over real HTTP.

The token endpoint does what Google's does with a service-account assertion: it verifies
the RS256 signature with the account's public key, the issuer, audience, scope and
lifetime, and only then issues an access token. The send endpoint accepts only tokens it
issued and has not revoked, and answers by the registration token it is given, so a test
picks the provider's answer by choosing the recipient:

* ``unregistered`` → 404 UNREGISTERED (the app was uninstalled);
* ``bad-token`` → 400 INVALID_ARGUMENT blaming ``message.token``;
* ``busy`` → 503 UNAVAILABLE with ``Retry-After: 30``;
* ``quota`` → 429 QUOTA_EXCEEDED without Retry-After;
* anything else → 200 with the message ``name``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.channel_fakes import serve

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
CLIENT_EMAIL = "rapport-push@shop-test.iam.gserviceaccount.com"


def service_account(token_uri: str, key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
    """A service account key file as the Firebase console gives it, with a fresh key."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "shop-test",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri,
    }


@dataclass
class FakeFcm:
    """State shared between the test and the fake server."""

    public_key: rsa.RSAPublicKey
    now: Callable[[], float] = time.time  # Google's clock: a test shares its simulated one
    project_id: str = "shop-test"
    url: str = ""
    expires_in: int = 3600
    token_status: int = 200  # set to 400/500 to make the token endpoint fail
    accept_tokens: bool = True  # False: every access token is refused, even fresh ones
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)  # {"auth", "body"}
    refused: list[str] = field(default_factory=list)  # why assertions were refused

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def revoke_all(self) -> None:
        """Every issued access token stops working, as after a key rotation."""
        self.revoked.update(self.issued)

    def delivered(self) -> list[dict[str, Any]]:
        return [s["body"]["message"] for s in self.sends if s["status"] == 200]


def _fcm_error(status: int, rpc: str, message: str, **extra: Any) -> JSONResponse:
    details: list[dict[str, Any]] = []
    if "error_code" in extra:
        details.append(
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": extra["error_code"],
            }
        )
    if "field" in extra:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": extra["field"], "description": message}],
            }
        )
    body = {"error": {"code": status, "message": message, "status": rpc, "details": details}}
    return JSONResponse(body, status_code=status, headers=extra.get("headers"))


def _app(state: FakeFcm) -> Starlette:
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion")),
                state.public_key,
                algorithms=["RS256"],
                audience=state.token_uri,
                issuer=CLIENT_EMAIL,
                options={"require": ["iss", "aud", "iat", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            state.refused.append(str(exc))
            return JSONResponse(
                {"error": "invalid_grant", "error_description": str(exc)}, status_code=400
            )
        now = state.now()
        if not claims["iat"] - 60 <= now < claims["exp"]:
            state.refused.append(f"assertion not valid now: {claims}")
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if claims.get("scope") != SCOPE or claims["exp"] - claims["iat"] > 3600:
            state.refused.append(f"bad claims {claims}")
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        state.assertions.append(
            {"claims": claims, "header": jwt.get_unverified_header(str(form["assertion"]))}
        )
        if state.token_status != 200:
            return JSONResponse(
                {"error": "internal_failure", "error_description": "try later"},
                status_code=state.token_status,
            )
        access = f"ya29.fake-{len(state.issued) + 1}-{time.monotonic_ns()}"
        state.issued.append(access)
        return JSONResponse(
            {"access_token": access, "expires_in": state.expires_in, "token_type": "Bearer"}
        )

    async def send(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        body = await request.json()
        record = {"auth": auth, "body": body, "status": 0}
        state.sends.append(record)
        access = auth.removeprefix("Bearer ")
        if not state.accept_tokens or access not in state.issued or access in state.revoked:
            record["status"] = 401
            return _fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication")
        if request.path_params["project"] != state.project_id:
            record["status"] = 403
            return _fcm_error(403, "PERMISSION_DENIED", "Permission denied")
        message = body["message"]
        assert all(isinstance(v, str) for v in message.get("data", {}).values())
        target = message["token"]
        answers = {
            "unregistered": lambda: _fcm_error(
                404, "NOT_FOUND", "Requested entity was not found.", error_code="UNREGISTERED"
            ),
            "bad-token": lambda: _fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                error_code="INVALID_ARGUMENT",
                field="message.token",
            ),
            "busy": lambda: _fcm_error(
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                error_code="UNAVAILABLE",
                headers={"Retry-After": "30"},
            ),
            "quota": lambda: _fcm_error(
                429, "RESOURCE_EXHAUSTED", "Quota exceeded.", error_code="QUOTA_EXCEEDED"
            ),
        }
        if target in answers:
            response = answers[target]()
            record["status"] = response.status_code
            return response
        record["status"] = 200
        return JSONResponse(
            {"name": f"projects/{state.project_id}/messages/0:{len(state.sends)}%fake"}
        )

    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", send, methods=["POST"]),
        ]
    )


@contextmanager
def fake_fcm(
    public_key: rsa.RSAPublicKey, now: Callable[[], float] = time.time
) -> Iterator[FakeFcm]:
    state = FakeFcm(public_key, now)
    with serve(_app(state)) as url:
        state.url = url
        yield state

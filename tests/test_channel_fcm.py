"""FCM HTTP v1 against a local fake of Google's token endpoint and FCM over real HTTP.

The fake verifies the service-account assertion's RS256 signature with the public key of
an account generated here, so a pass proves Google would accept our grant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from rapport.clock import SimulatedClock
from rapport.messaging.channels.base import OutgoingMessage, SendResult
from rapport.messaging.channels.fcm import SCOPE, FcmBackend, token_gone
from tests.fcm_fake import CLIENT_EMAIL, FakeFcm, fake_fcm, service_account


@pytest.fixture(scope="module")
def account_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def fcm(account_key: rsa.RSAPrivateKey, clock: SimulatedClock) -> Iterator[FakeFcm]:
    # The fake checks the assertion's times against the test's clock, as Google does
    # against its own.
    with fake_fcm(account_key.public_key(), lambda: clock.now().timestamp()) as state:
        yield state


def _backend(fake: FakeFcm, key: rsa.RSAPrivateKey, clock: SimulatedClock) -> FcmBackend:
    return FcmBackend(
        fake.project_id, service_account(fake.token_uri, key), base_url=fake.url, clock=clock
    )


def _msg(mid: str, token: str, **data: object) -> OutgoingMessage:
    return OutgoingMessage(
        mid, "push", token, "Your cart misses you", subject="Still thinking?", data=dict(data)
    )


def _send(backend: FcmBackend, *batches: list[OutgoingMessage]) -> list[list[SendResult]]:
    """Each batch in turn, on one event loop, then close: as the dispatcher does."""

    async def run() -> list[list[SendResult]]:
        try:
            return [await backend.send(batch) for batch in batches]
        finally:
            await backend.close()

    return asyncio.run(run())


def test_sends_a_notification_with_a_verified_service_account_grant(fcm, account_key, clock):  # type: ignore[no-untyped-def]
    backend = _backend(fcm, account_key, clock)
    [[result]] = _send(backend, [_msg("m1", "device-1", url="https://shop.example/cart", n=3)])
    assert result == SendResult(
        "m1", "sent", provider_id="projects/shop-test/messages/0:1%fake", error=None
    )
    [assertion] = fcm.assertions
    claims = assertion["claims"]
    assert claims["iss"] == CLIENT_EMAIL and claims["scope"] == SCOPE
    assert claims["aud"] == fcm.token_uri
    assert claims["exp"] - claims["iat"] == 3600
    assert assertion["header"] == {"alg": "RS256", "kid": "key-1", "typ": "JWT"}
    [send] = fcm.sends
    assert send["auth"] == f"Bearer {fcm.issued[0]}"
    assert send["body"] == {
        "message": {
            "token": "device-1",
            "notification": {"title": "Still thinking?", "body": "Your cart misses you"},
            # FCM takes strings only: other values travel as JSON text.
            "data": {"id": "m1", "url": "https://shop.example/cart", "n": "3"},
        }
    }


def test_one_access_token_serves_concurrent_sends_until_shortly_before_expiry(  # type: ignore[no-untyped-def]
    fcm, account_key, clock
):
    backend = _backend(fcm, account_key, clock)
    first = [_msg(f"a{i}", f"device-{i}") for i in range(8)]
    second = [_msg("b1", "device-1")]
    results = _send(backend, first, second)
    assert all(r.status == "sent" for batch in results for r in batch)
    assert len(fcm.issued) == 1 and backend.token_fetches == 1
    assert {s["auth"] for s in fcm.sends} == {f"Bearer {fcm.issued[0]}"}

    clock.advance(timedelta(minutes=50))  # 10 minutes left: still used
    _send(backend, [_msg("c1", "device-1")])
    assert len(fcm.issued) == 1
    clock.advance(timedelta(minutes=6))  # under 5 minutes left: replaced before it lapses
    _send(backend, [_msg("d1", "device-1")])
    assert len(fcm.issued) == 2
    assert fcm.sends[-1]["auth"] == f"Bearer {fcm.issued[1]}"


def test_a_401_fetches_a_fresh_token_and_retries_once(fcm, account_key, clock):  # type: ignore[no-untyped-def]
    backend = _backend(fcm, account_key, clock)
    _send(backend, [_msg("m1", "device-1")])
    fcm.revoke_all()  # e.g. the key was rotated: the cached token is refused
    [results] = _send(backend, [_msg("m2", "device-1"), _msg("m3", "device-2")])
    assert [r.status for r in results] == ["sent", "sent"]
    assert len(fcm.issued) == 2  # one refresh for the whole batch, not one per message
    assert sorted(s["status"] for s in fcm.sends) == [200, 200, 200, 401, 401]


def test_a_401_with_a_fresh_token_too_is_a_failure(fcm, account_key, clock):  # type: ignore[no-untyped-def]
    fcm.accept_tokens = False
    backend = _backend(fcm, account_key, clock)
    [[result]] = _send(backend, [_msg("m1", "device-1")])
    assert result.status == "failed"
    assert result.error == "UNAUTHENTICATED (HTTP 401): Request had invalid authentication"
    assert len(fcm.sends) == 2  # the first try and one retry with a fresh token, no more


@pytest.mark.parametrize(
    ("token", "prefix"),
    [("unregistered", "UNREGISTERED:"), ("bad-token", "INVALID_ARGUMENT (message.token):")],
)
def test_a_dead_token_is_rejected_and_says_so(fcm, account_key, clock, token, prefix):  # type: ignore[no-untyped-def]
    backend = _backend(fcm, account_key, clock)
    [[result]] = _send(backend, [_msg("m1", token)])
    assert result.status == "rejected"
    assert result.error is not None and result.error.startswith(prefix), result.error
    assert token_gone(result)


def test_503_fails_and_pauses_the_backend_for_retry_after(fcm, account_key, clock):  # type: ignore[no-untyped-def]
    backend = _backend(fcm, account_key, clock)
    [[busy], [later]] = _send(backend, [_msg("m1", "busy")], [_msg("m2", "device-1")])
    assert busy.status == "failed" and not token_gone(busy)
    assert busy.error == (
        "UNAVAILABLE (HTTP 503): The service is currently unavailable. "
        "(rate limited: retry after 30 s)"
    )
    # The rest fails fast instead of adding load to an overloaded service.
    assert later.status == "failed" and later.error == "paused: retry after 30 s"
    assert [s["body"]["message"]["token"] for s in fcm.sends] == ["busy"]


def test_429_without_retry_after_fails_without_pausing(fcm, account_key, clock):  # type: ignore[no-untyped-def]
    backend = _backend(fcm, account_key, clock)
    [[quota], [later]] = _send(backend, [_msg("m1", "quota")], [_msg("m2", "device-1")])
    assert quota.status == "failed" and quota.error is not None
    assert quota.error.startswith("QUOTA_EXCEEDED (HTTP 429)")
    assert later.status == "sent"


def test_a_failing_token_endpoint_fails_the_messages_without_sending(fcm, account_key, clock):  # type: ignore[no-untyped-def]
    fcm.token_status = 503
    backend = _backend(fcm, account_key, clock)
    results = _send(backend, [_msg("m1", "device-1"), _msg("m2", "device-2")])[0]
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error == "access token: HTTP 503: internal_failure: try later"
    assert fcm.sends == []
    fcm.token_status = 200  # recovered: the next send fetches a token and goes out
    assert _send(backend, [_msg("m3", "device-1")])[0][0].status == "sent"


def test_a_key_google_does_not_know_fails_at_the_token_endpoint(fcm, clock):  # type: ignore[no-untyped-def]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    backend = _backend(fcm, stranger, clock)
    [[result]] = _send(backend, [_msg("m1", "device-1")])
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("access token: HTTP 400: invalid_grant")
    assert fcm.refused and fcm.sends == []


def test_unreachable_token_endpoint_is_a_failure(account_key, clock):  # type: ignore[no-untyped-def]
    from tests.channel_fakes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    backend = FcmBackend("p", service_account(f"{url}/token", account_key), base_url=url)
    [[result]] = _send(backend, [_msg("m1", "device-1")])
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("access token: connection error")


def test_messages_fcm_would_always_refuse_are_rejected_before_any_request(  # type: ignore[no-untyped-def]
    fcm, account_key, clock
):
    backend = _backend(fcm, account_key, clock)
    results = _send(
        backend,
        [
            _msg("m1", "  "),
            _msg("m2", "two words"),
            _msg("m3", "device-1", from_="x", **{"google.key": "v"}),
            OutgoingMessage("m4", "push", "device-1", "  "),
        ],
    )[0]
    assert [r.status for r in results] == ["rejected"] * 4
    assert results[0].error == "INVALID_ARGUMENT: no recipient token"
    assert token_gone(results[1]) and not token_gone(results[0])
    assert results[2].error == "data key 'google.key' is reserved by FCM"
    assert results[3].error == "empty notification: no title and no text"
    assert fcm.sends == [] and fcm.issued == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"private_key": "not a key"}, "private_key is not a PEM key"),
        ({"client_email": ""}, "lacks client_email"),
        ({"token_uri": "ftp://x"}, r"token_uri must be an http\(s\) URL"),
    ],
)
def test_a_broken_service_account_fails_configuration(account_key, change, message):  # type: ignore[no-untyped-def]
    info = {**service_account("https://oauth2.example/token", account_key), **change}
    with pytest.raises(ValueError, match=message):
        FcmBackend("shop-test", info)
    with pytest.raises(ValueError, match="project id"):
        FcmBackend("", service_account("https://oauth2.example/token", account_key))

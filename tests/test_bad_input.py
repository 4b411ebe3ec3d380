"""Every kind of bad input: a clear 4xx naming the field, and not one row stored."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.access.keys import create_key, revoke_key
from tests.conftest import T0, basic, bearer
from tests.helpers import table_counts


@pytest.fixture
def unchanged(engine: sa.Engine, write_key: str, secret_key: str) -> Iterator[None]:
    """Asserts that the test's requests left every table exactly as it was."""
    before = table_counts(engine)
    yield
    assert table_counts(engine) == before


def _problem(r: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"]
    text = body["message"] + " " + " ".join(f"{e['where']}: {e['reason']}" for e in body["errors"])
    for fragment in fragments:
        assert fragment in text, (fragment, body)
    return body


TRACK = {"userId": "u1", "event": "Clicked"}

# (endpoint, body, the field the answer must name, a word of the reason)
BAD_MESSAGES = [
    ("track", {"userId": {"id": 1}, "event": "Clicked"}, "userId", "string"),
    ("track", {"userId": True, "event": "Clicked"}, "userId", "boolean"),
    ("track", {"userId": "u1", "event": "Clicked", "properties": [1, 2]}, "properties", "dict"),
    ("track", {"userId": "u1", "event": ""}, "event", "at least 1"),
    ("track", {"userId": "u1"}, "event", "required"),
    ("track", {"userId": "u1", "event": "X", "timestamp": "yesterday"}, "timestamp", "datetime"),
    ("track", {"userId": "u1", "event": "X", "context": "web"}, "context", "dict"),
    ("identify", {"userId": "u1", "traits": {"birthday": "17 May"}}, "traits.birthday", "date"),
    ("identify", {"userId": "u1", "traits": {"birthday": 1990}}, "traits.birthday", "date"),
    ("identify", {"userId": "u1", "traits": {"email": "ann@"}}, "traits.email", "email"),
    ("identify", {"userId": "u1", "traits": {"phone": "12"}}, "traits.phone", "phone"),
    ("identify", {"userId": "u1", "traits": {"timezone": "Mars/Base"}}, "traits.timezone", "zone"),
    ("identify", {"userId": "u1", "traits": {"firstName": ["A"]}}, "traits.firstName", "string"),
    (
        "identify",
        {"userId": "u1", "traits": {"consents": {"fax": True}}},
        "traits.consents.fax",
        "channel",
    ),
    (
        "identify",
        {"userId": "u1", "traits": {"consents": {"email": "maybe"}}},
        "traits.consents.email",
        "consent status",
    ),
    ("identify", {"userId": "u1", "traits": "vip"}, "traits", "dict"),
    (
        "track",
        {"anonymousId": "a", "event": "Call Completed", "context": {"traits": {"phone": "x"}}},
        "context.traits.phone",
        "phone",
    ),
    (
        "track",
        {"userId": "u1", "event": "Product Added", "properties": {"product_id": "p", "price": "9"}},
        "properties.price",
        "number",
    ),
    (
        "track",
        {
            "userId": "u1",
            "event": "Product Added",
            "properties": {"product_id": "p", "quantity": "2"},
        },
        "properties.quantity",
        "number",
    ),
    (
        "track",
        {
            "userId": "u1",
            "event": "Order Completed",
            "properties": {"order_id": "o", "total": "9.5"},
        },
        "properties.total",
        "number",
    ),
    (
        "track",
        {"userId": "u1", "event": "Order Completed", "properties": {"total": 9.5}},
        "properties.order_id",
        "order_id",
    ),
    (
        "track",
        {"userId": "u1", "event": "Order Refunded", "properties": {}},
        "properties.order_id",
        "order_id",
    ),
    ("track", {"userId": "u1", "event": "Product Viewed"}, "properties.product_id", "product_id"),
    (
        "track",
        {
            "userId": "u1",
            "event": "Order Completed",
            "properties": {"order_id": "o", "products": [{"product_id": "p", "price": "1"}]},
        },
        "properties.products[0].price",
        "number",
    ),
    (
        "track",
        {"userId": "u1", "event": "Checkout Started", "properties": {"products": {"p": 1}}},
        "properties.products",
        "list",
    ),
    ("track", {"event": "Clicked"}, "userId or anonymousId", "required"),
    (
        "track",
        {"userId": "  ", "anonymousId": "", "event": "X"},
        "userId or anonymousId",
        "required",
    ),
    ("group", {"userId": "u1"}, "groupId", "required"),
    ("alias", {"userId": "u1"}, "previousId", "required"),
    ("alias", {"anonymousId": "a1", "previousId": "a0"}, "userId", "required"),
]


@pytest.mark.parametrize(("kind", "body", "field", "reason"), BAD_MESSAGES)
def test_bad_message(
    client: TestClient,
    write_key: str,
    unchanged: None,
    kind: str,
    body: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    r = client.post(f"/v1/{kind}", json=body, headers=basic(write_key))
    _problem(r, 400, field, reason)
    # The same message inside a batch is named by its index.
    r = client.post("/v1/batch", json={"batch": [{**body, "type": kind}]}, headers=basic(write_key))
    _problem(r, 400, f"batch[0].{field}" if field[0].islower() and "or" not in field else field)


def test_malformed_json(client: TestClient, write_key: str, unchanged: None) -> None:
    for path in ("/v1/track", "/v1/batch"):
        r = client.post(path, content=b'{"userId": "u1", "event": ', headers=basic(write_key))
        _problem(r, 400, "body", "malformed JSON")
        r = client.post(path, content=b"", headers=basic(write_key))
        _problem(r, 400, "body", "malformed JSON")


@pytest.mark.parametrize("body", [[TRACK], "track", 42, None])
def test_body_not_an_object(client: TestClient, write_key: str, unchanged: None, body: Any) -> None:
    for path in ("/v1/track", "/v1/batch"):
        r = client.post(path, content=orjson.dumps(body), headers=basic(write_key))
        _problem(r, 400, "body", "JSON object")


@pytest.mark.parametrize(
    ("batch", "reason"),
    [(None, "is required"), ([], "is empty"), ({"0": TRACK}, "list"), ("x", "list")],
)
def test_batch_field(
    client: TestClient, write_key: str, unchanged: None, batch: Any, reason: str
) -> None:
    body = {} if batch is None else {"batch": batch}
    _problem(client.post("/v1/batch", json=body, headers=basic(write_key)), 400, "batch", reason)


def test_batch_with_several_bad_messages_is_rejected_whole(
    client: TestClient, write_key: str, unchanged: None
) -> None:
    batch = [
        {"type": "track", "userId": "ok-1", "event": "Fine"},
        {"type": "purchase", "userId": "u1"},
        {"type": "identify", "userId": "ok-2", "traits": {"firstName": "Ann"}},
        {"type": "track", "event": "No one"},
        {"type": "identify", "userId": "u3", "traits": {"email": "nope", "birthday": "soon"}},
        "not an object",
        {"userId": "u5", "event": "No type"},
        {"type": "track", "userId": "ok-3", "event": "Fine too"},
    ]
    r = client.post("/v1/batch", json={"batch": batch}, headers=basic(write_key))
    body = _problem(r, 400)
    by_index: dict[str, list[str]] = {}
    for e in body["errors"]:
        by_index.setdefault(e["where"].split("]")[0] + "]", []).append(e["reason"])
    assert sorted(by_index) == ["batch[1]", "batch[3]", "batch[4]", "batch[5]", "batch[6]"]
    assert "unknown message type 'purchase'" in by_index["batch[1]"][0]
    assert by_index["batch[3]"] == ["either userId or anonymousId is required"]
    assert len(by_index["batch[4]"]) == 2
    assert by_index["batch[5]"] == ["each message must be a JSON object"]
    assert by_index["batch[6]"] == ["type is required"]
    wheres = {e["where"] for e in body["errors"]}
    assert {"batch[4].traits.email", "batch[4].traits.birthday"} <= wheres


def test_import_rejects_bad_messages_the_same_way(
    client: TestClient, write_key: str, unchanged: None
) -> None:
    batch = [
        TRACK | {"type": "track"},
        {"type": "track", "userId": "u", "event": "X", "properties": 1},
    ]
    r = client.post("/v1/import", json={"batch": batch}, headers=basic(write_key))
    _problem(r, 400, "batch[1].properties")


def _padded(size: int) -> dict[str, Any]:
    return {"userId": "u1", "event": "Big", "properties": {"blob": "x" * size}}


def test_oversize_message(client: TestClient, write_key: str, unchanged: None) -> None:
    r = client.post("/v1/track", json=_padded(33 * 1024), headers=basic(write_key))
    _problem(r, 413, "32768 bytes")
    # In a batch under 500 KB, the one oversize message is named.
    batch = [TRACK | {"type": "track"}, _padded(33 * 1024) | {"type": "track"}]
    r = client.post("/v1/batch", json={"batch": batch}, headers=basic(write_key))
    _problem(r, 400, "batch[1]", "limit is 32768 bytes")


def test_message_just_under_the_limit_is_accepted(
    client: TestClient, engine: sa.Engine, write_key: str
) -> None:
    r = client.post("/v1/track", json=_padded(31 * 1024), headers=basic(write_key))
    assert r.status_code == 200, r.text


def _big_batch() -> bytes:
    return orjson.dumps({"batch": [_padded(20 * 1024) | {"type": "track"} for _ in range(30)]})


def test_oversize_batch(client: TestClient, write_key: str, unchanged: None) -> None:
    body = _big_batch()
    assert len(body) > 500 * 1024
    _problem(client.post("/v1/batch", content=body, headers=basic(write_key)), 413, "512000")


def test_oversize_batch_when_gzipped(client: TestClient, write_key: str, unchanged: None) -> None:
    packed = gzip.compress(_big_batch())
    assert len(packed) < 10 * 1024  # small on the wire, too big once inflated
    headers = basic(write_key) | {"Content-Encoding": "gzip"}
    r = client.post("/v1/batch", content=packed, headers=headers)
    _problem(r, 413, "512000")
    r = client.post(
        "/v1/track", content=gzip.compress(orjson.dumps(_padded(40_000))), headers=headers
    )
    _problem(r, 413, "32768")


def test_bad_gzip(client: TestClient, write_key: str, unchanged: None) -> None:
    headers = basic(write_key) | {"Content-Encoding": "gzip"}
    r = client.post("/v1/track", content=orjson.dumps(TRACK), headers=headers)
    _problem(r, 400, "body", "gzip")
    truncated = gzip.compress(orjson.dumps({"batch": [TRACK | {"type": "track"}] * 50}))[:-30]
    r = client.post("/v1/batch", content=truncated, headers=headers)
    _problem(r, 400, "body", "gzip")


def test_unsupported_content_encoding(client: TestClient, write_key: str, unchanged: None) -> None:
    headers = basic(write_key) | {"Content-Encoding": "br"}
    _problem(client.post("/v1/track", json=TRACK, headers=headers), 415, "content-encoding")


def test_missing_write_key(client: TestClient, unchanged: None) -> None:
    _problem(client.post("/v1/track", json=TRACK), 401, "write key", "writeKey")
    _problem(client.post("/v1/batch", json={"batch": [TRACK | {"type": "track"}]}), 401, "writeKey")
    r = client.post("/v1/track", json=TRACK, headers={"Authorization": "Basic !!not-base64"})
    _problem(r, 401, "authorization", "Basic")


def test_wrong_write_key(client: TestClient, unchanged: None) -> None:
    _problem(client.post("/v1/track", json=TRACK, headers=basic("wk_nope")), 401, "not valid")
    r = client.post("/v1/track", json=TRACK | {"writeKey": "wk_nope"})
    _problem(r, 401, "not valid")


def test_revoked_write_key(client: TestClient, engine: sa.Engine) -> None:
    created = create_key(engine, "write", "old site", T0)
    revoke_key(engine, created.id, T0)
    before = table_counts(engine)
    _problem(client.post("/v1/track", json=TRACK, headers=basic(created.key)), 401, "revoked")
    assert table_counts(engine) == before


def test_secret_key_cannot_send_events(
    client: TestClient, secret_key: str, unchanged: None
) -> None:
    r = client.post("/v1/track", json=TRACK, headers=basic(secret_key))
    _problem(r, 401, "secret key", "write key")
    r = client.post(
        "/v1/batch", json={"writeKey": secret_key, "batch": [TRACK | {"type": "track"}]}
    )
    _problem(r, 401, "secret key")


def test_write_key_cannot_use_management_api(
    client: TestClient, write_key: str, unchanged: None
) -> None:
    _problem(client.get("/api/customers?q=a", headers=bearer(write_key)), 401, "write key")
    _problem(client.get("/api/customers?q=a", headers=basic(write_key)), 401, "Bearer")
    _problem(client.get("/api/customers?q=a"), 401, "Bearer")
    _problem(client.get("/api/customers?q=a", headers=bearer("sk_nope")), 401, "not valid")


# --- the management API ---------------------------------------------------------------


@pytest.fixture
def two_customers(client: TestClient, write_key: str, engine: sa.Engine) -> tuple[int, int]:
    for uid, email in (("u1", "ann@example.com"), ("u2", "bob@example.com")):
        r = client.post(
            "/v1/identify",
            json={"userId": uid, "traits": {"email": email, "phone": f"+7916000000{uid[-1]}"}},
            headers=basic(write_key),
        )
        assert r.status_code == 200, r.text
    with engine.connect() as conn:
        from rapport.store.tables import customers

        a, b = conn.execute(sa.select(customers.c.id).order_by(customers.c.id)).scalars()
    return int(a), int(b)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"favourite_colour": "red"}, 422, "favourite_colour"),
        ({"timezone": "Moscow"}, 422, "timezone"),
        ({"email": "not-an-email"}, 422, "email"),
        ({"phone": "123"}, 422, "phone"),
        ({"birthday": "1990-13-40"}, 422, "birthday"),
        ({"traits": ["vip"]}, 422, "traits"),
        ({"first_name": "x" * 201}, 422, "first_name"),
        ({"email": "bob@example.com"}, 409, "bob@example.com"),
        ({"phone": "+79160000002"}, 409, "+79160000002"),
    ],
)
def test_bad_patch(
    client: TestClient,
    engine: sa.Engine,
    secret_key: str,
    two_customers: tuple[int, int],
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    before = table_counts(engine)
    with engine.connect() as conn:
        from rapport.store.tables import customers

        row_before = conn.execute(
            sa.select(customers).where(customers.c.id == two_customers[0])
        ).one()
    r = client.patch(f"/api/customers/{two_customers[0]}", json=body, headers=bearer(secret_key))
    _problem(r, status, field)
    assert table_counts(engine) == before
    with engine.connect() as conn:
        row_after = conn.execute(
            sa.select(customers).where(customers.c.id == two_customers[0])
        ).one()
    assert row_after == row_before


def test_patch_malformed_json(
    client: TestClient, secret_key: str, two_customers: tuple[int, int]
) -> None:
    r = client.patch(
        f"/api/customers/{two_customers[0]}",
        content=b"{not json",
        headers=bearer(secret_key) | {"Content-Type": "application/json"},
    )
    _problem(r, 422, "body")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "fax", "status": "subscribed"}, "channel"),
        ({"channel": "email", "status": "yes"}, "status"),
        ({"channel": "email"}, "status"),
        ({"channel": "email", "status": "subscribed", "double_opt_in": "maybe"}, "double_opt_in"),
        ({"channel": "email", "status": "subscribed", "source": ""}, "source"),
        ({"channel": "email", "status": "subscribed", "note": "x"}, "note"),
    ],
)
def test_bad_consent(
    client: TestClient,
    engine: sa.Engine,
    secret_key: str,
    two_customers: tuple[int, int],
    body: dict[str, Any],
    field: str,
) -> None:
    before = table_counts(engine)
    r = client.post(
        f"/api/customers/{two_customers[0]}/consents", json=body, headers=bearer(secret_key)
    )
    _problem(r, 422, field)
    assert table_counts(engine) == before


@pytest.mark.parametrize("cursor", ["%%%", "bm90LWEtY3Vyc29y", "MjAyNi0wMy0wMQ==", "/w=="])
def test_bad_cursor(
    client: TestClient, secret_key: str, two_customers: tuple[int, int], cursor: str
) -> None:
    r = client.get(
        f"/api/customers/{two_customers[0]}/timeline",
        params={"before": cursor},
        headers=bearer(secret_key),
    )
    _problem(r, 422, "before", "cursor")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "query"),
        ({"email": "nope"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"q": ""}, "q"),
        ({"q": "a", "limit": 0}, "limit"),
        ({"q": "a", "limit": "many"}, "limit"),
    ],
)
def test_bad_lookup(
    client: TestClient, secret_key: str, params: dict[str, Any], field: str
) -> None:
    _problem(client.get("/api/customers", params=params, headers=bearer(secret_key)), 422, field)


def test_unknown_customer(client: TestClient, secret_key: str, unchanged: None) -> None:
    for method, path, kwargs in [
        ("GET", "/api/customers/999999", {}),
        ("GET", "/api/customers/999999/timeline", {}),
        ("GET", "/api/customers/999999/export", {}),
        ("PATCH", "/api/customers/999999", {"json": {"city": "Kazan"}}),
        (
            "POST",
            "/api/customers/999999/consents",
            {"json": {"channel": "sms", "status": "pending"}},
        ),
        ("DELETE", "/api/customers/999999", {}),
    ]:
        r = client.request(method, path, headers=bearer(secret_key), **kwargs)
        _problem(r, 404, "999999")
    _problem(client.get("/api/customers/abc", headers=bearer(secret_key)), 422, "customer_id")

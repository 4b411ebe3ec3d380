"""Product recommendations for the site (docs/recommendations.md).

``GET /api/recommendations`` answers from the lists the daily build wrote: one statement
for the customer with their history when a customer is named, and one for the lists with
their products (and the asked product's category); no liveness round trip (the store's
engine checks pooled connections without one), and a read cut by a lost connection is
run once more on a new one. Two ways in: a secret key (``Authorization: Bearer``, any
role) may ask anything; the site's public write key (HTTP Basic, as for ingest) may ask
only what reveals nothing about a person — a product page's lists, popular, new arrivals
— since a write key ships inside the site's JavaScript and a customer's recommendations
echo what they viewed and bought.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from rapport.api.auth import basic_username, require_secret_key
from rapport.api.errors import ApiError
from rapport.errors import Problem
from rapport.recommend.rank import Ask, History
from rapport.recommend.serve import BuildStamp, Pick, UnknownProduct, read_customer, recommend
from rapport.recommend.strategies import (
    MAX_LIMIT,
    STRATEGIES,
    default_strategy,
    requirement_problem,
)

router = APIRouter(prefix="/api/recommendations", tags=["recommendations"])


def _authorize(request: Request, personal: bool) -> None:
    if basic_username(request) is None:
        require_secret_key(request)
        return
    key = basic_username(request)
    kind = request.app.state.keys.kind_of(key)
    if kind != "write":
        raise ApiError(401, "authorization: the write key is not valid (unknown or revoked)")
    if personal:
        raise ApiError(
            403,
            "authorization: a write key may ask for product, popular and new-arrival "
            "recommendations only; a customer's need a secret key (Bearer)",
        )


def _unprocessable(where: str, why: str) -> ApiError:
    problem = Problem(f"query.{where}", why)
    return ApiError(422, str(problem), [problem])


def _customer(
    conn: sa.Connection, customer: int | None, user_id: str | None, now: datetime
) -> tuple[int | None, History | None]:
    """The live customer and their history in one statement (404 when unknown)."""
    if customer is None and user_id is None:
        return None, None
    found = read_customer(conn, now, customer_id=customer, user_id=user_id)
    if found is not None:
        return found
    if customer is not None:
        raise ApiError(404, f"customer {customer} does not exist")
    raise ApiError(404, f"no customer has user_id {user_id!r}")


def _build_stamp(request: Request) -> BuildStamp:
    """The app's cached build record (one per app: each has its own store)."""
    state = request.app.state
    stamp = getattr(state, "recommendation_build", None)
    if stamp is None:
        stamp = state.recommendation_build = BuildStamp()
    return stamp


def _reading(conn: sa.Connection) -> sa.Connection:
    """Every statement of a request only reads, and each sees its own snapshot either
    way (PostgreSQL's read committed): in autocommit, PostgreSQL is spared the round
    trips of BEGIN and of the ROLLBACK that returns the connection to the pool."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


def _answer(
    request: Request,
    engine: sa.Engine,
    ask: Ask,
    customer: int | None,
    user_id: str | None,
    now: datetime,
) -> tuple[int | None, list[Pick], dict[str, Any] | None]:
    """The customer's id, the picks and the build's record, read on one connection."""
    with engine.connect() as conn:
        _reading(conn)
        cid, history = _customer(conn, customer, user_id, now)
        try:
            picks = recommend(conn, replace(ask, history=history), find_category=True)
        except UnknownProduct:
            raise ApiError(404, f"product {ask.product!r} does not exist") from None
        return cid, picks, _build_stamp(request).get(conn)


@router.get("")
def get_recommendations(
    request: Request,
    customer: int | None = Query(None, description="Rapport customer id"),
    user_id: str | None = Query(None, min_length=1, description="the site's own user id"),
    product: str | None = Query(None, min_length=1, description="product id (a product page)"),
    strategy: str | None = Query(
        None,
        description=f"one of {', '.join(STRATEGIES)}; default: bought_together with a "
        "product, personal with a customer, else popular",
    ),
    category: str | None = Query(None, min_length=1, description="popular / new_arrivals only"),
    limit: int = Query(10, ge=1, le=MAX_LIMIT),
    fallback: bool = Query(True, description="fill the limit with popular products"),
) -> Response:
    """Up to ``limit`` available products; each says which strategy served it."""
    has_customer = customer is not None or user_id is not None
    _authorize(request, has_customer)
    if customer is not None and user_id is not None:
        raise _unprocessable("user_id", "give customer or user_id, not both")
    chosen = strategy or default_strategy(
        has_product=product is not None, has_customer=has_customer
    )
    problem = requirement_problem(
        chosen,
        has_product=product is not None,
        has_customer=has_customer,
        has_category=category is not None,
    )
    if problem is not None:
        raise _unprocessable(*problem)
    now = request.app.state.clock.now()
    ask = Ask(chosen, limit, product=product, category=category, fallback=fallback)
    engine: sa.Engine = request.app.state.engine
    try:
        cid, picks, built = _answer(request, engine, ask, customer, user_id, now)
    except sa.exc.DBAPIError as err:
        if not err.connection_invalidated:
            raise
        # The connection was lost under the read (the pool now holds new ones): every
        # statement only reads, so the request runs once more.
        cid, picks, built = _answer(request, engine, ask, customer, user_id, now)
    served: dict[str, int] = {}
    for p in picks:
        served[p.strategy] = served.get(p.strategy, 0) + 1
    body: dict[str, Any] = {
        "strategy": chosen,
        "customer_id": cid,
        "product_id": product,
        "category": category,
        "limit": limit,
        "items": [
            {
                "product_id": p.product["id"],
                "strategy": p.strategy,
                "score": p.score,
                "product": p.product,
            }
            for p in picks
        ],
        "served": served,
        "built_at": built["built_at"] if built else None,
    }
    return Response(orjson.dumps(body), media_type="application/json")

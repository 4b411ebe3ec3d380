"""Render a compiled template for one recipient: Jinja only, inside the render budget.

The context a template sees (documented in docs/templates.md):

* ``customer`` — the card flattened for authors: profile attributes (``first_name``,
  ``email``, ``city``, ``birthday``, …), ``traits``, computed fields (``orders_count``,
  ``revenue``, ``average_check``, ``days_since_last_order``, ``rfm``,
  ``lifecycle_stage``, …), ``consents`` and the current ``cart``.
* ``event`` — the triggering event's ``name`` and ``properties`` (empty when none).
* ``products`` — catalog products the caller chose (a cart, a recommendation block).
* ``loyalty`` — the programme's summary (``balance``, ``pending``, ``tier``,
  ``tier_since``, ``points_expiring``, ``next_expiry``) and, in a scenario's messages, the
  codes its ``issue_coupon`` steps issued (``coupon``: the latest, ``coupons``: by step id).
* ``locale`` and ``timezone`` — what the money/date/plural filters format for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from jinja2 import Template, TemplateError

from rapport.customers.card import card, computed_fields
from rapport.customers.profile import PROFILE_COLUMNS, live_id
from rapport.loyalty.summary import loyalty_summaries
from rapport.messaging.templates.compile import HTML_ENV, TEXT_ENV, CompiledVariant
from rapport.messaging.templates.filters import DEFAULT_TIMEZONE, normalize_locale
from rapport.messaging.templates.sandbox import RapportSandbox, end_budget, start_budget
from rapport.store.tables import cart_items, carts, consents, customers
from rapport.store.tables import products as products_table

# What ``loyalty`` holds for a customer without points (every key is always there, so a
# template may test ``loyalty.coupon`` or ``loyalty.tier`` without guarding for it).
EMPTY_LOYALTY: dict[str, Any] = {
    "balance": 0,
    "pending": 0,
    "tier": None,
    "tier_since": None,
    "points_expiring": 0,
    "next_expiry": None,
    "coupon": None,
    "coupons": {},
}


def loyalty_context(found: Mapping[str, Any] | None) -> dict[str, Any]:
    """``found`` (a summary, coupons) over :data:`EMPTY_LOYALTY`, in a fresh dict."""
    return {**EMPTY_LOYALTY, "coupons": {}, **(found or {})}


class RenderError(ValueError):
    """A template failed for this recipient (a limit, a sandbox refusal, a bad value)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str | None
    text: str


@lru_cache(maxsize=1024)
def _template(html: bool, source: str) -> Template:
    """Jinja's parse of a compiled source, once per process and template version."""
    env = HTML_ENV if html else TEXT_ENV
    return env.from_string(source)


def _render_one(env: RapportSandbox, html: bool, source: str, context: Mapping[str, Any]) -> str:
    limit = env.limits.max_output
    size = 0
    parts: list[str] = []
    for chunk in _template(html, source).generate(dict(context)):
        size += len(chunk)
        if size > limit:
            raise RenderError(f"output longer than {limit} characters")
        parts.append(chunk)
    return "".join(parts)


def render(compiled: CompiledVariant, context: Mapping[str, Any]) -> Rendered:
    """Subject, HTML and text for one recipient; RenderError says what went wrong."""
    token = start_budget(HTML_ENV.limits)
    try:
        subject = _render_one(TEXT_ENV, False, compiled.subject, context)
        html = None
        if compiled.html is not None:
            html = _render_one(HTML_ENV, True, compiled.html, context)
        text = _render_one(TEXT_ENV, False, compiled.text, context)
    except RecursionError:
        raise RenderError("recursion too deep") from None
    except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        if isinstance(exc, RenderError):
            raise
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
    finally:
        end_budget(token)
    return Rendered(" ".join(subject.split()), html, text)


def customer_context(profile_card: Mapping[str, Any]) -> dict[str, Any]:
    """The card as templates see it: one flat ``customer`` object."""
    computed = dict(profile_card.get("computed") or {})
    return {
        "id": profile_card["id"],
        **dict(profile_card.get("profile") or {}),
        **computed,
        "consents": profile_card.get("consents"),
        "cart": profile_card.get("cart"),
    }


def product_list(conn: sa.Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Catalog products in the order given (unknown ids are left out)."""
    if not ids:
        return []
    rows = conn.execute(sa.select(products_table).where(products_table.c.id.in_(list(ids))))
    found = {r.id: dict(r._mapping) for r in rows}
    return [found[i] for i in ids if i in found]


def build_context(
    conn: sa.Connection,
    customer_id: int,
    now: datetime,
    *,
    locale: str | None = None,
    event: Mapping[str, Any] | None = None,
    products: Sequence[Mapping[str, Any]] = (),
    loyalty: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Everything a template may read about one customer; None if there is no such card."""
    found = card(conn, customer_id, now)
    if found is None:
        return None
    if loyalty is None:
        loyalty = loyalty_summaries(conn, [found["id"]], now)[found["id"]]
    return context_for(
        customer_context(found), now, locale=locale, event=event, products=products, loyalty=loyalty
    )


def context_for(
    customer: Mapping[str, Any],
    now: datetime,
    *,
    locale: str | None = None,
    event: Mapping[str, Any] | None = None,
    products: Sequence[Mapping[str, Any]] = (),
    loyalty: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The template context around a ``customer`` object (:func:`customer_contexts`)."""
    return {
        "customer": dict(customer),
        "event": {
            "name": (event or {}).get("name"),
            "properties": dict((event or {}).get("properties") or {}),
        },
        "products": [dict(p) for p in products],
        "loyalty": loyalty_context(loyalty),
        "locale": normalize_locale(locale or customer.get("locale")),
        "timezone": customer.get("timezone") or DEFAULT_TIMEZONE,
        "now": now,
    }


# What :func:`customer_contexts` reads, built once: a scenario step composes for a few
# customers at a time, and building the statements cost more than running them.
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_CARD_ROWS = sa.select(customers).where(customers.c.id.in_(_IDS))
_CARD_CONSENTS = (
    sa.select(consents)
    .where(consents.c.customer_id.in_(_IDS))
    .order_by(consents.c.customer_id, consents.c.channel)
)
_CARD_CARTS = (
    sa.select(carts.c.customer_id, carts.c.cart_id, carts.c.status, carts.c.updated_at, carts.c.id)
    .where(carts.c.customer_id.in_(_IDS))
    .order_by(carts.c.customer_id, carts.c.updated_at.desc())
)
_CARD_ITEMS = sa.select(
    cart_items.c.cart_pk, cart_items.c.product_id, cart_items.c.quantity, cart_items.c.price
).where(cart_items.c.cart_pk.in_(_IDS))


def customer_contexts(
    conn: sa.Connection, customer_ids: Iterable[int], now: datetime
) -> dict[int, dict[str, Any]]:
    """``customer_context(card(...))`` for many customers in four queries, not six each.

    A campaign renders for thousands of customers per transaction; reading their cards
    one by one was half of composing a message. Keyed by the id asked for; a merged id
    gets its survivor's card (as :func:`card` does), an unknown id is left out.
    """
    wanted = list(dict.fromkeys(int(i) for i in customer_ids))
    rows: dict[int, Any] = {}
    for start in range(0, len(wanted), 5000):  # well under any bound-parameter limit
        chunk = wanted[start : start + 5000]
        for found in conn.execute(_CARD_ROWS, {"ids": chunk}):
            rows[int(found.id)] = found
    live: dict[int, int] = {}
    for cid in wanted:
        row = rows.get(cid)
        if row is None:
            continue
        if row.merged_into is None:
            live[cid] = cid
            continue
        survivor = live_id(conn, cid)  # rare: follow the merge chain one by one
        if survivor is None:
            continue
        if survivor not in rows:
            rows[survivor] = conn.execute(
                sa.select(customers).where(customers.c.id == survivor)
            ).one()
        live[cid] = survivor
    ids = sorted(set(live.values()))
    found_consents: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    found_carts: dict[int, dict[str, Any]] = {}
    cart_of: dict[int, int] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for r in conn.execute(_CARD_CONSENTS, {"ids": chunk}):
            found_consents[int(r.customer_id)].append(
                {
                    "channel": r.channel,
                    "status": r.status,
                    "source": r.source,
                    "updated_at": r.updated_at,
                    "double_opt_in": r.double_opt_in,
                }
            )
        # The newest cart of each customer, as card() picks it.
        for r in conn.execute(_CARD_CARTS, {"ids": chunk}):
            owner = int(r.customer_id)
            if owner not in found_carts:
                found_carts[owner] = {
                    "cart_id": r.cart_id,
                    "status": r.status,
                    "updated_at": r.updated_at,
                    "items": [],
                }
                cart_of[int(r.id)] = owner
    pks = list(cart_of)
    for start in range(0, len(pks), 5000):
        for pk, product, quantity, price in conn.execute(
            _CARD_ITEMS, {"ids": pks[start : start + 5000]}
        ):
            found_carts[cart_of[int(pk)]]["items"].append(
                {"product_id": product, "quantity": quantity, "price": price}
            )
    out: dict[int, dict[str, Any]] = {}
    for cid, survivor in live.items():
        row = rows[survivor]
        cart = found_carts.get(survivor)
        out[cid] = {
            "id": survivor,
            **{col: getattr(row, col) for col in PROFILE_COLUMNS},
            "traits": row.traits,
            **computed_fields(row, now),
            "consents": [dict(c) for c in found_consents[survivor]],
            "cart": None if cart is None else {**cart, "items": [dict(i) for i in cart["items"]]},
        }
    return out


def build_contexts(
    conn: sa.Connection,
    customer_ids: Sequence[int],
    now: datetime,
    *,
    locale: str | None = None,
    event: Mapping[str, Any] | None = None,
    products: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    loyalty: Mapping[int, Mapping[str, Any]] | None = None,
) -> dict[int, dict[str, Any]]:
    """:func:`build_context` for many customers at once (set-based reads of their cards).

    ``products`` and ``loyalty`` are per customer (a recommender's picks, a balance; the
    programme's summary is read for those not given); customers that do not exist are
    left out of the answer.
    """
    found = customer_contexts(conn, customer_ids, now)
    if loyalty is None:
        read = loyalty_summaries(conn, [c["id"] for c in found.values()], now)
        loyalty = {cid: read[c["id"]] for cid, c in found.items()}
    return {
        cid: context_for(
            customer,
            now,
            locale=locale,
            event=event,
            products=(products or {}).get(cid, ()),
            loyalty=(loyalty or {}).get(cid),
        )
        for cid, customer in found.items()
    }

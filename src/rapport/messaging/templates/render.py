"""Render a compiled template for one recipient: Jinja only, inside the render budget.

The context a template sees (documented in docs/templates.md):

* ``customer`` — the card flattened for authors: profile attributes (``first_name``,
  ``email``, ``city``, ``birthday``, …), ``traits``, computed fields (``orders_count``,
  ``revenue``, ``average_check``, ``days_since_last_order``, ``rfm``,
  ``lifecycle_stage``, …), ``consents`` and the current ``cart``.
* ``event`` — the triggering event's ``name`` and ``properties`` (empty when none).
* ``products`` — catalog products the caller chose (a cart, a recommendation block).
* ``loyalty`` — balance and tier; an empty placeholder until the loyalty programme fills it.
* ``locale`` and ``timezone`` — what the money/date/plural filters format for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from jinja2 import Template, TemplateError

from rapport.customers.card import card
from rapport.messaging.templates.compile import HTML_ENV, TEXT_ENV, CompiledVariant
from rapport.messaging.templates.filters import DEFAULT_TIMEZONE, normalize_locale
from rapport.messaging.templates.sandbox import RapportSandbox, end_budget, start_budget
from rapport.store.tables import products as products_table

# What ``loyalty`` holds until the loyalty programme provides it.
EMPTY_LOYALTY: dict[str, Any] = {"balance": 0, "tier": None, "points_expiring": 0}


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
    customer = customer_context(found)
    return {
        "customer": customer,
        "event": {
            "name": (event or {}).get("name"),
            "properties": dict((event or {}).get("properties") or {}),
        },
        "products": [dict(p) for p in products],
        "loyalty": dict(loyalty) if loyalty is not None else dict(EMPTY_LOYALTY),
        "locale": normalize_locale(locale or customer.get("locale")),
        "timezone": customer.get("timezone") or DEFAULT_TIMEZONE,
        "now": now,
    }

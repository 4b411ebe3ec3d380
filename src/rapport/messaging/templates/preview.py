"""A template rendered for one customer, or for a sample customer, without sending it.

Behind ``POST /api/templates/{id}/preview`` and the template editor's live preview. The
editor previews a draft that is not saved yet: :func:`draft_template` compiles it with
the same checks as saving (``compile_all``: errors with locale, line and column) and
stores nothing, so what the preview shows is exactly what a save would keep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.messaging.templates.render import build_context, context_for, product_list, render
from rapport.messaging.templates.store import StoredTemplate, compile_all

# Who a template is previewed for before a real customer is chosen: every field of the
# card a template can read (docs/templates.md, "Context"), filled in, one per language.
_SAMPLE_COMMON: dict[str, Any] = {
    "id": 0,
    "birthday": "1990-05-17",
    "gender": "female",
    "events_count": 48,
    "orders_count": 3,
    "revenue": 12450.0,
    "average_check": 4150.0,
    "days_since_last_order": 12,
    "rfm": {"recency": 4, "frequency": 3, "monetary": 4, "cell": "434"},
    "lifecycle_stage": "active",
    "predicted_clv": 18200.0,
    "churn_risk": 0.18,
    "traits": {},
    "consents": [],
    "cart": None,
}
SAMPLE_CUSTOMERS: dict[str, dict[str, Any]] = {
    "en": _SAMPLE_COMMON
    | {
        "first_name": "Anna",
        "last_name": "Smith",
        "email": "anna.smith@example.com",
        "phone": "+447700900123",
        "city": "London",
        "country": "GB",
        "timezone": "Europe/London",
        "locale": "en",
    },
    "ru": _SAMPLE_COMMON
    | {
        "first_name": "Анна",
        "last_name": "Смирнова",
        "email": "anna.smirnova@example.com",
        "phone": "+79161234567",
        "city": "Москва",
        "country": "RU",
        "timezone": "Europe/Moscow",
        "locale": "ru",
    },
}


class PreviewCustomerNotFound(LookupError):
    """No customer with that id."""


@dataclass(frozen=True)
class TemplatePreview:
    template_id: int
    version: int
    locale: str
    subject: str
    html: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def draft_template(
    *,
    name: str,
    channel: str,
    kind: str,
    variants: Mapping[str, Mapping[str, Any]],
    now: datetime,
    default_locale: str | None = None,
    template_id: int = 0,
    version: int = 0,
) -> StoredTemplate:
    """A template compiled as saving would compile it, but not stored (InvalidInput with
    every problem's locale, line and column when it does not compile)."""
    default = default_locale or next(iter(variants), "ru")
    compiled = compile_all(kind, channel, default, variants)
    return StoredTemplate(
        id=template_id,
        name=name,
        channel=channel,
        kind=kind,
        default_locale=default,
        variants={loc: dict(v) for loc, v in variants.items()},
        compiled=compiled,
        version=version,
        created_at=now,
        updated_at=now,
    )


def preview_template(
    conn: sa.Connection,
    template: StoredTemplate,
    customer_id: int | None,
    now: datetime,
    *,
    locale: str | None = None,
    event: Mapping[str, Any] | None = None,
    product_ids: Sequence[str] = (),
) -> TemplatePreview:
    """Subject, HTML and text for ``customer_id`` (None: the sample customer of ``locale``).

    Without ``locale`` the customer's own is used; a locale the template lacks falls back
    to its default. Raises :class:`PreviewCustomerNotFound`, or ``RenderError`` when the
    template fails for this customer's data.
    """
    products = product_list(conn, product_ids)
    if customer_id is None:
        sample = SAMPLE_CUSTOMERS.get(locale or "", SAMPLE_CUSTOMERS["en"])
        context: dict[str, Any] | None = context_for(
            sample, now, locale=locale, event=event, products=products
        )
    else:
        context = build_context(
            conn, customer_id, now, locale=locale, event=event, products=products
        )
    if context is None:
        raise PreviewCustomerNotFound(f"no customer {customer_id}")
    chosen, variant = template.variant(context["locale"])
    context["locale"] = chosen  # money and dates follow the language the reader gets
    out = render(variant, context)
    return TemplatePreview(template.id, template.version, chosen, out.subject, out.html, out.text)

"""Templates in the store: every save compiles first, so a stored version always renders.

A template has a name, a channel, a kind (mjml | html | text) and a source per locale;
saving a change bumps ``version`` and replaces the compiled cache in the same row, so the
compiled HTML a send reads is always the one of the version it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.errors import InvalidInput, Problem
from rapport.messaging.channels.base import CHANNELS
from rapport.messaging.templates.compile import KINDS, CompiledVariant, compile_variant
from rapport.messaging.templates.filters import LOCALES
from rapport.store.tables import templates


class TemplateNotFound(LookupError):
    pass


class TemplateConflict(ValueError):
    pass


@dataclass(frozen=True)
class StoredTemplate:
    id: int
    name: str
    channel: str
    kind: str
    default_locale: str
    variants: dict[str, dict[str, str]]
    compiled: dict[str, dict[str, str | None]]
    version: int
    created_at: datetime
    updated_at: datetime

    def variant(self, locale: str | None) -> tuple[str, CompiledVariant]:
        """The compiled variant for ``locale``, else the default locale's."""
        chosen = locale if locale in self.compiled else self.default_locale
        data = self.compiled[chosen]
        return chosen, CompiledVariant(str(data["subject"]), data["html"], str(data["text"]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "channel": self.channel,
            "kind": self.kind,
            "default_locale": self.default_locale,
            "variants": self.variants,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _from_row(row: Any) -> StoredTemplate:
    return StoredTemplate(
        id=int(row.id),
        name=row.name,
        channel=row.channel,
        kind=row.kind,
        default_locale=row.default_locale,
        variants=row.variants,
        compiled=row.compiled,
        version=int(row.version),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def compile_all(
    kind: str, channel: str, default_locale: str, variants: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, str | None]]:
    """Check the whole definition and compile every locale; every problem at once."""
    problems: list[Problem] = []
    if channel not in CHANNELS:
        problems.append(Problem("channel", f"must be one of {', '.join(CHANNELS)}"))
    if kind not in KINDS:
        problems.append(Problem("kind", f"must be one of {', '.join(KINDS)}"))
    if kind in ("mjml", "html") and channel != "email":
        problems.append(Problem("kind", f"{kind} templates are for the email channel"))
    if not variants:
        problems.append(Problem("variants", "at least one locale is required"))
    for locale in variants:
        if locale not in LOCALES:
            problems.append(Problem(f"variants.{locale}", f"locale must be one of {LOCALES}"))
    if variants and default_locale not in variants:
        problems.append(Problem("default_locale", "must be one of the variants' locales"))
    if problems:
        raise InvalidInput(problems)
    compiled: dict[str, dict[str, str | None]] = {}
    for locale, variant in variants.items():
        try:
            result = compile_variant(
                kind,  # type: ignore[arg-type]
                str(variant.get("subject") or ""),
                str(variant.get("body") or ""),
            )
        except InvalidInput as exc:
            problems.extend(Problem(f"variants.{locale}.{p.where}", p.reason) for p in exc.problems)
            continue
        compiled[locale] = {"subject": result.subject, "html": result.html, "text": result.text}
    if problems:
        raise InvalidInput(problems)
    return compiled


def _check_name(conn: sa.Connection, name: str, own_id: int | None = None) -> None:
    query = sa.select(templates.c.id).where(templates.c.name == name)
    found = conn.execute(query).scalar()
    if found is not None and found != own_id:
        raise TemplateConflict(f"a template named {name!r} exists")


def create_template(
    conn: sa.Connection,
    *,
    name: str,
    channel: str,
    kind: str,
    variants: Mapping[str, Mapping[str, Any]],
    now: datetime,
    default_locale: str | None = None,
) -> StoredTemplate:
    default = default_locale or next(iter(variants), "ru")
    compiled = compile_all(kind, channel, default, variants)
    _check_name(conn, name)
    source = {
        loc: {"subject": v.get("subject") or "", "body": v.get("body") or ""}
        for loc, v in variants.items()
    }
    new_id = conn.execute(
        templates.insert()
        .values(
            name=name,
            channel=channel,
            kind=kind,
            default_locale=default,
            variants=source,
            compiled=compiled,
            version=1,
            created_at=now,
            updated_at=now,
        )
        .returning(templates.c.id)
    ).scalar_one()
    return get_template(conn, int(new_id))


def get_template(conn: sa.Connection, template_id: int) -> StoredTemplate:
    row = conn.execute(_BY_ID, {"id": template_id}).first()
    if row is None:
        raise TemplateNotFound(f"no template {template_id}")
    return _from_row(row)


def template_stamps(conn: sa.Connection) -> dict[int, tuple[str, int, datetime]]:
    """Every template's name, version and last change, without its sources and compiled
    bodies: enough to tell whether a template read before is still the current one."""
    rows = conn.execute(_STAMPS)
    return {int(tid): (str(name), int(version), updated) for tid, name, version, updated in rows}


_BY_ID = sa.select(templates).where(templates.c.id == sa.bindparam("id"))
_STAMPS = sa.select(templates.c.id, templates.c.name, templates.c.version, templates.c.updated_at)


def all_templates(conn: sa.Connection) -> list[StoredTemplate]:
    return [_from_row(r) for r in conn.execute(sa.select(templates).order_by(templates.c.id))]


def update_template(
    conn: sa.Connection,
    template_id: int,
    now: datetime,
    *,
    name: str | None = None,
    kind: str | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    default_locale: str | None = None,
) -> StoredTemplate:
    """A new version when the content changes; a rename alone keeps the version."""
    old = get_template(conn, template_id)
    values: dict[str, Any] = {"updated_at": now}
    if name is not None and name != old.name:
        _check_name(conn, name, template_id)
        values["name"] = name
    if kind is not None or variants is not None or default_locale is not None:
        new_kind = kind or old.kind
        new_variants = variants if variants is not None else old.variants
        default = default_locale or (
            old.default_locale
            if old.default_locale in new_variants
            else next(iter(new_variants), "ru")
        )
        values["compiled"] = compile_all(new_kind, old.channel, default, new_variants)
        values["variants"] = {
            loc: {"subject": v.get("subject") or "", "body": v.get("body") or ""}
            for loc, v in new_variants.items()
        }
        values.update(kind=new_kind, default_locale=default, version=old.version + 1)
    conn.execute(templates.update().where(templates.c.id == template_id).values(**values))
    return get_template(conn, template_id)


def delete_template(conn: sa.Connection, template_id: int) -> None:
    get_template(conn, template_id)
    conn.execute(templates.delete().where(templates.c.id == template_id))

"""Settings → API keys (admin): list, create with a role, revoke.

A new key is shown once, on the answer to the form that made it; the store keeps only its
hash. The audit entry names the key's id, kind, name and role, never the key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import RedirectResponse, Response

from rapport.access import audit
from rapport.access.keys import KINDS, CreatedKey, create_key_in, list_keys, revoke_key_in
from rapport.access.roles import ROLES, Permission
from rapport.access.users import BAD_NAME, BAD_ROLE
from rapport.errors import Problem
from rapport.store.engine import writing
from rapport.web.context import NotFound, Page, render, require
from rapport.web.i18n import N_

router = APIRouter(include_in_schema=False)

BAD_KIND = N_("must be write or secret")


def _page(
    page: Page,
    *,
    created: CreatedKey | None = None,
    problems: list[Problem] | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    done: str | None = None,
) -> Response:
    return render(
        page,
        "keys.html",
        {
            "keys": list_keys(page.engine),
            "kinds": KINDS,
            "roles": ROLES,
            "created": created,
            "problems": problems or [],
            "form": form or {"kind": "secret", "role": "viewer"},
            "done": done if done == "revoked" else None,
        },
        status=status,
    )


@router.get("/settings/keys")
def keys_page(
    done: str | None = None, page: Page = Depends(require(Permission.MANAGE_KEYS))
) -> Response:
    return _page(page, done=done)


@router.post("/settings/keys")
def create(
    kind: Annotated[str, Form(max_length=20)] = "",
    name: Annotated[str, Form(max_length=500)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    page: Page = Depends(require(Permission.MANAGE_KEYS)),
) -> Response:
    problems: list[Problem] = []
    name = name.strip()
    if kind not in KINDS:
        problems.append(Problem("kind", BAD_KIND))
    if not 1 <= len(name) <= 200:
        problems.append(Problem("name", BAD_NAME))
    if kind == "secret" and role not in ROLES:
        problems.append(Problem("role", BAD_ROLE))
    if problems:
        form = {"kind": kind, "name": name, "role": role}
        return _page(page, problems=problems, form=form, status=422)
    now = page.clock.now()
    with writing(page.engine) as conn:
        created = create_key_in(conn, kind, name, now, role if kind == "secret" else None)
        details = {"kind": kind, "name": name, "role": created.role, "prefix": created.key[:10]}
        audit.record(conn, page.actor, "key.create", "api_key", created.id, now, details)
    return _page(page, created=created, status=201)


@router.post("/settings/keys/{key_id}/revoke")
def revoke(key_id: int, page: Page = Depends(require(Permission.MANAGE_KEYS))) -> Response:
    now = page.clock.now()
    with writing(page.engine) as conn:
        if not revoke_key_in(conn, key_id, now):
            raise NotFound(f"active key {key_id}")
        audit.record(conn, page.actor, "key.revoke", "api_key", key_id, now)
    return RedirectResponse("/settings/keys?done=revoked", status_code=303)

"""Settings: the list of settings pages this person may open (users, API keys, channels)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.web.context import Page, render, require
from rapport.web.nav import SETTINGS_PAGES

router = APIRouter(include_in_schema=False)


@router.get("/settings")
def settings_page(page: Page = Depends(require(Permission.VIEW))) -> Response:
    allowed = [s for s in SETTINGS_PAGES if page.can(s.permission)]
    return render(page, "settings.html", {"pages": allowed})

"""The sections not built yet: an honest page saying so, and what to use meanwhile.

One route per section of ``nav.py`` with ``built=False``; building the page means
writing its router and setting ``built=True`` (the route here then disappears).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from rapport.web.context import Page, render, require
from rapport.web.nav import SECTIONS, SETTINGS_PAGES, Section

router = APIRouter(include_in_schema=False)


def _coming(section: Section) -> Callable[[Page], Response]:
    def page_of(page: Page = Depends(require(section.permission))) -> Response:
        return render(page, "coming.html", {"section": section})

    page_of.__name__ = f"coming_{section.key}"
    return page_of


for _section in (*SECTIONS, *SETTINGS_PAGES):
    if not _section.built:
        router.add_api_route(_section.path, _coming(_section), methods=["GET"])

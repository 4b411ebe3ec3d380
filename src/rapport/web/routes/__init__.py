"""One router per section of the UI; ``ROUTERS`` is what ``rapport.web.install`` mounts.

The "coming" router goes last: a built page registered before it takes its path.
"""

from __future__ import annotations

from fastapi import APIRouter

from rapport.web.routes import (
    audit,
    auth,
    coming,
    customers,
    dashboard,
    keys,
    reports,
    settings,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    dashboard.router,
    customers.router,
    settings.router,
    users.router,
    keys.router,
    audit.router,
    reports.router,
    coming.router,
)

"""One router per section of the UI; ``ROUTERS`` is what ``rapport.web.install`` mounts.

The "coming" router goes last: a built page registered before it takes its path.
"""

from __future__ import annotations

from fastapi import APIRouter

from rapport.web.routes import (
    audit,
    auth,
    campaign_view,
    campaigns,
    channels,
    coming,
    customers,
    dashboard,
    keys,
    loyalty,
    reports,
    scenarios,
    segments,
    settings,
    strategy,
    tasks,
    template_preview,
    templates_editor,
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
    segments.router,
    campaigns.router,
    campaign_view.router,
    template_preview.router,
    templates_editor.router,
    scenarios.router,
    loyalty.router,
    tasks.router,
    strategy.router,
    channels.router,
    coming.router,
)

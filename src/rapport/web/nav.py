"""The sections of the UI, in the order the navigation shows them: one list to edit when a
page is added (docs/web.md, "Adding a page").

A section not built yet has ``built=False``: its path answers with a short "coming" page
that says what exists meanwhile (the API and the command line), never with made-up data.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapport.access.roles import Permission
from rapport.web.i18n import N_


@dataclass(frozen=True)
class Section:
    key: str
    path: str
    label: str
    permission: Permission = Permission.VIEW
    built: bool = True
    # Where to go meanwhile, for a section not built yet: (what, where) pairs.
    meanwhile: tuple[tuple[str, str], ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section("dashboard", "/", N_("Dashboard")),
    Section("customers", "/customers", N_("Customers")),
    Section(
        "segments",
        "/segments",
        N_("Segments"),
        meanwhile=(("/api/segments", "docs/segments.md"), ("rapport segments", "docs/segments.md")),
    ),
    Section(
        "scenarios",
        "/scenarios",
        N_("Scenarios"),
        built=True,
        meanwhile=(
            ("/api/scenarios", "docs/scenarios.md"),
            ("rapport scenarios", "docs/scenarios.md"),
        ),
    ),
    Section(
        "campaigns",
        "/campaigns",
        N_("Campaigns"),
        meanwhile=(
            ("/api/campaigns", "docs/campaigns.md"),
            ("rapport campaigns", "docs/campaigns.md"),
        ),
    ),
    Section(
        "templates",
        "/templates",
        N_("Templates"),
        meanwhile=(("/api/templates", "docs/templates.md"),),
    ),
    Section("loyalty", "/loyalty", N_("Loyalty")),
    Section("reports", "/reports", N_("Reports")),
    Section("tasks", "/tasks", N_("Tasks")),
    Section("settings", "/settings", N_("Settings")),
    Section("audit", "/audit", N_("Audit log"), permission=Permission.READ_AUDIT),
)

# The pages under Settings.
SETTINGS_PAGES: tuple[Section, ...] = (
    Section("users", "/settings/users", N_("Users"), permission=Permission.MANAGE_USERS),
    Section("keys", "/settings/keys", N_("API keys"), permission=Permission.MANAGE_KEYS),
    Section(
        "channels",
        "/settings/channels",
        N_("Channels"),
        permission=Permission.MANAGE_CHANNELS,
        meanwhile=(("/api/channels", "docs/channels.md"),),
    ),
)


def section_of(path: str) -> str | None:
    """The key of the section a path belongs to (for highlighting the navigation)."""
    best: Section | None = None
    for section in (*SECTIONS, *SETTINGS_PAGES):
        if section.path == "/":
            if path == "/":
                best = section
            continue
        if (path == section.path or path.startswith(section.path + "/")) and (
            best is None or len(section.path) > len(best.path)
        ):
            best = section
    if best is not None and best.key in {s.key for s in SETTINGS_PAGES}:
        return "settings"
    return None if best is None else best.key

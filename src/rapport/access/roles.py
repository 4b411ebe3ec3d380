"""Roles and what each may do: the one table every check reads, in the UI and in the API.

People (users) and secret keys have one of four roles. Each permission below lists the
roles that hold it; a page, a form or an API route asks for a permission, never for a
role, so changing who may do what is an edit of ``PERMISSIONS`` alone (docs/web.md
prints the same table).
"""

from __future__ import annotations

from enum import StrEnum

ROLES = ("admin", "marketer", "analyst", "viewer")


class Permission(StrEnum):
    VIEW = "view"
    """Open the pages and read through the API."""
    VIEW_PERSONAL = "view_personal"
    """See emails and phones as they are; without it they are masked (a***@example.com)."""
    EXPORT = "export"
    """Download reports and exports (CSV, a customer's personal data)."""
    EDIT_MARKETING = "edit_marketing"
    """Change segments, lists, scenarios, campaigns, templates, loyalty, customers."""
    MANAGE_CHANNELS = "manage_channels"
    """Configure channels, the communication policy and other store settings."""
    MANAGE_KEYS = "manage_keys"
    """Create and revoke API keys."""
    MANAGE_USERS = "manage_users"
    """Create users, change their roles, disable them."""
    READ_AUDIT = "read_audit"
    """Read the audit log."""


_ALL = frozenset(ROLES)
PERMISSIONS: dict[Permission, frozenset[str]] = {
    Permission.VIEW: _ALL,
    Permission.VIEW_PERSONAL: frozenset({"admin", "marketer", "analyst"}),
    Permission.EXPORT: frozenset({"admin", "marketer", "analyst"}),
    Permission.EDIT_MARKETING: frozenset({"admin", "marketer"}),
    Permission.MANAGE_CHANNELS: frozenset({"admin"}),
    Permission.MANAGE_KEYS: frozenset({"admin"}),
    Permission.MANAGE_USERS: frozenset({"admin"}),
    Permission.READ_AUDIT: frozenset({"admin"}),
}


def can(role: str | None, permission: Permission) -> bool:
    return role is not None and role in PERMISSIONS[permission]


def permissions_of(role: str) -> list[Permission]:
    return [p for p in Permission if role in PERMISSIONS[p]]


def check_role(role: object) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return str(role)


# The management API: a change (any method but GET/HEAD/OPTIONS) under these prefixes
# needs this permission; every other change needs EDIT_MARKETING.
API_CHANGE_RULES: tuple[tuple[str, Permission], ...] = (
    ("/api/channels", Permission.MANAGE_CHANNELS),
    ("/api/policy", Permission.MANAGE_CHANNELS),
    ("/api/settings", Permission.MANAGE_CHANNELS),
    ("/api/keys", Permission.MANAGE_KEYS),
    ("/api/users", Permission.MANAGE_USERS),
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EXPORT_SUFFIXES = (".csv", ".xlsx")


def api_permission(method: str, path: str) -> Permission:
    """What a request to the management API needs.

    Reads need VIEW, except: the customer API answers with personal data unmasked, so it
    needs VIEW_PERSONAL; a data download (``….csv``, ``….xlsx``, ``…/export``) needs
    EXPORT (charts, ``….svg``/``….png``, are reads).
    """
    if method.upper() not in _READ_METHODS:
        for prefix, permission in API_CHANGE_RULES:
            if path == prefix or path.startswith(prefix + "/"):
                return permission
        return Permission.EDIT_MARKETING
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last == "export" or last.endswith(_EXPORT_SUFFIXES):
        return Permission.EXPORT
    if path == "/api/customers" or path.startswith("/api/customers/"):
        return Permission.VIEW_PERSONAL
    return Permission.VIEW

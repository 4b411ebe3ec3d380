"""The `rapport` command: set up the store, serve, manage keys, import data, segments, demo.

Each group of commands lives in its own module; importing them registers the commands.
"""

from __future__ import annotations

from rapport.cli import (  # noqa: F401  (registers commands)
    bounces,
    campaigns,
    clv,
    coupons,
    demo,
    imports,
    inbox,
    loyalty,
    recommend,
    report,
    report_business,
    report_experiments,
    report_messages,
    scenario_dry_run,
    scenario_library,
    scenarios,
    segments,
    store,
    strategy,
    users,
)
from rapport.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()

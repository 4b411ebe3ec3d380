"""`rapport scenarios`: define, activate and inspect customer journeys (docs/scenarios.md).

The group lives here; commands are added by this module and by
``cli/scenario_dry_run.py`` (the dry run), which import ``scenarios_app``.
"""

from __future__ import annotations

import typer

from rapport.cli.common import app

scenarios_app = typer.Typer(
    help="Scenarios: triggered customer journeys (docs/scenarios.md).",
    no_args_is_help=True,
)
app.add_typer(scenarios_app, name="scenarios")

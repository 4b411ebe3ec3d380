"""`rapport report`: the analytics in the terminal (Rich tables), as CSV, or as charts.

Each family of reports registers its commands on ``report_app`` from its own module
(``report_*.py`` beside this one), imported by ``rapport.cli``.
"""

from __future__ import annotations

import typer

from rapport.cli.common import app

report_app = typer.Typer(
    help="Reports: message metrics, attribution, business metrics, cohorts, funnel, RFM, "
    "CLV and experiments (docs/metrics.md).",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")

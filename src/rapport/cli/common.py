"""What every `rapport` command shares: the Typer app, the console, the store option."""

from __future__ import annotations

import gc
from typing import Annotated

import typer
from rich.console import Console

from rapport.settings import Settings

app = typer.Typer(
    help="Rapport: an open-source CRM-marketing engine.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL; default $RAPPORT_DATABASE_URL or sqlite:///rapport.db",
    ),
]


def settings_for(database_url: str | None) -> Settings:
    settings = Settings()
    if database_url:
        settings.database_url = database_url
    return settings


def tune_collector() -> None:
    """Set up the garbage collector for a long-running process that ingests.

    What start-up made (modules, the app, caches) lives as long as the process: it is kept
    out of the collector's full passes, which otherwise stall a request now and then (a
    ~0.3 s pause was measured in the recommendation benchmark). The youngest generation is
    examined every 10,000 new objects rather than 700: ingest makes and drops objects by
    the thousand per batch, and at the default the full passes came about once a second
    (10–26 ms each, a request waiting behind every one). In bench/ingest.py on PostgreSQL,
    19 full passes over 5 ms in a run became 1–2.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)

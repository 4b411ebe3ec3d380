"""What every `rapport` command shares: the Typer app, the console, the store option."""

from __future__ import annotations

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

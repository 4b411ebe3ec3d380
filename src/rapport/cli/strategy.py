"""`rapport strategy export`: the CRM-strategy document as a PDF or HTML file.

The same document as the UI's button and ``GET /api/strategy`` (``rapport.strategy``), in
Russian or English, for a period preset (default the last 90 days) ending today.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rapport.cli.common import DatabaseUrl, app, console, settings_for

strategy_app = typer.Typer(
    help="The CRM-strategy document: segments, scenarios, key figures, the communication "
    "policy and the loyalty programme (docs/strategy.md).",
    no_args_is_help=True,
)
app.add_typer(strategy_app, name="strategy")


@strategy_app.command("export")
def export_document(
    out: Annotated[Path, typer.Option("--out", help="the file to write", dir_okay=False)],
    fmt: Annotated[str, typer.Option("--format", help="pdf or html")] = "pdf",
    period: Annotated[
        str, typer.Option("--period", help="last_30_days, last_90_days, this_year, all, …")
    ] = "last_90_days",
    locale: Annotated[str, typer.Option("--locale", help="ru or en")] = "en",
    shop: Annotated[
        str | None,
        typer.Option("--shop", help="the name on the cover (default: the playbooks' brand)"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write the strategy document of a period to the file --out."""
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade
    from rapport.strategy.export import check, export
    from rapport.web.i18n import translations

    try:
        fmt, locale, period = check(fmt.lower(), locale.lower(), period)
    except InvalidInput as exc:
        for problem in exc.problems:
            console.print(f"[red]--{problem}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if not out.parent.is_dir():
        console.print(f"[red]--out: the folder {out.parent} does not exist[/red]", highlight=False)
        raise typer.Exit(1)
    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    with console.status(f"Gathering and drawing the {fmt.upper()} document…"):
        with engine.connect() as conn:
            body, span = export(
                conn,
                fmt,
                period,
                SystemClock().now(),
                locale,
                translations(locale).gettext,
                shop=shop,
            )
        out.write_bytes(body)
    console.print(
        f"wrote {out} ({len(body):,} bytes; {span.first} — {span.last}, {locale})", highlight=False
    )

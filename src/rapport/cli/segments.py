"""`rapport segments`: list, count, export, sweep; RFM and lifecycle runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for
from rapport.clock import SystemClock
from rapport.store.engine import create_engine

segments_app = typer.Typer(
    help="Segments: list, count, export; sweeps; RFM scores and lifecycle stages.",
    no_args_is_help=True,
)
app.add_typer(segments_app, name="segments")


@segments_app.command("rfm")
def segments_rfm(
    period_days: Annotated[
        int | None,
        typer.Option("--period-days", min=1, help="override the stored period for this run"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Recompute RFM scores and cells now; print customers per cell (docs/rfm-lifecycle.md)."""
    from rapport.segments.rfm import CELLS, recompute_rfm
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    summary = recompute_rfm(engine, SystemClock().now(), period_days=period_days)
    table = Table("cell", "customers", title=f"RFM over the last {summary.period_days} days")
    for slug, n in summary.cells.items():
        table.add_row(CELLS[slug], f"{n:,}")
    table.add_row("(no order in the period)", f"{summary.without_orders:,}")
    console.print(table)
    console.print(
        f"Scored {summary.scored:,} buyers ({summary.changed:,} changed, "
        f"{summary.cleared:,} cleared) in {summary.seconds:.2f} s",
        highlight=False,
    )


@segments_app.command("lifecycle")
def segments_lifecycle(database_url: DatabaseUrl = None) -> None:
    """Recompute lifecycle stages now; print customers per stage (docs/rfm-lifecycle.md)."""
    from rapport.pipeline import Pipeline
    from rapport.segments.lifecycle import recompute_lifecycle
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    summary = recompute_lifecycle(engine, Pipeline(engine), SystemClock().now())
    t = summary.thresholds
    table = Table("stage", "customers", title="Lifecycle stages")
    for stage, n in summary.stages.items():
        table.add_row(stage.replace("_", " "), f"{n:,}")
    console.print(table)
    median = f"{t.median_gap_days:g} d over {t.repeat_gaps:,} gaps" if t.median_gap_days else "n/a"
    console.print(
        f"Active ≤ {t.active_days} d, lapsed > {t.lapsed_days} d, active from "
        f"{t.active_min_orders} orders (from {t.source}; median gap {median})",
        highlight=False,
    )
    console.print(
        f"{summary.changed:,} of {summary.visited:,} customers changed stage "
        f"({summary.announced:,} events) in {summary.seconds:.2f} s",
        highlight=False,
    )


@segments_app.command("list")
def segments_list(database_url: DatabaseUrl = None) -> None:
    """Every segment and list with its current size."""
    from rapport.segments.definitions import all_segments, sizes

    engine = create_engine(settings_for(database_url).database_url)
    with engine.connect() as conn:
        found, counts = all_segments(conn), sizes(conn)
    table = Table("id", "name", "kind", "members", "version", "updated")
    for seg in found:
        table.add_row(
            str(seg.id),
            seg.name,
            seg.kind,
            f"{counts.get(seg.id, 0):,}",
            str(seg.version),
            str(seg.updated_at)[:19],
        )
    console.print(table)


@segments_app.command("count")
def segments_count(
    segment: Annotated[str | None, typer.Argument(help="a saved segment's id or name")] = None,
    rule: Annotated[
        Path | None, typer.Option("--rule", help="an unsaved rule, as a JSON or YAML file")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Evaluate a segment now; the count is the last line of the output."""
    from rapport.errors import InvalidInput
    from rapport.segments.compiler import count
    from rapport.segments.definitions import SegmentNotFound, find_segment
    from rapport.segments.rules import parse_rule, segment_lookup

    if (segment is None) == (rule is None):
        raise typer.BadParameter("give a segment or --rule FILE, not both")
    engine = create_engine(settings_for(database_url).database_url)
    now = SystemClock().now()
    with engine.connect() as conn:
        try:
            if rule is not None:
                parsed = parse_rule(rule.read_text(), "rule", lookup=segment_lookup(conn))
            else:
                parsed = find_segment(conn, segment or "").rule()
        except (InvalidInput, SegmentNotFound, ValueError, OSError) as exc:
            for problem in getattr(exc, "problems", []) or [exc]:
                console.print(f"[red]{problem}[/red]", highlight=False)
            raise typer.Exit(1) from None
        total = count(conn, parsed, now)
    print(total)


@segments_app.command("export")
def segments_export(
    segment: Annotated[str, typer.Argument(help="a saved rule segment's id or name")],
    out: Annotated[Path | None, typer.Option("--out", help="CSV file (default: stdout)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Members as CSV, evaluated now."""
    from rapport.segments.definitions import SegmentNotFound, find_segment
    from rapport.segments.export import export_rows

    engine = create_engine(settings_for(database_url).database_url)
    with engine.connect() as conn:
        try:
            rule = find_segment(conn, segment).rule()
        except (SegmentNotFound, ValueError) as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(1) from None
    rows = export_rows(engine, rule, SystemClock().now())
    if out is None:
        for chunk in rows:
            sys.stdout.write(chunk)
        return
    with out.open("w", newline="", encoding="utf-8") as fh:
        for chunk in rows:
            fh.write(chunk)
    console.print(f"Written {out}")


@segments_app.command("sweep")
def segments_sweep(database_url: DatabaseUrl = None) -> None:
    """Re-check time-dependent segments now (rapport serve does it every minute)."""
    from rapport.pipeline import Pipeline
    from rapport.worker import sweep_segments

    engine = create_engine(settings_for(database_url).database_url)
    result = sweep_segments(Pipeline(engine))
    console.print(f"{result.entered:,} entered, {result.exited:,} exited")

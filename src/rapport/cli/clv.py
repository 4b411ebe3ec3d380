"""`rapport clv`: fit the CLV models to a CSV of transactions, or score the whole store.

``fit`` is for an analyst checking a model on exported data (with a calibration end it
also prints the holdout check); ``score`` fits the models to the store's orders and
writes the predictions onto every customer, then brings the segments that read them up
to date (docs/clv.md).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for

clv_app = typer.Typer(
    help="Predictive CLV: BG/NBD, Pareto/NBD and Gamma-Gamma (docs/clv.md).",
    no_args_is_help=True,
)
app.add_typer(clv_app, name="clv")

# Card fields the scoring run writes; segments reading them are re-evaluated after it.


class FitModel(StrEnum):
    bgnbd = "bgnbd"
    paretonbd = "paretonbd"
    gammagamma = "gammagamma"


class PurchaseModelName(StrEnum):
    bgnbd = "bgnbd"
    paretonbd = "paretonbd"


class TimeUnit(StrEnum):
    day = "day"
    week = "week"


def _fail(exc: Exception) -> None:
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _parse_date(text: str | None, option: str) -> date | None:
    from rapport.errors import InvalidInput, Problem

    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput([Problem(option, f"{text!r} is not a date (use YYYY-MM-DD)")]) from None


@clv_app.command("fit")
def clv_fit(
    file: Annotated[Path, typer.Argument(help="CSV of transactions, one per line, with a header")],
    customer: Annotated[str, typer.Option("--customer", help="column with the customer id")],
    date_column: Annotated[str, typer.Option("--date", help="column with the date")],
    amount: Annotated[
        str | None,
        typer.Option("--amount", help="column with the amount (needed for gammagamma)"),
    ] = None,
    calibration_end: Annotated[
        str | None,
        typer.Option(
            "--calibration-end",
            help="YYYY-MM-DD: fit to the days up to it and check the forecast against the rest",
        ),
    ] = None,
    time_unit: Annotated[TimeUnit, typer.Option("--time-unit")] = TimeUnit.day,
    model: Annotated[FitModel, typer.Option("--model")] = FitModel.bgnbd,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Fit one model to a CSV of transactions; print its parameters and log-likelihood."""
    from rapport.analytics.clv.errors import ClvError
    from rapport.analytics.clv.report import fit_transactions
    from rapport.analytics.clv.transactions_csv import read_transactions
    from rapport.errors import InvalidInput, Problem

    try:
        if model is FitModel.gammagamma and amount is None:
            raise InvalidInput([Problem("--amount", "the gammagamma model needs an amount column")])
        cal_end = _parse_date(calibration_end, "--calibration-end")
        transactions = read_transactions(
            file, customer=customer, date_column=date_column, amount=amount
        )
        report = fit_transactions(
            transactions, model=model.value, time_unit=time_unit.value, calibration_end=cal_end
        )
    except (InvalidInput, ClvError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
        return
    _print_report(report)


def _print_report(report: Any) -> None:
    params = Table("parameter", "estimate", title=f"{report.name} fitted by maximum likelihood")
    for name, value in report.params.items():
        params.add_row(name, f"{value:.6g}")
    console.print(params)
    when = (
        f"calibration to {report.calibration_end}"
        if report.calibration_end
        else (f"observed to {report.observation_end}")
    )
    console.print(
        f"log-likelihood {report.log_likelihood:.4f}; {report.customers:,} customers, "
        f"{report.repeat_customers:,} with a repeat purchase, {report.fitted_customers:,} "
        f"used by the fit; time in {report.time_unit}s, {when}",
        highlight=False,
    )
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False)
    check = report.holdout
    if check is None:
        return
    table = Table(
        "calibration frequency",
        "customers",
        "actual",
        "predicted",
        "actual / customer",
        "predicted / customer",
        title=f"Holdout check: {check.measure} over {check.duration:g} {check.time_unit}s "
        f"after {report.calibration_end}",
    )
    for row in [*check.by_frequency, check.total]:
        table.add_row(
            row.frequency,
            f"{row.customers:,}",
            f"{row.actual:,.2f}",
            f"{row.predicted:,.2f}",
            f"{row.actual_mean:.3f}",
            f"{row.predicted_mean:.3f}",
        )
    console.print(table)


@clv_app.command("score")
def clv_score(
    model: Annotated[PurchaseModelName, typer.Option("--model")] = PurchaseModelName.bgnbd,
    horizon_months: Annotated[
        int, typer.Option("--horizon-months", help="months of value in predicted_clv")
    ] = 12,
    monthly_discount: Annotated[
        float, typer.Option("--monthly-discount", help="discount rate per month")
    ] = 0.01,
    database_url: DatabaseUrl = None,
) -> None:
    """Score every customer with an order: predicted CLV, purchases in 90 days, churn risk.

    Fits the purchase model and Gamma-Gamma to the store's orders, writes the predictions
    onto the cards and re-evaluates the segments that read them. Nothing is written when
    the history is too short or a fit does not converge.
    """
    from rapport.analytics.clv.errors import ClvError
    from rapport.analytics.clv.scoring import score_store
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    now = SystemClock().now()
    labels = {"reading": "Reading orders", "fitting": "Fitting models", "writing": "Writing scores"}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        try:
            result = score_store(
                engine,
                now,
                model=model.value,
                horizon_months=horizon_months,
                monthly_discount=monthly_discount,
                progress=progress,
            )
        except (InvalidInput, ClvError) as exc:
            bar.stop()
            console.print("[red]Nothing was written.[/red]")
            _fail(exc)
    moved = refresh_segments(engine, now)
    _print_score(result, moved)


def refresh_segments(engine: Any, now: datetime) -> int:
    """Re-evaluate the segments whose rules read a scored field; returns the moves."""
    from rapport.analytics.clv.scoring import SCORED_FIELDS
    from rapport.pipeline import Pipeline
    from rapport.segments.sweep import sweep
    from rapport.store.engine import writing

    pipeline = Pipeline(engine)
    with writing(engine) as conn:
        index = pipeline.segment_index.current(conn)
        readers = [i.segment.id for i in index.items if i.deps.customer_fields & SCORED_FIELDS]
        moves = sweep(conn, index, now, readers) if readers else []
        pipeline.record_many(
            conn, [(m.customer_id, m.name, m.properties) for m in moves], react=False
        )
    return len(moves)


def _print_score(result: Any, moved: int) -> None:
    table = Table("", "", title=f"CLV scores written at {result.scored_at:%Y-%m-%d %H:%M} UTC")
    params = ", ".join(f"{k} {v:.4g}" for k, v in result.params.items())
    spend = ", ".join(f"{k} {v:.4g}" for k, v in result.spend_params.items())
    table.add_row("purchase model", f"{result.model}: {params}")
    table.add_row("spend model", f"Gamma-Gamma: {spend}")
    table.add_row("customers scored", f"{result.customers:,}")
    table.add_row("with a repeat purchase", f"{result.repeat_customers:,}")
    table.add_row("cleared (no counted order)", f"{result.cleared:,}")
    table.add_row(
        f"predicted CLV, {result.horizon_months} months",
        f"{result.total_predicted_clv:,.2f} in total",
    )
    table.add_row("expected purchases, 90 days", f"{result.expected_purchases_90d:,.1f}")
    table.add_row("mean churn risk", f"{result.mean_churn_risk:.3f}")
    table.add_row("segment moves", f"{moved:,}")
    table.add_row("time", ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()))
    console.print(table)

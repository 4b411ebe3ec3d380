"""`rapport coupons`: series of coupons, printed codes, personal codes, checking a code
(docs/coupons.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for

coupons_app = typer.Typer(
    help="Coupons and promo codes: series, printed codes, personal codes (docs/coupons.md).",
    no_args_is_help=True,
)
series_app = typer.Typer(
    help="Coupon series (campaigns): create from a file, list, show, pause, resume.",
    no_args_is_help=True,
)
coupons_app.add_typer(series_app, name="series")
app.add_typer(coupons_app, name="coupons")

SeriesName = Annotated[str, typer.Argument(help="the series' name, as in its settings")]
PROGRESS_FROM = 10_000  # codes: below this a generation is over before a bar is drawn


def _fail(exc: Exception) -> NoReturn:
    """Every problem on its own line (with its path), then exit 1."""
    problems = getattr(exc, "problems", None)
    for problem in problems or [getattr(exc, "reason", None) or getattr(exc, "message", exc)]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _engine(database_url: str | None) -> Any:
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


def _print_series(series: Any, counts: dict[str, int]) -> None:
    table = Table("setting", "value", title=f"Coupon series {series.name}")
    for key, value in series.settings.model_dump(mode="json").items():
        table.add_row(key, "" if value is None else str(value))
    table.add_row("paused", "yes" if series.paused else "no")
    table.add_row("offer", series.settings.describe())
    for key in ("codes", "issued", "uses"):
        table.add_row(f"{key} (count)", f"{counts[key]:,}")
    console.print(table)


@series_app.command("create")
def series_create(
    file: Annotated[
        Path,
        typer.Argument(
            help="the settings as YAML or JSON (docs/coupons.md, Series settings)",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Create a series from a settings file; every bad field is named and nothing stored."""
    from rapport.access import audit
    from rapport.access.audit import Actor
    from rapport.clock import SystemClock
    from rapport.errors import InvalidInput
    from rapport.loyalty.coupons import CouponError, parse_settings
    from rapport.loyalty.coupons.store import create_series, series_counts
    from rapport.segments.rules import load_text
    from rapport.store.engine import writing

    engine = _engine(database_url)
    now = SystemClock().now()
    try:
        settings = parse_settings(load_text(file.read_text(encoding="utf-8"), str(file)))
        with writing(engine) as conn:
            series = create_series(conn, settings, now)
            audit.record(
                conn,
                Actor.cli(),
                "coupon_series.create",
                "coupon_series",
                series.name,
                now,
                {"settings": settings.stored()},
            )
            counts = series_counts(conn, [series.id])[series.id]
    except (InvalidInput, CouponError) as exc:
        console.print(f"[red]{file}: nothing was stored.[/red]", highlight=False)
        _fail(exc)
    _print_series(series, counts)


@series_app.command("list")
def series_list(database_url: DatabaseUrl = None) -> None:
    """Every series with its offer, codes, issued codes and uses."""
    from rapport.loyalty.coupons.store import all_series, series_counts

    engine = _engine(database_url)
    with engine.connect() as conn:
        found = all_series(conn)
        counts = series_counts(conn, [s.id for s in found])
    table = Table("name", "title", "offer", "codes", "mode", "codes", "issued", "uses", "state")
    for s in found:
        c = counts[s.id]
        table.add_row(
            s.name,
            s.settings.title,
            s.settings.describe(),
            s.settings.shared_code or f"{s.settings.prefix}…",
            s.settings.codes,
            f"{c['codes']:,}",
            f"{c['issued']:,}",
            f"{c['uses']:,}",
            "paused" if s.paused else "active",
        )
    console.print(table)


@series_app.command("show")
def series_show(name: SeriesName, database_url: DatabaseUrl = None) -> None:
    """One series' settings and counts."""
    from rapport.loyalty.coupons import CouponError
    from rapport.loyalty.coupons.store import get_series, series_counts

    engine = _engine(database_url)
    with engine.connect() as conn:
        try:
            series = get_series(conn, name)
        except CouponError as exc:
            _fail(exc)
        counts = series_counts(conn, [series.id])[series.id]
    _print_series(series, counts)


def _set_paused(name: str, paused: bool, database_url: str | None) -> None:
    from rapport.access import audit
    from rapport.access.audit import Actor
    from rapport.clock import SystemClock
    from rapport.loyalty.coupons import CouponError
    from rapport.loyalty.coupons.store import set_paused
    from rapport.store.engine import writing

    engine = _engine(database_url)
    now = SystemClock().now()
    try:
        with writing(engine) as conn:
            set_paused(conn, name, paused, now)
            action = "coupon_series.pause" if paused else "coupon_series.resume"
            audit.record(conn, Actor.cli(), action, "coupon_series", name, now)
    except CouponError as exc:
        _fail(exc)
    console.print(f"Series {name} is {'paused' if paused else 'active'}.", highlight=False)


@series_app.command("pause")
def series_pause(name: SeriesName, database_url: DatabaseUrl = None) -> None:
    """Refuse every code of the series at the checkout, and issue none."""
    _set_paused(name, True, database_url)


@series_app.command("resume")
def series_resume(name: SeriesName, database_url: DatabaseUrl = None) -> None:
    """Accept the series' codes again."""
    _set_paused(name, False, database_url)


@coupons_app.command("generate")
def generate(
    series: SeriesName,
    count: Annotated[int, typer.Argument(help="how many codes (up to 1,000,000)")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write the codes to this CSV file (else one per line)"),
    ] = None,
    bom: Annotated[
        bool,
        typer.Option("--bom/--no-bom", help="mark the CSV as UTF-8 for spreadsheets"),
    ] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Generate printed codes for a unique series, in one transaction (all or none)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from rapport.access import audit
    from rapport.access.audit import Actor
    from rapport.analytics.export import to_csv
    from rapport.clock import SystemClock
    from rapport.loyalty.coupons import CouponError
    from rapport.loyalty.coupons.codes import code_expiry, generate_codes
    from rapport.loyalty.coupons.store import get_series
    from rapport.store.engine import writing

    engine = _engine(database_url)
    now = SystemClock().now()
    columns = (TextColumn("Generating"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=count < PROGRESS_FROM) as bar:
        task = bar.add_task("codes", total=count)
        try:
            with writing(engine) as conn:
                found = get_series(conn, series)
                codes = generate_codes(
                    conn,
                    found.id,
                    found.settings,
                    count,
                    now,
                    on_progress=lambda done: bar.update(task, completed=done),
                )
                audit.record(
                    conn,
                    Actor.cli(),
                    "coupon_series.generate",
                    "coupon_series",
                    series,
                    now,
                    {"count": len(codes)},
                )
        except CouponError as exc:
            bar.stop()
            console.print("[red]No code was stored.[/red]")
            _fail(exc)
    if out is None:
        for code in codes:
            typer.echo(code)
        return
    expires = code_expiry(found.settings, now) or found.settings.valid_until
    rows = [
        {"code": c, "series": series, "expires_at": expires.isoformat() if expires else None}
        for c in codes
    ]
    out.write_text(to_csv(rows, ["code", "series", "expires_at"], bom=bom), encoding="utf-8")
    console.print(f"{len(codes):,} codes of {series} written to {out}", highlight=False)


@coupons_app.command("issue")
def issue_code(
    customer: Annotated[int, typer.Argument(help="the customer's id")],
    series: SeriesName,
    key: Annotated[
        str | None,
        typer.Option("--key", help="idempotency key: the same key gives back the same code"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Issue a personal code of a unique series to a customer (on their timeline)."""
    import uuid

    from rapport.access import audit
    from rapport.access.audit import Actor
    from rapport.loyalty.coupons import CouponError, issue
    from rapport.pipeline import Pipeline
    from rapport.store.engine import writing

    engine = _engine(database_url)
    pipeline = Pipeline(engine)
    now = pipeline.clock.now()
    try:
        with writing(engine) as conn:
            code, events = issue(conn, customer, series, key or f"cli:{uuid.uuid4()}", now)
            if events:
                pipeline.record_many(conn, events)
                audit.record(
                    conn,
                    Actor.cli(),
                    "coupon.issue",
                    "customer",
                    events[0][0],
                    now,
                    {"series": series, "code": code},
                )
    except CouponError as exc:
        _fail(exc)
    typer.echo(code)


def _line(text: str, index: int) -> Any:
    """``PRICE[xQTY][@CATEGORY]``: ``1200x2@running``, ``300``, ``99.90@bags``."""
    from rapport.loyalty.order import Line

    amount, _, category = text.partition("@")
    price, _, qty = amount.lower().partition("x")
    try:
        return Line(f"line-{index}", category or None, float(price), int(qty or 1))
    except ValueError:
        raise typer.BadParameter(
            f"--line {text!r}: write PRICE[xQTY][@CATEGORY], e.g. 1200x2@running"
        ) from None


@coupons_app.command("check")
def check(
    code: Annotated[str, typer.Argument(help="the code, as the customer typed it")],
    customer: Annotated[int, typer.Option("--customer", help="who would use it")],
    line: Annotated[
        list[str] | None,
        typer.Option(
            "--line",
            help=r"an order line PRICE\[xQTY]\[@CATEGORY] (1200x2@running), repeatable; "
            "with lines the "
            "discount is computed, without them only the code and the customer are checked",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Would this code work for this customer (and order)? Changes nothing; exit 1 if not."""
    from rapport.clock import SystemClock
    from rapport.loyalty.coupons import CouponRefused
    from rapport.loyalty.coupons.redeem import check_usable, find_code, price
    from rapport.loyalty.order import CheckoutOrder

    lines = tuple(_line(text, i) for i, text in enumerate(line or []))
    engine = _engine(database_url)
    now = SystemClock().now()
    with engine.connect() as conn:
        try:
            found = find_code(conn, code)
            check_usable(conn, found, customer, now)
            quoted = price(conn, found, CheckoutOrder(customer, lines)) if lines else None
        except CouponRefused as exc:
            console.print(f"[red]{exc.code}: {exc.reason}[/red]", highlight=False)
            raise typer.Exit(1) from None
    settings = found.series.settings
    console.print(
        f"{found.code} ({found.series.name}): {settings.describe()}, usable by customer {customer}",
        highlight=False,
    )
    if quoted is not None:
        console.print(
            f"discount {quoted.discount:.2f} on eligible lines of {quoted.eligible_amount:.2f}",
            highlight=False,
        )

"""`rapport recommend`: build the lists, evaluate the strategies, show one answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rapport.cli.common import DatabaseUrl, app, console, settings_for

recommend_app = typer.Typer(
    help="Product recommendations (docs/recommendations.md).", no_args_is_help=True
)
app.add_typer(recommend_app, name="recommend")

LABELS = {
    "reading": "Reading orders, views and the catalog",
    "popular": "Popular lists",
    "new_arrivals": "New arrivals",
    "bought_together": "Bought together",
    "compatible": "Compatible categories",
    "personal": "Personal neighbours",
    "writing": "Writing the lists",
}


def _engine(database_url: str | None) -> Any:
    from rapport.store.engine import create_engine
    from rapport.store.migrate import upgrade

    engine = create_engine(settings_for(database_url).database_url)
    upgrade(engine)
    return engine


def _fail(exc: Exception) -> None:
    for problem in getattr(exc, "problems", None) or [exc]:
        console.print(f"[red]{problem}[/red]", highlight=False)
    raise typer.Exit(1)


def _progress_bar() -> tuple[Progress, Any]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage in ("reading", "writing"):
            if stage not in tasks:
                tasks[stage] = bar.add_task(LABELS[stage], total=1)
            bar.update(tasks[stage], completed=done)
            return
        if "fit" not in tasks:
            tasks["fit"] = bar.add_task("Computing lists", total=total)
        bar.update(tasks["fit"], completed=done, description=f"Computing lists: {LABELS[stage]}")

    return bar, progress


@recommend_app.command("build")
def recommend_build(
    personal_model: Annotated[
        str, typer.Option("--personal-model", help="auto (ALS when installed), knn or als")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Rebuild every recommendation list from the store (the worker does it daily)."""
    from rapport.clock import SystemClock
    from rapport.recommend.build import build
    from rapport.recommend.personal import MODELS, ModelUnavailable
    from rapport.recommend.strategies import BuildOptions

    if personal_model not in MODELS:
        _fail(ValueError(f"--personal-model: one of {', '.join(MODELS)}, not {personal_model!r}"))
    engine = _engine(database_url)
    bar, progress = _progress_bar()
    try:
        with bar:
            result = build(
                engine,
                SystemClock().now(),
                BuildOptions(personal_model=personal_model),
                progress=None if as_json else progress,
            )
    except ModelUnavailable as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        return
    table = Table(
        "list",
        "lists",
        "rows",
        title=f"Recommendations built at {result.built_at:%Y-%m-%d %H:%M} UTC",
    )
    for kind, rows in result.rows.items():
        table.add_row(kind, f"{result.lists[kind]:,}", f"{rows:,}")
    console.print(table)
    inputs = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.inputs.items())
    console.print(f"From {inputs}; personal model: {result.personal_model}", highlight=False)
    console.print(
        "Time: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()), highlight=False
    )


def _parse_date(text: str, option: str) -> datetime:
    from rapport.errors import InvalidInput, Problem

    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput([Problem(option, f"{text!r} is not a date (use YYYY-MM-DD)")]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@recommend_app.command("evaluate")
def recommend_evaluate(
    split_date: Annotated[
        str | None, typer.Option("--split-date", help="YYYY-MM-DD: train before, test after")
    ] = None,
    holdout_days: Annotated[
        int | None,
        typer.Option("--holdout-days", help="test on the last N days of orders (default 30)"),
    ] = None,
    max_customers: Annotated[
        int, typer.Option("--max-customers", help="a fixed sample of test customers", min=1)
    ] = 20_000,
    personal_model: Annotated[str, typer.Option("--personal-model")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Hit rate@10 and NDCG@10 of each strategy on a time split, beside popularity."""
    from rapport.errors import InvalidInput, Problem
    from rapport.recommend.evaluate import evaluate
    from rapport.recommend.personal import MODELS, ModelUnavailable
    from rapport.recommend.strategies import BuildOptions

    try:
        if split_date is not None and holdout_days is not None:
            raise InvalidInput(
                [Problem("--split-date", "give --split-date or --holdout-days, not both")]
            )
        if personal_model not in MODELS:
            raise InvalidInput(
                [Problem("--personal-model", f"one of {', '.join(MODELS)}, not {personal_model!r}")]
            )
        split = _parse_date(split_date, "--split-date") if split_date else None
        engine = _engine(database_url)
        result = evaluate(
            engine,
            split=split,
            holdout_days=holdout_days,
            max_customers=max_customers,
            build_options=BuildOptions(personal_model=personal_model),
        )
    except (InvalidInput, ModelUnavailable) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        return
    base = result.baseline
    table = Table(
        "strategy",
        "hit rate@10",
        "NDCG@10",
        "vs popular (NDCG)",
        "own share",
        title=f"Time split at {result.split:%Y-%m-%d %H:%M} UTC: "
        f"{result.test_customers:,} test customers",
    )
    for s in result.scores:
        ratio = "baseline" if s is base else (f"× {s.ndcg / base.ndcg:.2f}" if base.ndcg else "—")
        table.add_row(s.strategy, f"{s.hit_rate:.4f}", f"{s.ndcg:.4f}", ratio, f"{s.own_share:.0%}")
    console.print(table)
    console.print(
        f"{result.relevant_items:,} products new to their buyer after the split; "
        f"{result.skipped_cold:,} buyers without history before it are not scored; "
        f"personal model: {result.personal_model}; "
        "own share: slots the strategy filled itself, the rest are fallbacks",
        highlight=False,
    )


@recommend_app.command("show")
def recommend_show(
    customer: Annotated[str | None, typer.Argument(help="Rapport customer id")] = None,
    product: Annotated[str | None, typer.Option("--product", help="a product id")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="the site's user id")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy")] = None,
    category: Annotated[str | None, typer.Option("--category")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 10,
    database_url: DatabaseUrl = None,
) -> None:
    """What the API would answer for a customer and/or a product."""
    import sqlalchemy as sa

    from rapport.clock import SystemClock
    from rapport.customers.card import find_by_identity
    from rapport.customers.profile import live_id
    from rapport.recommend.build import last_build
    from rapport.recommend.rank import Ask
    from rapport.recommend.serve import read_histories, recommend
    from rapport.recommend.strategies import default_strategy, requirement_problem
    from rapport.store.tables import products

    engine = _engine(database_url)
    now = SystemClock().now()
    with engine.connect() as conn:
        cid = None
        if customer is not None:
            if not customer.isdigit():
                _fail(ValueError(f"CUSTOMER: {customer!r} is not a Rapport id (use --user-id)"))
            cid = live_id(conn, int(customer))
            if cid is None:
                _fail(LookupError(f"customer {customer} does not exist"))
        elif user_id is not None:
            cid = find_by_identity(conn, "user_id", user_id)
            if cid is None:
                _fail(LookupError(f"no customer has user_id {user_id!r}"))
        chosen = strategy or default_strategy(
            has_product=product is not None, has_customer=cid is not None
        )
        problem = requirement_problem(
            chosen,
            has_product=product is not None,
            has_customer=cid is not None,
            has_category=category is not None,
        )
        if problem is not None:
            _fail(ValueError(f"--{problem[0]}: {problem[1]}"))
        product_category = None
        if product is not None:
            row = conn.execute(
                sa.select(products.c.category_id).where(products.c.id == product)
            ).first()
            if row is None:
                _fail(LookupError(f"product {product!r} does not exist"))
            product_category = row.category_id
        history = read_histories(conn, [cid], now)[cid] if cid is not None else None
        picks = recommend(
            conn,
            Ask(
                chosen,
                limit,
                product=product,
                product_category=product_category,
                category=category,
                history=history,
            ),
        )
        built = last_build(conn)
    table = Table("#", "product", "name", "category", "price", "served by", "score", title=chosen)
    for n, p in enumerate(picks, 1):
        row = p.product
        price = (
            "" if row.get("price") is None else f"{row['price']:,.2f} {row.get('currency') or ''}"
        )
        table.add_row(
            str(n),
            row["id"],
            row.get("name") or "",
            row.get("category_id") or "",
            price,
            p.strategy,
            f"{p.score:.4g}",
        )
    console.print(table)
    console.print(
        f"Lists built at {built['built_at']}"
        if built
        else "[yellow]No build yet: run `rapport recommend build`[/yellow]",
        highlight=False,
    )

"""Send steps keep the templates they read between rounds, on both stores: an edit (a new
version, or a rename alone) is used from the next send on, a template deleted makes the
step skip with its reason, and a round that sends to several groups reads each template
once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from rapport.messaging.templates.store import create_template, delete_template, update_template
from rapport.scenarios.steps import StepContext
from rapport.store.engine import writing
from tests.conftest import T0


def _template(conn: sa.Connection, name: str, body: str) -> int:
    stored = create_template(
        conn,
        name=name,
        channel="email",
        kind="text",
        variants={"en": {"subject": "Hi", "body": body}},
        now=T0,
    )
    return stored.id


def test_an_edited_template_is_read_again(engine: sa.Engine) -> None:
    ctx = StepContext()
    with writing(engine) as conn:
        tid = _template(conn, "hello", "first")
    with engine.connect() as conn:
        first = ctx.template(conn, "hello")
        assert first is not None and first.variants["en"]["body"] == "first"
        assert ctx.template(conn, tid) is first  # by id too, from what was read
        assert ctx.template(conn, str(tid)) is first
    with writing(engine) as conn:
        update_template(conn, tid, T0, variants={"en": {"subject": "Hi", "body": "second"}})
    with engine.connect() as conn:
        second = ctx.template(conn, "hello")
        assert second is not None and second.variants["en"]["body"] == "second"
    with writing(engine) as conn:
        update_template(conn, tid, T0.replace(hour=13), name="greeting")  # same version
    with engine.connect() as conn:
        assert ctx.template(conn, "hello") is None
        renamed = ctx.template(conn, "greeting")
        assert renamed is not None and renamed.name == "greeting"
        assert ctx.template(conn, "nothing") is None
        assert ctx.template(conn, 999_999) is None
    with writing(engine) as conn:
        delete_template(conn, tid)
    with engine.connect() as conn:
        assert ctx.template(conn, tid) is None
        assert ctx.template(conn, "greeting") is None


def test_a_known_template_costs_one_light_read(engine: sa.Engine) -> None:
    ctx = StepContext()
    with writing(engine) as conn:
        _template(conn, "hello", "body")
    with engine.connect() as conn:
        ctx.template(conn, "hello")
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            assert ctx.template(conn, "hello") is not None
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert "compiled" not in statements[0]

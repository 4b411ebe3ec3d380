"""Comparison operators, each with its SQL form and its Python form side by side.

A "kind" says what a field holds and so which operators apply and how a rule value is
read: ``string``, ``number``, ``date``, ``datetime``, ``boolean``, ``json`` (a trait or an
event property: the rule value's JSON type picks the comparison) and ``days`` (whole days
since a datetime, translated in SQL into a bound on that datetime so it needs no date
arithmetic in the store).

Every SQL form is two-valued (true or false, never NULL), so ``not`` means the same in SQL
as in Python. ``ne`` and ``not_in`` are the negations of ``eq`` and ``in``: a customer
without the field matches them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments import dates
from rapport.segments.context import Context
from rapport.segments.jsondoc import JsonRef, py_date_text, py_number, py_text
from rapport.segments.problems import Bad

COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")
RELATIVE = ("within_last", "within_next", "more_than_days_ago", "anniversary_within")
NO_VALUE = ("exists", "is_true", "is_false")

OPERATORS: dict[str, tuple[str, ...]] = {
    "string": (*COMPARE, "in", "not_in", "between", "contains", "starts_with", "exists"),
    "number": (*COMPARE, "in", "not_in", "between", "exists"),
    "days": (*COMPARE, "in", "not_in", "between", "exists"),
    "date": (*COMPARE, "between", "exists", *RELATIVE),
    "datetime": (*COMPARE, "between", "exists", *RELATIVE),
    "boolean": ("is_true", "is_false", "exists"),
    "json": (
        *COMPARE,
        "in",
        "not_in",
        "between",
        "contains",
        "starts_with",
        "exists",
        "is_true",
        "is_false",
        *RELATIVE,
    ),
}
ALL_OPERATORS = tuple(dict.fromkeys(op for ops in OPERATORS.values() for op in ops))

_KIND_WORDS = {
    "string": "text",
    "number": "a number",
    "days": "a whole number of days",
    "date": "a date",
    "datetime": "a date and time",
    "boolean": "true or false",
    "json": "a JSON value",
}


# ---------------------------------------------------------------- checking rule values


def check(kind: str, name: str, op: str, value: Any, where: str) -> Any:
    """The rule value in the form the evaluators use; ``Bad`` (at ``where``) if it is wrong."""
    if op not in ALL_OPERATORS:
        raise Bad(f"{where}.op", f"unknown operator {op!r}")
    if op not in OPERATORS[kind]:
        raise Bad(
            f"{where}.op",
            f"{op} does not apply to {name}, which holds {_KIND_WORDS[kind]}; "
            f"use one of {', '.join(OPERATORS[kind])}",
        )
    at = f"{where}.value"
    if op in NO_VALUE:
        if value is not None:
            raise Bad(at, f"{op} takes no value")
        return None
    if value is None:
        raise Bad(at, f"{op} needs a value")
    if op in RELATIVE:
        if not _is_int(value) or value < 0:
            raise Bad(at, f"{op} needs a whole number of days (0 or more)")
        return value
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise Bad(at, f"{op} needs a non-empty list")
        items = [_scalar(kind, name, v, f"{at}[{i}]", op) for i, v in enumerate(value)]
        if kind == "json" and len({_json_type(v) for v in items}) > 1:
            raise Bad(at, f"{op} needs values of one type")
        return tuple(items)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise Bad(at, "between needs a list of two values [low, high]")
        low = _scalar(kind, name, value[0], f"{at}[0]", op)
        high = _scalar(kind, name, value[1], f"{at}[1]", op)
        if _json_type(low) != _json_type(high):
            raise Bad(at, "between needs two values of one type")
        if low > high:
            raise Bad(at, "between needs low <= high")
        return (low, high)
    if op in ("contains", "starts_with"):
        if not isinstance(value, str) or not value:
            raise Bad(at, f"{op} needs a non-empty string")
        return value
    return _scalar(kind, name, value, at, op)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _scalar(kind: str, name: str, value: Any, at: str, op: str) -> Any:
    mismatch = Bad(at, f"{name} holds {_KIND_WORDS[kind]}; got {value!r}")
    if kind == "string":
        if not isinstance(value, str):
            raise mismatch
        return value
    if kind == "number":
        if py_number(value) is None:
            raise mismatch
        return value
    if kind == "days":
        if not _is_int(value):
            raise mismatch
        return value
    if kind == "date":
        if not isinstance(value, str):
            raise mismatch
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise Bad(at, f"expected an ISO date like 1990-05-31, got {value!r}") from None
    if kind == "datetime":
        if not isinstance(value, str):
            raise mismatch
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Bad(
                at, f"expected an ISO date and time like 2026-03-01T12:00:00Z, got {value!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    # json: strings and numbers compare and order; booleans only match.
    if isinstance(value, bool):
        if op not in ("eq", "ne", "in", "not_in"):
            raise Bad(at, f"{op} cannot compare true/false; use is_true or is_false")
        return value
    if isinstance(value, str) or py_number(value) is not None:
        return value
    raise Bad(at, f"expected a string, a number or true/false, got {value!r}")


def dump(value: Any) -> Any:
    """A checked value back in its JSON form."""
    if isinstance(value, tuple):
        return [dump(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


# ---------------------------------------------------------------- Python


def test(kind: str, op: str, value: Any, x: Any, ctx: Context) -> bool:
    """Does the field value ``x`` (None when absent) satisfy ``op value``?"""
    if op == "ne":
        return not test(kind, "eq", value, x, ctx)
    if op == "not_in":
        return not test(kind, "in", value, x, ctx)
    if op == "in":
        return any(test(kind, "eq", v, x, ctx) for v in value)
    if kind == "days":
        x = None if x is None else dates.days_between(x, ctx.now)
    if op == "exists":
        return x is not None
    if op in ("is_true", "is_false"):
        return x is (op == "is_true")
    if op in RELATIVE:
        return _test_relative(kind, op, value, x, ctx)
    if kind == "json":
        sample = value[0] if op == "between" else value
        if isinstance(sample, bool):
            return isinstance(x, bool) and x is sample
        x = py_text(x) if isinstance(sample, str) else py_number(x)
    if x is None:
        return False
    if op == "between":
        return bool(value[0] <= x <= value[1])
    if op == "contains":
        return value in x
    if op == "starts_with":
        return bool(x.startswith(value))
    return bool(_PY_COMPARE[op](x, value))


_PY_COMPARE = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def _test_relative(kind: str, op: str, n: int, x: Any, ctx: Context) -> bool:
    if x is None:
        return False
    today = dates.today(ctx.now)
    span = timedelta(days=n)
    if kind == "datetime":
        if op == "anniversary_within":
            d = x.astimezone(UTC).date()
            return (d.month, d.day) in dates.anniversary_days(ctx.now, n)
        if op == "within_last":
            return bool(ctx.now - span <= x <= ctx.now)
        if op == "within_next":
            return bool(ctx.now <= x <= ctx.now + span)
        return bool(x < ctx.now - span)
    if kind == "json":
        text = py_date_text(x)
        if text is None:
            return False
        if op == "anniversary_within":
            return text[5:10] in dates.anniversary_strings(ctx.now, n)
        back, ahead = (today - span).isoformat(), (today + span).isoformat()
        return _in_day_range(op, text, back, today.isoformat(), ahead)
    if op == "anniversary_within":
        return (x.month, x.day) in dates.anniversary_days(ctx.now, n)
    return _in_day_range(op, x, today - span, today, today + span)


def _in_day_range(op: str, x: Any, back: Any, today: Any, ahead: Any) -> bool:
    if op == "within_last":
        return bool(back <= x <= today)
    if op == "within_next":
        return bool(today <= x <= ahead)
    return bool(x < back)


# ---------------------------------------------------------------- SQL


def sql(kind: str, op: str, value: Any, ref: Any, ctx: Context) -> ColumnElement[bool]:
    """The SQL twin of :func:`test`; ``ref`` is a column expression or a :class:`JsonRef`."""
    if op == "ne":
        return sa.not_(sql(kind, "eq", value, ref, ctx))
    if op == "not_in":
        return sa.not_(sql(kind, "in", value, ref, ctx))
    if kind == "days":
        return _sql_days(op, value, ref, ctx)
    if op == "exists":
        return ref.present() if isinstance(ref, JsonRef) else ref.is_not(None)
    if op in ("is_true", "is_false"):
        if isinstance(ref, JsonRef):
            return ref.is_bool(op == "is_true")
        return sa.and_(ref.is_not(None), ref == (op == "is_true"))
    if op in RELATIVE:
        return _sql_relative(kind, op, value, ref, ctx)
    expr = ref
    if isinstance(ref, JsonRef):
        sample = value[0] if op in ("in", "between") else value
        if isinstance(sample, bool):
            items = value if op == "in" else (value,)
            return sa.or_(*(ref.is_bool(v) for v in items))
        expr = ref.text() if isinstance(sample, str) else ref.number()
    present = expr.is_not(None)
    if op == "eq":
        return sa.and_(present, expr == value)
    if op == "in":
        return sa.and_(present, expr.in_(list(value)))
    if op == "contains":
        find = sa.func.strpos if ctx.postgres else sa.func.instr
        return sa.and_(present, find(expr, value) > 0)
    if op == "starts_with":
        return sa.and_(present, sa.func.substr(expr, 1, len(value)) == value)
    sample = value[0] if op == "between" else value
    ordered = sa.collate(expr, "C") if ctx.postgres and isinstance(sample, str) else expr
    if op == "between":
        return sa.and_(present, ordered >= value[0], ordered <= value[1])
    return sa.and_(present, _SQL_COMPARE[op](ordered, value))


_SQL_COMPARE = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def _sql_days(op: str, value: Any, t: Any, ctx: Context) -> ColumnElement[bool]:
    """``floor((now - t) / 1 day) >= n`` is ``t <= now - n days``: a bound, no date math."""

    def at_least(n: int) -> ColumnElement[bool]:
        return sa.and_(t.is_not(None), t <= ctx.now - timedelta(days=n))

    def at_most(n: int) -> ColumnElement[bool]:
        return sa.and_(t.is_not(None), t > ctx.now - timedelta(days=n + 1))

    if op == "exists":
        return t.is_not(None)
    if op == "eq":
        return sa.and_(at_least(value), at_most(value))
    if op == "in":
        return sa.or_(*(sa.and_(at_least(v), at_most(v)) for v in value))
    if op == "between":
        return sa.and_(at_least(value[0]), at_most(value[1]))
    return {
        "ge": lambda: at_least(value),
        "gt": lambda: at_least(value + 1),
        "le": lambda: at_most(value),
        "lt": lambda: at_most(value - 1),
    }[op]()


def _sql_relative(kind: str, op: str, n: int, ref: Any, ctx: Context) -> ColumnElement[bool]:
    today = dates.today(ctx.now)
    span = timedelta(days=n)
    if kind == "datetime":
        if op == "anniversary_within":
            day = month_day(kind, ref, ctx)
            return sa.and_(ref.is_not(None), day.in_(sorted(dates.anniversary_strings(ctx.now, n))))
        low, high = {
            "within_last": (ctx.now - span, ctx.now),
            "within_next": (ctx.now, ctx.now + span),
            "more_than_days_ago": (None, ctx.now - span),
        }[op]
        return _range(ref, low, high, strict_high=op == "more_than_days_ago")
    if isinstance(ref, JsonRef):
        text = ref.date_text()
        if op == "anniversary_within":
            return sa.and_(
                text.is_not(None),
                month_day(kind, ref, ctx).in_(sorted(dates.anniversary_strings(ctx.now, n))),
            )
        expr = sa.collate(text, "C") if ctx.postgres else text
        back, ahead = (today - span).isoformat(), (today + span).isoformat()
        low_s, high_s = {
            "within_last": (back, today.isoformat()),
            "within_next": (today.isoformat(), ahead),
            "more_than_days_ago": (None, back),
        }[op]
        return _range(expr, low_s, high_s, strict_high=op == "more_than_days_ago", guard=text)
    if op == "anniversary_within":
        day = month_day(kind, ref, ctx)
        return sa.and_(ref.is_not(None), day.in_(sorted(dates.anniversary_strings(ctx.now, n))))
    low_d, high_d = {
        "within_last": (today - span, today),
        "within_next": (today, today + span),
        "more_than_days_ago": (None, today - span),
    }[op]
    return _range(ref, low_d, high_d, strict_high=op == "more_than_days_ago")


def month_day(kind: str, ref: Any, ctx: Context) -> ColumnElement[Any]:
    """The ``MM-DD`` of a date, a datetime (its UTC day) or a date-like trait, in SQL."""
    if isinstance(ref, JsonRef):
        return sa.func.substr(ref.date_text(), 6, 5)
    if kind == "datetime" and ctx.postgres:
        return sa.func.to_char(sa.func.timezone("UTC", ref), "MM-DD")
    return sa.func.to_char(ref, "MM-DD") if ctx.postgres else sa.func.strftime("%m-%d", ref)


def _range(
    expr: Any, low: Any, high: Any, *, strict_high: bool, guard: Any = None
) -> ColumnElement[bool]:
    parts = [(expr if guard is None else guard).is_not(None)]
    if low is not None:
        parts.append(expr >= low)
    parts.append(expr < high if strict_high else expr <= high)
    return sa.and_(*parts)

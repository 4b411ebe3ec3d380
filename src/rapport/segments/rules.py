"""The rule tree: ``all`` / ``any`` / ``not`` over condition types, parsed from JSON or YAML.

A rule is a JSON object. Branches are ``{"all": [...]}``, ``{"any": [...]}`` and
``{"not": {...}}``; a leaf is recognised by its key (``attribute``, ``computed``,
``event``, ``message``, ``consent``, ``segment``, ``rfm_cell``, ``lifecycle_stage``,
``bucket``, ``loyalty``). Every problem is reported with the path of the bad node, e.g.
``rule.all[2].any[0].value``, and all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from sqlalchemy.sql.elements import ColumnElement

from rapport.errors import InvalidInput, Problem
from rapport.segments.conditions.attributes import AttributeCondition, ComputedCondition
from rapport.segments.conditions.base import Condition, InvalidNode
from rapport.segments.conditions.events import EventCondition
from rapport.segments.conditions.loyalty import LoyaltyCondition
from rapport.segments.conditions.messages import MessageCondition
from rapport.segments.conditions.profile import (
    BucketCondition,
    ConsentCondition,
    LifecycleCondition,
    RfmCellCondition,
    SegmentCondition,
)
from rapport.segments.context import Context, Snapshot
from rapport.segments.crossing import any_of
from rapport.segments.dependencies import Collector
from rapport.store.tables import segments

CONDITIONS: dict[str, type[Condition]] = {
    cls.KEY: cls
    for cls in (
        AttributeCondition,
        ComputedCondition,
        EventCondition,
        MessageCondition,
        ConsentCondition,
        SegmentCondition,
        RfmCellCondition,
        LifecycleCondition,
        BucketCondition,
        LoyaltyCondition,
    )
}
BRANCHES = ("all", "any", "not")
MAX_DEPTH = 32

# Given a segment id: the ids of the segments its rule refers to ((), for a static list),
# or None when there is no such segment. ``segment_lookup(conn)`` builds one from the store.
SegmentLookup = Callable[[int], Iterable[int] | None]


@dataclass(frozen=True)
class All:
    children: tuple[Rule, ...]

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return sa.and_(*(child.sql(ctx) for child in self.children))

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return all(child.test(snap, ctx) for child in self.children)

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        """A customer's answer can change only if some time-dependent leaf's does."""
        return any_of(child.crossing_sql(ctx_from, ctx_to) for child in self.children)

    def collect(self, deps: Collector) -> None:
        for child in self.children:
            child.collect(deps)

    def to_json(self) -> dict[str, Any]:
        return {"all": [child.to_json() for child in self.children]}


@dataclass(frozen=True)
class Any_:
    children: tuple[Rule, ...]

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return sa.or_(*(child.sql(ctx) for child in self.children))

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return any(child.test(snap, ctx) for child in self.children)

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        return any_of(child.crossing_sql(ctx_from, ctx_to) for child in self.children)

    def collect(self, deps: Collector) -> None:
        for child in self.children:
            child.collect(deps)

    def to_json(self) -> dict[str, Any]:
        return {"any": [child.to_json() for child in self.children]}


@dataclass(frozen=True)
class Not:
    child: Rule

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return sa.not_(self.child.sql(ctx))

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        return not self.child.test(snap, ctx)

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        return self.child.crossing_sql(ctx_from, ctx_to)

    def collect(self, deps: Collector) -> None:
        self.child.collect(deps)

    def to_json(self) -> dict[str, Any]:
        return {"not": self.child.to_json()}


Rule = All | Any_ | Not | Condition


def parse_rule(
    data: dict[str, Any] | str,
    where: str = "rule",
    *,
    lookup: SegmentLookup | None = None,
    segment_id: int | None = None,
) -> Rule:
    """A checked rule, or ``InvalidInput`` listing every bad node by its path.

    ``data`` is the rule as a dict, or as JSON or YAML text. With ``lookup``, references
    to other segments are checked to exist and not to lead back to ``segment_id`` (the
    segment this rule belongs to, when it is saved).
    """
    if isinstance(data, str):
        data = load_text(data, where)
    problems: list[Problem] = []
    rule = _parse(data, where, problems, 0)
    if rule is not None and not problems and (lookup is not None or segment_id is not None):
        _check_references(rule, where, lookup, segment_id, problems)
    if problems or rule is None:
        raise InvalidInput(problems or [Problem(where, "not a rule")])
    return rule


def load_text(text: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput([Problem(where, f"neither JSON nor YAML: {exc}")]) from None


def _parse(data: Any, where: str, problems: list[Problem], depth: int) -> Rule | None:
    if depth > MAX_DEPTH:
        problems.append(Problem(where, f"nested deeper than {MAX_DEPTH} levels"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(where, "expected an object (a condition or all/any/not)"))
        return None
    kinds = [key for key in (*BRANCHES, *CONDITIONS) if key in data]
    if len(kinds) != 1:
        known = ", ".join((*BRANCHES, *CONDITIONS))
        reason = (
            f"names more than one condition type ({', '.join(kinds)})"
            if kinds
            else f"unknown condition: expected one of {known}"
        )
        problems.append(Problem(where, reason))
        return None
    kind = kinds[0]
    if kind in BRANCHES:
        extra = sorted(set(data) - {kind})
        if extra:
            problems.append(Problem(f"{where}.{extra[0]}", "unknown field"))
            return None
        return _parse_branch(kind, data[kind], f"{where}.{kind}", problems, depth)
    try:
        return CONDITIONS[kind].parse(data, where)
    except InvalidNode as exc:
        problems.extend(exc.problems)
        return None


def _parse_branch(
    kind: str, body: Any, where: str, problems: list[Problem], depth: int
) -> Rule | None:
    if kind == "not":
        child = _parse(body, where, problems, depth + 1)
        return None if child is None else Not(child)
    if not isinstance(body, list) or not body:
        problems.append(Problem(where, f"{kind} needs a non-empty list of conditions"))
        return None
    children = [_parse(item, f"{where}[{i}]", problems, depth + 1) for i, item in enumerate(body)]
    if any(child is None for child in children):
        return None
    parsed = tuple(child for child in children if child is not None)
    return All(parsed) if kind == "all" else Any_(parsed)


def _references(rule: Rule, where: str) -> Iterable[tuple[int, str]]:
    """Each ``segment`` leaf with its path."""
    if isinstance(rule, All | Any_):
        key = "all" if isinstance(rule, All) else "any"
        for i, child in enumerate(rule.children):
            yield from _references(child, f"{where}.{key}[{i}]")
    elif isinstance(rule, Not):
        yield from _references(rule.child, f"{where}.not")
    elif isinstance(rule, SegmentCondition):
        yield rule.segment, where


def _check_references(
    rule: Rule,
    where: str,
    lookup: SegmentLookup | None,
    segment_id: int | None,
    problems: list[Problem],
) -> None:
    for ref, path in _references(rule, where):
        at = f"{path}.segment"
        if ref == segment_id:
            problems.append(Problem(at, "a segment cannot contain itself"))
            continue
        if lookup is None:
            continue
        found = lookup(ref)
        if found is None:
            problems.append(Problem(at, f"no segment {ref}"))
            continue
        chain = _path_to(segment_id, ref, lookup) if segment_id is not None else None
        if chain is not None:
            route = " → ".join(str(s) for s in (segment_id, *chain))
            problems.append(Problem(at, f"cycle: {route}"))


def _path_to(target: int, start: int, lookup: SegmentLookup) -> list[int] | None:
    """The chain of references from ``start`` that reaches ``target``, if any."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        current, chain = stack.pop()
        if current == target:
            return chain
        if current in seen:
            continue
        seen.add(current)
        for nxt in lookup(current) or ():
            stack.append((nxt, [*chain, nxt]))
    return None


def segment_lookup(conn: sa.Connection) -> SegmentLookup:
    """A ``SegmentLookup`` over the stored segments (their saved rules)."""
    from rapport.segments.dependencies import dependencies

    def find(segment_id: int) -> Iterable[int] | None:
        row = conn.execute(
            sa.select(segments.c.kind, segments.c.rules).where(segments.c.id == segment_id)
        ).first()
        if row is None:
            return None
        if row.kind != "rules" or not row.rules:
            return ()
        try:
            return dependencies(parse_rule(row.rules)).segments
        except InvalidInput:
            return ()

    return find

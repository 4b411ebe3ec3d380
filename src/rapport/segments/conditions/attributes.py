"""Attribute conditions (standard columns and ``traits.<name>``) and computed fields."""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments import crossing, ops
from rapport.segments.conditions.base import Condition
from rapport.segments.context import Context, Snapshot
from rapport.segments.dependencies import Collector
from rapport.segments.fields import ATTRIBUTES, COMPUTED
from rapport.segments.jsondoc import NAME, JsonRef, lookup
from rapport.segments.problems import Bad
from rapport.store.tables import customers


class AttributeCondition(Condition):
    """``{"attribute": "city", "op": "eq", "value": "Kazan"}``; traits as ``traits.<name>``."""

    KEY = "attribute"
    attribute: str
    op: str
    value: Any = None
    _kind: str = PrivateAttr("string")
    _path: tuple[str, ...] = PrivateAttr(())
    _value: Any = PrivateAttr(None)

    def check(self, where: str) -> None:
        name = self.attribute
        if name.startswith("traits."):
            trait = name.removeprefix("traits.")
            if not NAME.fullmatch(trait):
                raise Bad(f"{where}.attribute", f"bad trait name {trait!r}")
            self._kind, self._path = "json", tuple(trait.split("."))
        elif name in ATTRIBUTES:
            self._kind = ATTRIBUTES[name]
        else:
            hint = ' (a computed field: use "computed")' if name in COMPUTED else ""
            raise Bad(
                f"{where}.attribute",
                f"unknown attribute {name!r}{hint}; use one of "
                f"{', '.join(ATTRIBUTES)} or traits.<name>",
            )
        self._value = ops.check(self._kind, name, self.op, self.value, where)

    def _ref(self, ctx: Context) -> Any:
        if self._path:
            return JsonRef(customers.c.traits, self._path, ctx)
        return customers.c[self.attribute]

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        return ops.sql(self._kind, self.op, self._value, self._ref(ctx), ctx)

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        return crossing.field(self._kind, self.op, self._value, self._ref(ctx_to), ctx_from, ctx_to)

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        if self._path:
            x = lookup(snap.customer["traits"], self._path)
        else:
            x = snap.customer[self.attribute]
        return ops.test(self._kind, self.op, self._value, x, ctx)

    def collect(self, deps: Collector) -> None:
        if self._path:
            deps.customer_fields.add("traits")
            deps.traits.add(".".join(self._path))
        else:
            deps.customer_fields.add(self.attribute)
        if self.op in ops.RELATIVE:
            deps.time_dependent = True

    def to_json(self) -> dict[str, Any]:
        out = {"attribute": self.attribute, "op": self.op}
        if self._value is not None:
            out["value"] = ops.dump(self._value)
        return out


class ComputedCondition(Condition):
    """``{"computed": "revenue", "op": "ge", "value": 1000}`` over the computed registry."""

    KEY = "computed"
    computed: str
    op: str
    value: Any = None
    _value: Any = PrivateAttr(None)

    def check(self, where: str) -> None:
        field = COMPUTED.get(self.computed)
        if field is None:
            raise Bad(
                f"{where}.computed",
                f"unknown computed field {self.computed!r}; use one of {', '.join(COMPUTED)}",
            )
        self._value = ops.check(field.kind, self.computed, self.op, self.value, where)

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        field = COMPUTED[self.computed]
        return ops.sql(field.kind, self.op, self._value, field.sql(), ctx)

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        field = COMPUTED[self.computed]
        return crossing.field(field.kind, self.op, self._value, field.sql(), ctx_from, ctx_to)

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        field = COMPUTED[self.computed]
        return ops.test(field.kind, self.op, self._value, field.value(snap.customer), ctx)

    def collect(self, deps: Collector) -> None:
        field = COMPUTED[self.computed]
        deps.customer_fields.update(field.columns)
        deps.every_event |= field.every_event
        if field.kind == "days" or self.op in ops.RELATIVE:
            deps.time_dependent = True

    def to_json(self) -> dict[str, Any]:
        out = {"computed": self.computed, "op": self.op}
        if self._value is not None:
            out["value"] = ops.dump(self._value)
        return out

"""The contract every condition type (and every tree node) keeps."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments.context import Context, Snapshot
from rapport.segments.crossing import NEVER
from rapport.segments.dependencies import Collector
from rapport.segments.problems import Bad, pydantic_problems


class InvalidNode(Exception):
    def __init__(self, problems: list[Any]) -> None:
        super().__init__(problems)
        self.problems = problems


class Condition(BaseModel):
    """A leaf of the rule tree, recognised by its ``KEY`` field (``attribute``, ``event``…).

    ``check`` validates what Pydantic cannot (does the operator fit the field, is the value
    of the field's type) and keeps the normalised value; ``sql`` and ``test`` are the two
    evaluators, written next to each other so they keep the same meaning.
    """

    model_config = ConfigDict(extra="forbid")
    KEY: ClassVar[str]

    @classmethod
    def parse(cls, data: dict[str, Any], where: str) -> Self:
        try:
            node = cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidNode(pydantic_problems(exc, where)) from None
        try:
            node.check(where)
        except Bad as exc:
            raise InvalidNode([exc.problem]) from None
        return node

    def check(self, where: str) -> None:
        """Semantic checks; raise ``Bad`` with the path of the bad field."""

    def sql(self, ctx: Context) -> ColumnElement[bool]:
        raise NotImplementedError

    def test(self, snap: Snapshot, ctx: Context) -> bool:
        raise NotImplementedError

    def collect(self, deps: Collector) -> None:
        raise NotImplementedError

    def crossing_sql(self, ctx_from: Context, ctx_to: Context) -> ColumnElement[bool] | None:
        """The customers whose answer may differ between the two moments (``crossing``).

        A condition that reads no clock cannot change with time alone: nobody. A
        time-dependent type that does not say answers None, "unknown", and the sweep then
        evaluates its segment in full rather than risk missing someone.
        """
        deps = Collector()
        self.collect(deps)
        return None if deps.time_dependent else NEVER

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

"""The contract every condition type (and every tree node) keeps."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.sql.elements import ColumnElement

from rapport.segments.context import Context, Snapshot
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

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

"""A segment rule as a tree the builder can show, and the rule JSON back.

A ``Node`` is a group (``all``, ``any``, ``not``) or a condition whose inputs are held as
the form holds them (text, lists for multiple choices). ``rule_of`` turns a tree into the
rule JSON that ``segments.rules.parse_rule`` checks; ``tree_of`` turns any rule JSON into
a tree. A condition the visual inputs cannot hold exactly, or in a form that means the
same (a ``last`` clause, a list item with a comma, an id given as a number …), becomes a
``json`` node: the JSON/YAML text of that part. So the two views always round-trip.

Values are read the way the rule means them, with nothing checked here: an input that
does not fit (``abc`` for a number) goes into the rule as typed, and the rule parser
reports it with the node's path, the same message the API gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from rapport.errors import InvalidInput, Problem
from rapport.segments import ops
from rapport.segments.fields import ATTRIBUTES, COMPUTED
from rapport.segments.rules import load_text, parse_rule

GROUPS = ("all", "any", "not")
LEAVES = (
    "attribute",
    "computed",
    "event",
    "message",
    "consent",
    "segment",
    "rfm_cell",
    "lifecycle_stage",
    "bucket",
    "json",
)
EVENT_MODES = ("at_least", "at_most", "exactly", "not_for_days")
MESSAGE_IDS = ("campaign_id", "scenario_id", "template_id", "channel")
FILTER_OPS = tuple(op for op in ops.OPERATORS["json"] if op not in ops.RELATIVE)
MULTI_INPUTS = ("cells", "stages")
MAX_NODES = 300


@dataclass
class Node:
    """One node of a draft: a group (``all``/``any``/``not``) or a condition.

    ``inputs`` are the condition's form inputs as text (lists for multiple choices);
    ``filters`` an event's property filters. ``key`` and ``path`` (the rule JSON path,
    as problems name it) are set by ``number``.
    """

    type: str
    children: list[Node] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    filters: list[dict[str, str]] = field(default_factory=list)
    key: str = ""
    path: str = ""

    @property
    def group(self) -> bool:
        return self.type in GROUPS

    def get(self, name: str) -> Any:
        return self.inputs.get(name, [] if name in MULTI_INPUTS else "")

    @property
    def field_choice(self) -> str:
        """The value of the condition's field select (``attribute:city``, ``event``…)."""
        if self.type == "attribute":
            name = str(self.get("name"))
            return "attribute:traits" if name.startswith("traits.") else f"attribute:{name}"
        if self.type == "computed":
            return f"computed:{self.get('name')}"
        return self.type

    @property
    def kind(self) -> str:
        """What the attribute or computed field holds (``ops.OPERATORS``' keys)."""
        name = str(self.get("name"))
        if self.type == "attribute":
            return "json" if name.startswith("traits.") else ATTRIBUTES.get(name, "string")
        if self.type == "computed" and name in COMPUTED:
            return COMPUTED[name].kind
        return "json"

    @property
    def operators(self) -> tuple[str, ...]:
        return ops.OPERATORS[self.kind]

    def walk(self) -> Iterable[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


def blank_condition() -> Node:
    return Node("attribute", inputs={"name": "city", "op": "eq", "value": ""})


def new_rule_tree() -> Node:
    return number(Node("all", [blank_condition()]))


def number(node: Node, key: str = "r", path: str = "rules") -> Node:
    node.key, node.path = key, path
    for i, child in enumerate(node.children):
        child_path = f"{path}.not" if node.type == "not" else f"{path}.{node.type}[{i}]"
        number(child, f"{key}.{i}", child_path)
    return node


# ---------------------------------------------------------------- tree -> rule JSON


def rule_of(root: Node) -> tuple[Any, list[Problem]]:
    """The rule JSON of a draft, and the problems only the form can have (a JSON/YAML
    part that does not load); everything else is for ``parse_rule`` to judge."""
    problems: list[Problem] = []
    return _rule(root, problems), problems


def _rule(node: Node, problems: list[Problem]) -> Any:
    if node.type == "not":
        return {"not": _rule(node.children[0], problems) if node.children else None}
    if node.group:
        return {node.type: [_rule(child, problems) for child in node.children]}
    if node.type == "json":
        try:
            return load_text(str(node.get("text")), node.path)
        except InvalidInput as exc:
            problems.extend(exc.problems)
            return {}
    return _LEAF_RULES[node.type](node)


def _put(out: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    if value is not None:
        out[name] = value
    return out


def _field_rule(node: Node, key: str) -> dict[str, Any]:
    op = str(node.get("op"))
    out = {key: node.get("name"), "op": op}
    return _put(out, "value", read_value(node.kind, op, node.get("value"), node.get("value2")))


def _event_rule(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"event": node.get("event")}
    if node.filters:
        out["where"] = [
            _put(
                {"property": f["property"], "op": f["op"]},
                "value",
                read_value("json", f["op"], f["value"], ""),
            )
            for f in node.filters
        ]
    mode = node.get("mode") or "at_least"
    if mode == "not_for_days":
        return _put(out, "not_for_days", _whole(node.get("within")))
    count = _whole(node.get("count"))
    if count is not None:
        out["times"] = {mode: count}
    return _put(out, "within_last", _whole(node.get("within")))


def _message_rule(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"message": node.get("message")}
    for name in MESSAGE_IDS:
        _put(out, name, node.get(name) or None)
    return _put(out, "within_last", _whole(node.get("within")))


def _consent_rule(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"consent": node.get("consent")}
    status = node.get("status") or "subscribed"
    return out if status == "subscribed" else out | {"status": status}


def _bucket_rule(node: Node) -> dict[str, Any]:
    out = {"bucket": [_whole(node.get("low")), _whole(node.get("high"))]}
    return _put(out, "salt", node.get("salt") or None)


_LEAF_RULES = {
    "attribute": lambda n: _field_rule(n, "attribute"),
    "computed": lambda n: _field_rule(n, "computed"),
    "event": _event_rule,
    "message": _message_rule,
    "consent": _consent_rule,
    "segment": lambda n: {"segment": _whole(n.get("segment"))},
    "rfm_cell": lambda n: {"rfm_cell": list(n.get("cells"))},
    "lifecycle_stage": lambda n: {"lifecycle_stage": list(n.get("stages"))},
    "bucket": _bucket_rule,
}


def _whole(text: Any) -> Any:
    """A whole number typed in a form; other text goes on as typed (the parser says why)."""
    text = str(text).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def value_input(kind: str, op: str) -> str:
    """Which inputs a value needs: none, days, list, pair or one."""
    if op in ops.NO_VALUE:
        return "none"
    if op in ops.RELATIVE:
        return "days"
    if op in ("in", "not_in"):
        return "list"
    return "pair" if op == "between" else "one"


def read_value(kind: str, op: str, text: Any, text2: Any) -> Any:
    """The rule value of the value input(s); None when nothing was typed."""
    shape = value_input(kind, op)
    text, text2 = str(text), str(text2)
    if shape == "none":
        return None
    if shape == "days":
        return _whole(text)
    if shape == "list":
        items = [_scalar(kind, t.strip()) for t in text.split(",") if t.strip()]
        return items or None
    if shape == "pair":
        if not text.strip() and not text2.strip():
            return None
        return [_scalar(kind, text.strip()), _scalar(kind, text2.strip())]
    return _scalar(kind, text) if text.strip() else None


def _scalar(kind: str, text: str) -> Any:
    if kind == "number":
        for read in (int, float):
            try:
                return read(text)
            except ValueError:
                pass
        return text
    if kind == "days":
        return _whole(text)
    if kind == "json":  # a number, true/false or a "quoted" string; else the text itself
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        return value if isinstance(value, str | int | float | bool) else text
    return text


# ---------------------------------------------------------------- rule JSON -> tree


def tree_of(rules: Any) -> Node:
    """The draft that shows ``rules``; parts the inputs cannot hold exactly become JSON."""
    return number(_tree(rules))


def _tree(data: Any) -> Node:
    if isinstance(data, dict) and len(data) == 1:
        ((key, body),) = data.items()
        if key in ("all", "any") and isinstance(body, list):
            return Node(key, [_tree(item) for item in body])
        if key == "not" and isinstance(body, dict):
            return Node("not", [_tree(body)])
    leaf = _leaf(data) if isinstance(data, dict) else None
    if leaf is not None and _equivalent(_rule(number(leaf), []), data):
        return leaf
    return Node("json", inputs={"text": json_text(data)})


def json_text(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


def _equivalent(shown: Any, data: Any) -> bool:
    """The inputs hold ``data`` exactly, or a rule that means the same (a single RFM cell
    written without a list, a default spelled out), as the parser reads both."""
    if _same(shown, data):
        return True
    try:
        return _same(parse_rule(shown).to_json(), parse_rule(data).to_json())
    except InvalidInput:
        return False


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON, types included (1, 1.0 and true are three different values)."""
    try:
        option = orjson.OPT_SORT_KEYS
        return bool(orjson.dumps(a, option=option) == orjson.dumps(b, option=option))
    except TypeError:
        return False


def _leaf(data: dict[str, Any]) -> Node | None:
    for kind in LEAVES[:-1]:
        if kind in data:
            return _LEAF_TREES[kind](data)
    return None


def _field_tree(data: dict[str, Any], key: str) -> Node | None:
    name = data.get(key)
    if not isinstance(name, str):
        return None
    node = Node(key, inputs={"name": name, "op": data.get("op")})
    if name.startswith("traits."):
        node.inputs["trait"] = name.removeprefix("traits.")
    text, text2 = show_value(node.kind, str(data.get("op")), data.get("value"))
    node.inputs.update(value=text, value2=text2)
    return node


def show_value(kind: str, op: str, value: Any) -> tuple[str, str]:
    """The text of the value input(s) for a rule value (checked by a round trip after)."""
    if value is None:
        return "", ""
    shape = value_input(kind, op)
    if shape == "list" and isinstance(value, list):
        return ", ".join(_text(kind, v) for v in value), ""
    if shape == "pair" and isinstance(value, list) and len(value) == 2:
        return _text(kind, value[0]), _text(kind, value[1])
    return _text(kind, value), ""


def _text(kind: str, value: Any) -> str:
    if kind == "json" and (not isinstance(value, str) or _scalar(kind, value) != value):
        return orjson.dumps(value).decode()
    return str(value)


def _event_tree(data: dict[str, Any]) -> Node:
    inputs: dict[str, Any] = {"event": data.get("event"), "mode": "at_least", "count": ""}
    times = data.get("times")
    if isinstance(times, dict) and len(times) == 1:
        ((mode, count),) = times.items()
        inputs.update(mode=mode, count=str(count))
    if "not_for_days" in data:
        inputs.update(mode="not_for_days", within=str(data["not_for_days"]))
    elif "within_last" in data:
        inputs["within"] = str(data["within_last"])
    filters = []
    for item in data.get("where") or []:
        if not isinstance(item, dict):
            continue
        text, _ = show_value("json", str(item.get("op")), item.get("value"))
        # Anything but text here fails the round trip check, and the node is shown as JSON.
        prop, op = (str(item.get(k) or "") for k in ("property", "op"))
        filters.append({"property": prop, "op": op, "value": text})
    return Node("event", inputs=inputs, filters=filters)


def _message_tree(data: dict[str, Any]) -> Node:
    inputs = {name: str(data.get(name) or "") for name in MESSAGE_IDS}
    inputs["message"] = str(data.get("message") or "")
    inputs["within"] = "" if data.get("within_last") is None else str(data["within_last"])
    return Node("message", inputs=inputs)


def _choices(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _bucket_tree(data: dict[str, Any]) -> Node:
    bounds = data.get("bucket")
    low, high = bounds if isinstance(bounds, list) and len(bounds) == 2 else ("", "")
    return Node("bucket", inputs={"low": str(low), "high": str(high), "salt": data.get("salt", "")})


_LEAF_TREES = {
    "attribute": lambda d: _field_tree(d, "attribute"),
    "computed": lambda d: _field_tree(d, "computed"),
    "event": _event_tree,
    "message": _message_tree,
    "consent": lambda d: Node(
        "consent", inputs={"consent": d.get("consent"), "status": d.get("status", "subscribed")}
    ),
    "segment": lambda d: Node("segment", inputs={"segment": str(d.get("segment"))}),
    "rfm_cell": lambda d: Node("rfm_cell", inputs={"cells": _choices(d.get("rfm_cell"))}),
    "lifecycle_stage": lambda d: Node(
        "lifecycle_stage", inputs={"stages": _choices(d.get("lifecycle_stage"))}
    ),
    "bucket": _bucket_tree,
}

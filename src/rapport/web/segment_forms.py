"""The segment builder's form: the posted fields as a draft tree, the editor's buttons,
and each problem placed beside the node it is about.

The visual editor is a form whose fields are named ``<key>:<input>``, where the key is the
node's position in the tree (``r`` the root, ``r.0`` its first child, ``r.0.2`` …):
groups carry ``<key>:type`` (``all``, ``any``, ``not``), conditions ``<key>:field`` (what
the condition reads, e.g. ``attribute:city``) and their inputs; an event's property
filters are ``<key>:f<i>.property``/``.op``/``.value``. The text view posts
``rules_text`` (JSON or YAML) instead; ``mode`` says which view is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rapport.errors import InvalidInput, Problem
from rapport.segments.rules import load_text
from rapport.web.segment_tree import (
    GROUPS,
    LEAVES,
    MAX_NODES,
    MULTI_INPUTS,
    Node,
    blank_condition,
    json_text,
    new_rule_tree,
    number,
    rule_of,
    tree_of,
)

# ---------------------------------------------------------------- the form


def tree_from_form(fields: Iterable[tuple[str, Any]]) -> Node:
    """The draft the visual editor posted (``InvalidInput`` if its shape is broken)."""
    per_key: dict[str, dict[str, Any]] = {}
    for name, raw in fields:
        key, sep, attr = name.partition(":")
        if not sep or not key.startswith("r") or not isinstance(raw, str):
            continue
        inputs = per_key.setdefault(key, {})
        if attr in MULTI_INPUTS:
            inputs.setdefault(attr, []).append(raw)
        else:
            inputs[attr] = raw
    if "r" not in per_key or len(per_key) > MAX_NODES:
        raise InvalidInput([Problem("rules", "the form holds no rule tree")])
    nodes = {key: _node_from_inputs(inputs) for key, inputs in per_key.items()}
    for key in sorted(nodes, key=_position):
        if key == "r":
            continue
        parent = nodes.get(key.rpartition(".")[0])
        if parent is None or not parent.group:
            raise InvalidInput([Problem("rules", f"form field {key} has no group above it")])
        parent.children.append(nodes[key])
    return number(nodes["r"])


def _position(key: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in key.split(".")[1:])
    except ValueError:
        raise InvalidInput([Problem("rules", f"bad form field {key!r}")]) from None


def _node_from_inputs(inputs: dict[str, Any]) -> Node:
    kind = inputs.get("type", "")
    if kind in GROUPS:
        return Node(kind)
    choice = str(inputs.get("field", ""))
    node_type, _, name = choice.partition(":")
    if node_type not in LEAVES:
        node_type, name = "json", ""
    kept = {k: v for k, v in inputs.items() if k not in ("type", "field") and "." not in k}
    if node_type == "attribute":
        kept["name"] = f"traits.{kept.get('trait', '')}" if name == "traits" else name
    elif node_type == "computed":
        kept["name"] = name
    node = Node(node_type, inputs=kept)
    if node_type in ("attribute", "computed") and node.get("op") not in node.operators:
        node.inputs["op"] = node.operators[0]
    node.filters = _filters(inputs)
    return node


def _filters(inputs: dict[str, Any]) -> list[dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for name, value in inputs.items():
        head, _, attr = name.partition(".")
        if head.startswith("f") and head[1:].isdigit() and attr in ("property", "op", "value"):
            found.setdefault(int(head[1:]), {"property": "", "op": "eq", "value": ""})[attr] = value
    return [found[i] for i in sorted(found)]


# ---------------------------------------------------------------- editing the tree


def apply(root: Node, action: str) -> Node:
    """One button of the editor: ``add:<key>:<what>``, ``remove:<key>``,
    ``wrap:<key>:<group>``, ``addfilter:<key>``, ``dropfilter:<key>:<i>``."""
    verb, _, rest = action.partition(":")
    key, _, arg = rest.partition(":")
    nodes = {n.key: n for n in root.walk()}
    node = nodes.get(key)
    if node is None:
        return root
    if verb == "add" and node.group and not (node.type == "not" and node.children):
        node.children.append(blank_condition() if arg == "cond" else _new_group(arg))
    elif verb == "remove":
        if node is root:
            return new_rule_tree()
        parent = nodes[key.rpartition(".")[0]]
        parent.children = [c for c in parent.children if c is not node]
    elif verb == "wrap" and arg in GROUPS:
        wrapped = Node(arg, [Node(node.type, node.children, node.inputs, node.filters)])
        node.type, node.children, node.inputs, node.filters = arg, wrapped.children, {}, []
    elif verb == "addfilter" and node.type == "event":
        node.filters.append({"property": "", "op": "eq", "value": ""})
    elif verb == "dropfilter" and node.type == "event" and arg.isdigit():
        del node.filters[int(arg) : int(arg) + 1]
    return number(root)


def _new_group(kind: str) -> Node:
    return Node(kind if kind in GROUPS else "all", [blank_condition()])


# ---------------------------------------------------------------- the whole form


@dataclass
class Draft:
    """What the builder form holds: the rule, in the visual tree or as JSON/YAML text
    (``mode``), with the segment's name and description."""

    mode: str
    root: Node
    text: str = ""
    name: str = ""
    description: str = ""
    problems: list[Problem] = field(default_factory=list)

    def rules(self) -> tuple[Any, list[Problem]]:
        """The rule JSON and the problems found reading the form itself."""
        if self.problems:
            return None, self.problems
        if self.mode == "text":
            try:
                return load_text(self.text, "rules"), []
            except InvalidInput as exc:
                return None, exc.problems
        return rule_of(self.root)


def draft_of(rules: Any, name: str = "", description: str = "") -> Draft:
    return Draft("visual", tree_of(rules), json_text(rules), name, description)


def draft_from_form(items: list[tuple[str, Any]]) -> Draft:
    """The posted builder, with the button pressed (``do``) applied: an edit of the tree,
    or a switch between the visual and the text view."""
    single = {k: v for k, v in items if isinstance(v, str)}
    action = single.get("do", "")
    name, description = single.get("name", ""), single.get("description", "")
    if single.get("mode") == "text":
        text = single.get("rules_text", "")
        if action != "mode:visual":
            return Draft("text", new_rule_tree(), text, name, description)
        try:
            return draft_of(load_text(text, "rules"), name, description)
        except InvalidInput as exc:
            return Draft("text", new_rule_tree(), text, name, description, exc.problems)
    try:
        root = apply(tree_from_form(items), action)
    except InvalidInput as exc:
        return Draft("visual", new_rule_tree(), "", name, description, exc.problems)
    draft = Draft("visual", root, "", name, description)
    if action == "mode:text":
        rules, problems = rule_of(root)
        if not problems:
            draft.mode, draft.text = "text", json_text(rules)
        draft.problems = problems
    return draft


# ---------------------------------------------------------------- problems beside nodes


def place(
    problems: list[Problem], root: Node | None
) -> tuple[dict[str, list[Problem]], list[Problem]]:
    """Each problem with the node it is about (the deepest whose path starts its path),
    and those about no node (shown above the tree)."""
    by_key: dict[str, list[Problem]] = {}
    elsewhere: list[Problem] = []
    nodes = sorted(root.walk(), key=lambda n: -len(n.path)) if root is not None else []
    for problem in problems:
        home = next((n for n in nodes if _under(problem.where, n.path)), None)
        if home is None:
            elsewhere.append(problem)
        else:
            by_key.setdefault(home.key, []).append(problem)
    return by_key, elsewhere


def _under(where: str, path: str) -> bool:
    return where == path or where.startswith((path + ".", path + "["))

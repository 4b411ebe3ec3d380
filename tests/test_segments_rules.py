"""Every kind of bad rule is refused with the path of the bad node and a clear reason."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from rapport.errors import InvalidInput
from rapport.segments.dependencies import dependencies
from rapport.segments.rules import parse_rule, segment_lookup
from rapport.store.engine import writing
from tests.test_segments_store import add_segment


def problems(rule: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as info:
        parse_rule(rule, **kwargs)
    return [(p.where, p.reason) for p in info.value.problems]


def one(rule: Any, **kwargs: Any) -> tuple[str, str]:
    found = problems(rule, **kwargs)
    assert len(found) == 1, found
    return found[0]


def test_path_of_a_deep_bad_value() -> None:
    rule = {
        "all": [
            {"attribute": "city", "op": "eq", "value": "Kazan"},
            {"consent": "email"},
            {"any": [{"attribute": "birthday", "op": "gt", "value": 5}]},
        ]
    }
    assert one(rule) == ("rule.all[2].any[0].value", "birthday holds a date; got 5")


def test_every_problem_is_reported_at_once() -> None:
    rule = {"any": [{"attribute": "nope", "op": "eq", "value": 1}, {"consent": "fax"}]}
    assert [w for w, _ in problems(rule)] == ["rule.any[0].attribute", "rule.any[1].consent"]


@pytest.mark.parametrize(
    ("rule", "where", "reason"),
    [
        (
            {"attribute": "shoe_size", "op": "eq", "value": 1},
            "rule.attribute",
            "unknown attribute 'shoe_size'",
        ),
        (
            {"attribute": "revenue", "op": "eq", "value": 1},
            "rule.attribute",
            'a computed field: use "computed"',
        ),
        ({"attribute": 'traits.a"b', "op": "eq", "value": 1}, "rule.attribute", "bad trait name"),
        ({"attribute": "city", "op": "like", "value": "K"}, "rule.op", "unknown operator 'like'"),
        (
            {"attribute": "city", "op": "is_true"},
            "rule.op",
            "is_true does not apply to city, which holds text",
        ),
        ({"attribute": "city", "op": "eq", "value": 5}, "rule.value", "city holds text; got 5"),
        ({"attribute": "city", "op": "eq"}, "rule.value", "eq needs a value"),
        ({"attribute": "city", "op": "exists", "value": 1}, "rule.value", "exists takes no value"),
        ({"attribute": "city", "op": "in", "value": []}, "rule.value", "in needs a non-empty list"),
        (
            {"attribute": "city", "op": "in", "value": ["a", 1]},
            "rule.value[1]",
            "city holds text; got 1",
        ),
        (
            {"attribute": "traits.x", "op": "in", "value": ["a", 1]},
            "rule.value",
            "in needs values of one type",
        ),
        (
            {"attribute": "traits.x", "op": "lt", "value": True},
            "rule.value",
            "cannot compare true/false",
        ),
        (
            {"attribute": "traits.x", "op": "eq", "value": {"a": 1}},
            "rule.value",
            "expected a string, a number or true/false",
        ),
        (
            {"attribute": "city", "op": "between", "value": ["z", "a"]},
            "rule.value",
            "between needs low <= high",
        ),
        (
            {"attribute": "city", "op": "between", "value": ["a"]},
            "rule.value",
            "between needs a list of two values",
        ),
        (
            {"attribute": "city", "op": "contains", "value": ""},
            "rule.value",
            "contains needs a non-empty string",
        ),
        (
            {"attribute": "birthday", "op": "eq", "value": "31/05/1990"},
            "rule.value",
            "expected an ISO date",
        ),
        (
            {"attribute": "created_at", "op": "ge", "value": "yesterday"},
            "rule.value",
            "expected an ISO date and time",
        ),
        (
            {"attribute": "birthday", "op": "within_last", "value": -1},
            "rule.value",
            "needs a whole number of days",
        ),
        (
            {"attribute": "birthday", "op": "anniversary_within", "value": 1.5},
            "rule.value",
            "needs a whole number of days",
        ),
        (
            {"computed": "clv", "op": "gt", "value": 1},
            "rule.computed",
            "unknown computed field 'clv'",
        ),
        (
            {"computed": "revenue", "op": "gt", "value": "lots"},
            "rule.value",
            "revenue holds a number",
        ),
        (
            {"computed": "days_since_last_order", "op": "gt", "value": 1.5},
            "rule.value",
            "whole number of days",
        ),
        ({"event": ""}, "rule.event", "at least 1 character"),
        (
            {"event": "X", "times": {"at_least": 1, "at_most": 3}},
            "rule.times",
            "give exactly one of",
        ),
        (
            {"event": "X", "times": {"at_least": -1}},
            "rule.times.at_least",
            "greater than or equal to 0",
        ),
        ({"event": "X", "within_last": "week"}, "rule.within_last", "valid integer"),
        (
            {"event": "X", "not_for_days": 3, "within_last": 3},
            "rule.not_for_days",
            "not_for_days goes alone",
        ),
        (
            {"event": "X", "last": {"before": "2026-01-01"}, "times": {"at_least": 1}},
            "rule.last",
            "last goes without",
        ),
        ({"event": "X", "last": {}}, "rule.last", "give exactly one of"),
        ({"event": "X", "colour": "red"}, "rule.colour", "unknown field"),
        (
            {"event": "X", "where": [{"property": "p", "op": "zz", "value": 1}]},
            "rule.where[0].op",
            "unknown operator",
        ),
        (
            {"event": "X", "where": [{"property": "p", "op": "within_last", "value": 1}]},
            "rule.where[0].op",
            "does not apply to event properties",
        ),
        (
            {"event": "X", "where": [{"property": "p", "op": "eq"}]},
            "rule.where[0].value",
            "eq needs a value",
        ),
        ({"message": "read"}, "rule.message", "Input should be"),
        ({"consent": "fax"}, "rule.consent", "unknown channel 'fax'"),
        ({"consent": "email", "status": "maybe"}, "rule.status", "Input should be"),
        ({"segment": 0}, "rule.segment", "greater than 0"),
        ({"rfm_cell": ["Champions"]}, "rule.rfm_cell[0]", "unknown value 'Champions'"),
        ({"lifecycle_stage": []}, "rule.lifecycle_stage", "at least 1 item"),
        ({"lifecycle_stage": "sleeping"}, "rule.lifecycle_stage[0]", "unknown value 'sleeping'"),
        ({"bucket": [50, 10]}, "rule.bucket", "0 <= low <= high <= 99"),
        ({"bucket": [0, 100]}, "rule.bucket", "0 <= low <= high <= 99"),
        ({"all": []}, "rule.all", "all needs a non-empty list"),
        ({"any": {"consent": "email"}}, "rule.any", "any needs a non-empty list"),
        ({"not": [{"consent": "email"}]}, "rule.not", "expected an object"),
        ({"all": [{"consent": "email"}], "extra": 1}, "rule.extra", "unknown field"),
        ({"colour": "red"}, "rule", "unknown condition: expected one of all, any, not, attribute"),
        (
            {"consent": "email", "segment": 3},
            "rule",
            "names more than one condition type (consent, segment)",
        ),
        ("[1, 2", "rule", "neither JSON nor YAML"),
        ("just text", "rule", "expected an object"),
    ],
)
def test_bad_rules(rule: Any, where: str, reason: str) -> None:
    got_where, got_reason = one(rule)
    assert got_where == where
    assert reason in got_reason, got_reason


def test_too_deep() -> None:
    rule: dict[str, Any] = {"consent": "email"}
    for _ in range(40):
        rule = {"not": rule}
    where, reason = one(rule)
    assert reason == "nested deeper than 32 levels"
    assert where.startswith("rule.not.not")


def test_custom_root_path() -> None:
    assert one({"consent": "fax"}, where="body.rules")[0] == "body.rules.consent"


def test_segment_references_and_cycles(engine: sa.Engine) -> None:
    with writing(engine) as conn:
        a = add_segment(conn, "a", {"consent": "email"})
        b = add_segment(conn, "b", {"segment": a})
        static = add_segment(conn, "static")
        # a is edited to refer to b, which refers back to a: refused.
        lookup = segment_lookup(conn)
        where, reason = one(
            {"all": [{"consent": "sms"}, {"segment": b}]}, lookup=lookup, segment_id=a
        )
        assert (where, reason) == ("rule.all[1].segment", f"cycle: {a} → {b} → {a}")
        assert one({"segment": a}, lookup=lookup, segment_id=a) == (
            "rule.segment",
            "a segment cannot contain itself",
        )
        assert one({"not": {"segment": 999}}, lookup=lookup) == (
            "rule.not.segment",
            "no segment 999",
        )
        # No cycle: a new segment over b and a static list; an unsaved rule (preview).
        parse_rule(
            {"all": [{"segment": b}, {"segment": static}]}, lookup=lookup, segment_id=static + 1
        )
        parse_rule({"segment": b}, lookup=lookup)


def test_the_real_time_loader_reads_only_the_windows_a_rule_can_see() -> None:
    """Per event name, the widest window any condition reads, separately for the per-day
    counters and the log; a condition on the latest event however old reads everything."""
    rule = parse_rule(
        {
            "all": [
                {"event": "Product Viewed", "times": {"at_least": 3}, "within_last": 30},
                {"event": "Product Viewed", "times": {"at_least": 1}, "within_last": 7},
                {"event": "Order Completed", "not_for_days": 90},
                {"event": "Signed Up", "last": {"before": "2026-01-01"}},
                {
                    "event": "Product Added",
                    "where": [{"property": "price", "op": "gt", "value": 100}],
                    "within_last": 14,
                },
            ]
        }
    )
    deps = dependencies(rule)
    assert deps.counter_windows == {"Product Viewed": 30, "Order Completed": 90, "Signed Up": None}
    assert deps.logged_windows == {"Product Added": 14}
    assert deps.counter_events == {"Product Viewed", "Order Completed", "Signed Up"}

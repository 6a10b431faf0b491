"""Structural schema validation, defaulting, pruning, CEL rules and the CEL cost budget."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.kubeemu import cel_rules, crd_schema, schema
from tests.kubeemu.celcost import cost_causes
from tests.kubeemu.conftest import REFERENCE, load_yaml

WIDGET_SCHEMA: dict[str, Any] = load_yaml(REFERENCE / "widget-crd.yaml")["spec"]["versions"][0][
    "schema"
]["openAPIV3Schema"]


def messages(value: Any, node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.field, c.message) for c in schema.validate(value, node, "spec")]


def rule_failures(new: Any, node: dict[str, Any], old: Any = cel_rules.ABSENT) -> list[Any]:
    return [(c.reason, c.field, c.message) for c in cel_rules.validate(new, old, node, "spec")]


@pytest.mark.parametrize(
    ("node", "value", "expected"),
    [
        (
            {"type": "string", "maxLength": 3},
            "abcd",
            [("spec", "Too long: may not be longer than 3")],
        ),
        (
            {"type": "string", "minLength": 2},
            "a",
            [("spec", 'Invalid value: "a": spec in body should be at least 2 chars long')],
        ),
        (
            {"type": "integer", "maximum": 5, "exclusiveMaximum": True},
            5,
            [("spec", "Invalid value: 5: spec in body should be less than 5")],
        ),
        (
            {"type": "number", "multipleOf": 0.5},
            0.7,
            [("spec", "Invalid value: 0.7: spec in body should be a multiple of 0.5")],
        ),
        (
            {"type": "array", "minItems": 2, "items": {"type": "string"}},
            ["a"],
            [("spec", "Invalid value: 1: spec in body should have at least 2 items")],
        ),
        (
            {"type": "object", "maxProperties": 1},
            {"a": 1, "b": 2},
            [("spec", "Too many: 2: must have at most 1 items")],
        ),
        (
            {"type": "string", "format": "date-time"},
            "yesterday",
            [
                (
                    "spec",
                    'Invalid value: "yesterday": spec in body must be of type date-time: '
                    '"yesterday"',
                )
            ],
        ),
        (
            {"type": "integer", "enum": [1, 2]},
            3,
            [("spec", 'Unsupported value: 3: supported values: "1", "2"')],
        ),
        (
            {"x-kubernetes-int-or-string": True},
            True,
            [
                (
                    "spec",
                    'Invalid value: "boolean": spec in body must be of type integer,string: '
                    '"boolean"',
                )
            ],
        ),
        ({"type": "string", "nullable": True}, None, []),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"a": "x"},
            [
                (
                    "spec.a",
                    'Invalid value: "string": spec.a in body must be of type integer: "string"',
                )
            ],
        ),
    ],
)
def test_schema_constraints_are_worded_as_the_api_server_words_them(
    node: dict[str, Any], value: Any, expected: list[tuple[str, str]]
) -> None:
    assert messages(value, node) == expected


def test_duplicates_in_set_and_map_lists_are_reported() -> None:
    node = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object"},
            },
        },
    }
    value = {"tags": ["a", "a"], "ports": [{"name": "http"}, {"name": "http"}]}
    causes = schema.list_type_causes(value, node, "spec")
    assert [(c.field, c.message) for c in causes] == [
        ("spec.ports[1]", 'Duplicate value: map[string]interface {}{"name":"http"}'),
        ("spec.tags[1]", 'Duplicate value: "a"'),
    ]


def test_defaults_fill_present_objects_and_list_items() -> None:
    node = {
        "type": "object",
        "properties": {
            "rollout": {
                "type": "object",
                "properties": {"strategy": {"type": "string", "default": "Canary"}},
            },
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"weight": {"type": "integer", "default": 10}},
                },
            },
            "absent": {"type": "object", "properties": {"x": {"type": "integer", "default": 1}}},
        },
    }
    value: dict[str, Any] = {"rollout": {}, "steps": [{}, {"weight": 50}]}
    schema.default(value, node)
    assert value == {"rollout": {"strategy": "Canary"}, "steps": [{"weight": 10}, {"weight": 50}]}


def test_pruning_keeps_what_the_schema_preserves() -> None:
    node = {
        "type": "object",
        "properties": {
            "known": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": True},
        },
    }
    value = {
        "known": "a",
        "unknown": "b",
        "free": {"anything": 1},
        "labels": {"x": "y"},
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "junk": 1},
    }
    dropped = schema.prune(value, node, "spec")
    assert sorted(dropped) == ["spec.template.junk", "spec.unknown"]
    assert value["free"] == {"anything": 1}
    assert value["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}


def test_cel_library_functions() -> None:
    cases = {
        "[1, 2, 3].isSorted()": True,
        "[3, 1].isSorted()": False,
        "[1, 2, 3].sum() == 6": True,
        "[4, 2, 9].min() == 2 && [4, 2, 9].max() == 9": True,
        "[5, 6].indexOf(6) == 1": True,
        "'a-b'.indexOf('-') == 1": True,
        "'AbC'.lowerAscii() == 'abc'": True,
        "'a,b'.split(',').size() == 2": True,
        "'abc'.matches('^a') && 'abc'.startsWith('a') && 'abc'.endsWith('c')": True,
        "[1, 2].exists_one(x, x == 2) && [1, 2].all(x, x > 0)": True,
        "[1, 2].map(x, x * 2).filter(x, x > 2) == [4]": True,
    }
    for rule, expected in cases.items():
        assert cel_rules.evaluate(rule, {}) is expected, rule


def test_rule_message_expression_reason_and_field_path() -> None:
    node = {
        "type": "object",
        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
        "x-kubernetes-validations": [
            {
                "rule": "self.min <= self.max",
                "messageExpression": "'min ' + string(self.min) + ' exceeds max'",
                "reason": "FieldValueForbidden",
                "fieldPath": ".min",
            },
            {"rule": "self.max < 100"},
        ],
    }
    assert rule_failures({"min": 150, "max": 120}, node) == [
        ("FieldValueForbidden", "spec.min", "Forbidden: min 150 exceeds max"),
        ("FieldValueInvalid", "spec", 'Invalid value: "object": failed rule: self.max < 100'),
    ]


def test_transition_rules_run_only_against_an_old_value() -> None:
    node = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "size": {
                            "type": "integer",
                            "x-kubernetes-validations": [
                                {"rule": "self >= oldSelf", "message": "may only grow"}
                            ],
                        },
                    },
                },
            }
        },
    }
    old = {"items": [{"name": "a", "size": 5}]}
    assert rule_failures({"items": [{"name": "a", "size": 1}]}, node) == []
    assert rule_failures({"items": [{"name": "b", "size": 1}]}, node, old) == []
    assert rule_failures({"items": [{"name": "a", "size": 1}]}, node, old) == [
        ("FieldValueInvalid", "spec.items[0].size", 'Invalid value: "integer": may only grow')
    ]


def test_a_rule_that_cannot_evaluate_reports_why() -> None:
    node = {"type": "object", "x-kubernetes-validations": [{"rule": "self.missing == 1"}]}
    [(reason, field, message)] = rule_failures({}, node)
    assert (reason, field) == ("FieldValueInvalid", "spec")
    assert message.endswith("evaluating rule: self.missing == 1")


def widget_spec_schema() -> dict[str, Any]:
    return copy.deepcopy(WIDGET_SCHEMA)


def test_iterating_an_unbounded_list_exceeds_the_cost_budget_as_recorded() -> None:
    unbounded = widget_spec_schema()
    del unbounded["properties"]["spec"]["properties"]["steps"]["maxItems"]
    [cause] = cost_causes(unbounded, "spec.validation.openAPIV3Schema")
    assert cause.field == (
        "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule"
    )
    assert cause.message == (
        # Recorded from kube-apiserver v1.28.7 (tests/corpus/invalid-crds/): under 1.5x the
        # factor is printed with six decimals.
        "Forbidden: estimated rule cost exceeds budget by factor of 1.101005x (try simplifying the "
        "rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings "
        "are declared)"
    )
    assert cost_causes(widget_spec_schema(), "spec.validation.openAPIV3Schema") == []


def test_a_cheap_rule_over_an_unbounded_list_is_within_budget() -> None:
    node = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "integer"}}},
        "x-kubernetes-validations": [{"rule": "self.steps.all(s, s > 0)"}],
    }
    assert cost_causes(node, "root") == []


def test_string_functions_inside_an_unbounded_loop_exceed_the_budget() -> None:
    names = {"type": "array", "items": {"type": "string"}}
    node = {
        "type": "object",
        "properties": {"names": names},
        "x-kubernetes-validations": [{"rule": "self.names.all(n, n.matches('^[a-z]+$'))"}],
    }
    # The rule, its share of the schema's total, and the total (as a real server answers).
    assert [c.field for c in cost_causes(node, "root")] == [
        "root.x-kubernetes-validations[0].rule",
        "root.x-kubernetes-validations[0].rule",
        "root",
    ]
    names["maxItems"] = 16
    names["items"]["maxLength"] = 63
    assert cost_causes(node, "root") == []


def test_rules_spell_reserved_and_punctuated_property_names_escaped() -> None:
    refs = {
        "type": "array",
        "maxItems": 32,
        "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.all(p1, self.exists_one(p2, p1.name == p2.name && "
                "(has(p1.__namespace__) ? p1.__namespace__ : '') == "
                "(has(p2.__namespace__) ? p2.__namespace__ : '')))",
                "message": "parentRefs must be distinct",
            }
        ],
    }
    distinct = [{"name": "gw", "namespace": "a"}, {"name": "gw"}]
    assert rule_failures(distinct, refs) == []
    assert rule_failures([{"name": "gw"}, {"name": "gw"}], refs) == [
        ("FieldValueInvalid", "spec", 'Invalid value: "array": parentRefs must be distinct')
    ]
    assert (
        cel_rules.escaped_name("app.kubernetes.io/name")
        == "app__dot__kubernetes__dot__io__slash__name"
    )


def test_a_crd_whose_default_breaks_its_own_schema_is_refused() -> None:
    node = {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer", "maximum": 10, "default": 100},
            "mode": {"type": "string", "enum": ["Canary"], "default": "Canary"},
        },
    }
    causes = crd_schema.schema_causes(node, "spec.validation.openAPIV3Schema")
    assert [(c.field, c.message) for c in causes] == [
        (
            "spec.validation.openAPIV3Schema.properties[replicas].default",
            "Invalid value: 100: in body should be less than or equal to 10",
        )
    ]


def test_an_embedded_resource_needs_api_version_and_kind() -> None:
    node = {
        "type": "object",
        "x-kubernetes-embedded-resource": True,
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert messages({"kind": "Pod"}, node) == [
        ("spec.apiVersion", "Required value: must not be empty")
    ]
    assert messages({"apiVersion": "v1", "kind": "Pod"}, node) == []


def test_a_rule_naming_a_field_its_schema_lacks_does_not_compile() -> None:
    node = {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "maxItems": 8,
                "items": {"type": "object", "properties": {"weight": {"type": "integer"}}},
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "x-kubernetes-validations": [
            {"rule": "self.steps.all(s, s.weigth > 0)"},
            {"rule": "self.labels.team == 'ml' && self.steps.all(s, s.weight > 0)"},
        ],
    }
    [cause] = cel_rules.rule_causes(node, "root")
    assert cause.field == "root.x-kubernetes-validations[0].rule"
    assert cause.message.endswith("compilation failed: ERROR: <input>: undefined field 'weigth'")


def test_nulls_the_schema_does_not_allow_are_defaulted_or_dropped() -> None:
    node = {
        "type": "object",
        "properties": {
            "mode": {"type": "string", "default": "Canary"},
            "uri": {"type": "string"},
            "note": {"type": "string", "nullable": True},
        },
    }
    value: dict[str, Any] = {"mode": None, "uri": None, "note": None}
    schema.default(value, node)
    assert value == {"mode": "Canary", "note": None}
    assert schema.validate(value, node, "spec") == []

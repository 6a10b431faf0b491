"""What the API server refuses in a CRD's openAPIV3Schema before it serves the kind.

A practical subset of apiextensions' structural-schema checks: every node typed, no
`uniqueItems`, list-map keys declared, defaults that satisfy their own schema, and CEL rules
that compile and fit the cost budget.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeemu.cel_rules import rule_causes
from tests.kubeemu.cel_rules import validate as cel_validate
from tests.kubeemu.errors import Cause
from tests.kubeemu.schema import Schema, validate


def schema_causes(schema: Any, path: str) -> list[Cause]:
    """What the API server refuses in a CRD's openAPIV3Schema (a practical subset)."""
    causes: list[Cause] = []
    if not isinstance(schema, dict):
        return [Cause("FieldValueRequired", "Required value: must be an object", path)]
    _check_node(schema, path, causes, root=True)
    causes.extend(rule_causes(schema, path))
    return causes


def _default_causes(node: Schema, path: str) -> list[Cause]:
    """A default must itself be valid: the API server refuses a CRD whose default is not."""
    value = copy.deepcopy(node["default"])
    if value is None and node.get("nullable"):
        return []
    # The default is checked as written, before nested defaults would fill it in: first
    # against the schema, then (only if that passed) against the CEL rules inside it.
    found = []
    for cause in validate(value, node, ""):
        field = f"{path}.{cause.field}" if cause.field else path
        found.append(Cause(cause.reason, cause.message.replace(":  in body", ": in body"), field))
    if not found:
        found = cel_validate(value, value, node, path)
    return found


def _check_node(node: Schema, path: str, causes: list[Cause], root: bool = False) -> None:
    has_type = bool(node.get("type"))
    untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if not has_type and not untyped_ok:
        message = (
            "must not be empty at the root"
            if root
            else "must not be empty for specified object fields"
        )
        causes.append(Cause("FieldValueRequired", f"Required value: {message}", f"{path}.type"))
    if "default" in node:
        causes.extend(_default_causes(node, f"{path}.default"))
    if node.get("uniqueItems") is True:
        causes.append(
            Cause(
                "FieldValueForbidden",
                "Forbidden: uniqueItems cannot be set to true since the runtime complexity "
                "becomes quadratic",
                f"{path}.uniqueItems",
            )
        )
    if node.get("x-kubernetes-list-type") == "map" and not node.get("x-kubernetes-list-map-keys"):
        causes.append(
            Cause(
                "FieldValueRequired",
                "Required value: must not be empty if x-kubernetes-list-type is map",
                f"{path}.x-kubernetes-list-map-keys",
            )
        )
    for name, sub in (node.get("properties") or {}).items():
        if isinstance(sub, dict):
            if root and name == "metadata":
                causes.extend(_root_metadata_causes(sub, f"{path}.properties[{name}]"))
                continue
            _check_node(sub, f"{path}.properties[{name}]", causes)
    items = node.get("items")
    if isinstance(items, dict):
        _check_node(items, f"{path}.items", causes)
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        _check_node(additional, f"{path}.additionalProperties", causes)


def _root_metadata_causes(node: Schema, path: str) -> list[Cause]:
    """The root's ``metadata`` may restrict ``name`` and ``generateName``, and nothing else.

    The API server drops the type, the default and a ``properties`` that names only those
    two fields, and forbids whatever remains (a description included).
    """
    causes: list[Cause] = []
    kind = node.get("type")
    if kind != "object":
        causes.append(
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{kind or ""}": must be object',
                f"{path}.type",
            )
        )
    rest = {key: value for key, value in node.items() if key not in ("type", "default")}
    properties = rest.get("properties")
    if isinstance(properties, dict) and properties and set(properties) <= {"name", "generateName"}:
        del rest["properties"]
    if rest:
        causes.append(
            Cause(
                "FieldValueForbidden",
                "Forbidden: must not specify anything other than name and generateName, but "
                "metadata is implicitly specified",
                path,
            )
        )
    return causes

"""Structural schemas: pruning, defaulting and OpenAPI validation of custom resources.

Error wording, reasons and their order follow kube-apiserver v1.28 (kube-openapi's
validator as converted by apiextensions-apiserver), as recorded in
shared/k8s-reference/apiserver-answers.json: per node the type is checked first, then
string, format, number, array, enum and object constraints; an object reports required
properties before its properties' own problems, properties in name order.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import uuid
from datetime import datetime
from typing import Any

from tests.kubeemu.errors import Cause

Schema = dict[str, Any]

# Field errors of these kinds stop CEL evaluation; the API server then adds the `<nil>` cause.
BLOCKING_REASONS = frozenset(
    {"FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany", "FieldValueTypeInvalid"}
)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_value(value: Any) -> str:
    """A bad value as Go's field.Error prints it."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return go_syntax(value)


def go_syntax(value: Any) -> str:
    """Go's %#v of a decoded JSON value (maps print with sorted keys)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{go_syntax(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_syntax(v) for v in value) + "}"
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    return json.dumps(value, ensure_ascii=False)


def _go_float(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---- pruning and defaulting ---------------------------------------------------------------


def prune(value: Any, schema: Schema, path: str, root: bool = False) -> list[str]:
    """Drop fields the schema does not know, in place; returns the dropped paths."""
    dropped: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        for key in list(value):
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if embedded and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in properties:
                dropped.extend(prune(value[key], properties[key], _child(path, key)))
            elif isinstance(additional, dict):
                dropped.extend(prune(value[key], additional, _child(path, key)))
            elif additional is True or preserve:
                continue
            else:
                del value[key]
                dropped.append(_child(path, key))
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                dropped.extend(prune(item, items, f"{path}[{index}]"))
    return dropped


def default(value: Any, schema: Schema) -> None:
    """Fill in schema defaults, in place, including inside present objects and list items.

    A null where the schema allows none is replaced by the default, or dropped when there is
    no default (the API server prunes such nulls rather than reporting them).
    """
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            if key in value and value[key] is None and not sub.get("nullable"):
                if "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                else:
                    del value[key]
            elif "default" in sub and key not in value:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                default(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                if key not in properties:
                    default(value[key], additional)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                default(item, items)


# ---- validation ---------------------------------------------------------------------------


def validate(value: Any, schema: Schema, path: str) -> list[Cause]:
    causes: list[Cause] = []
    _validate(value, schema, path, causes)
    return causes


def _type_ok(value: Any, schema: Schema) -> bool:
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    if not expected:
        return True
    actual = type_name(value)
    if expected == "number":
        return actual in ("number", "integer")
    return actual == expected


def _validate(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    untyped = not schema.get("type") and not schema.get("x-kubernetes-int-or-string")
    if value is None and (schema.get("nullable") or untyped):
        return
    if not _type_ok(value, schema):
        expected = schema.get("type", "")
        if schema.get("x-kubernetes-int-or-string"):
            expected = "integer,string"
        actual = type_name(value)
        causes.append(
            Cause(
                "FieldValueTypeInvalid",
                f'Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"',
                path,
            )
        )
        return
    if isinstance(value, str):
        _validate_string(value, schema, path, causes)
    if isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, causes)
    if isinstance(value, list):
        _validate_array(value, schema, path, causes)
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        allowed = ", ".join(
            json.dumps(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
            for v in schema["enum"]
        )
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f"Unsupported value: {go_value(value)}: supported values: {allowed}",
                path,
            )
        )
    if isinstance(value, dict):
        _validate_object(value, schema, path, causes)
        if schema.get("x-kubernetes-embedded-resource") is True:
            causes.extend(_embedded_resource_causes(value, path))
    for combinator in ("allOf",):
        for sub in schema.get(combinator) or []:
            if isinstance(sub, dict):
                _validate(value, sub, path, causes)


def _embedded_resource_causes(value: dict[str, Any], path: str) -> list[Cause]:
    """An embedded object (a pod template in a custom resource) needs apiVersion and kind."""
    causes = []
    for key in ("apiVersion", "kind"):
        if not value.get(key):
            causes.append(
                Cause("FieldValueRequired", "Required value: must not be empty", _child(path, key))
            )
    return causes


def _validate_string(value: str, schema: Schema, path: str, causes: list[Cause]) -> None:
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(value) > max_length:
        causes.append(
            Cause("FieldValueTooLong", f"Too long: may not be longer than {max_length}", path)
        )
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(value) < min_length:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {go_value(value)}: {path} in body should be at least "
                f"{min_length} chars long",
                path,
            )
        )
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not _matches(pattern, value):
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {go_value(value)}: {path} in body should match '{pattern}'",
                path,
            )
        )
    fmt = schema.get("format")
    if isinstance(fmt, str) and not format_ok(fmt, value):
        causes.append(
            Cause(
                "FieldValueTypeInvalid",
                f"Invalid value: {go_value(value)}: {path} in body must be of type {fmt}: "
                f"{go_value(value)}",
                path,
            )
        )


_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def _matches(pattern: str, value: str) -> bool:
    compiled = _PATTERN_CACHE.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(pattern)
        except re.error:
            return True
        _PATTERN_CACHE[pattern] = compiled
    return compiled.search(value) is not None


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_HOSTNAME = re.compile(
    r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$"
)
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def format_ok(fmt: str, value: str) -> bool:
    """The string formats the API server checks (others are accepted as they are)."""
    if fmt in ("date-time", "datetime"):
        if not _DATE_TIME.match(value):
            return False
        try:
            datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00").replace(" ", "T"))
        except ValueError:
            return False
        return True
    if fmt == "date":
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            return False
        return True
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            return False
        return True
    if fmt in ("uuid", "uuid3", "uuid4", "uuid5"):
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return False
        return fmt == "uuid" or parsed.version == int(fmt[-1])
    if fmt == "ipv4":
        try:
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
        except ValueError:
            return False
    if fmt == "ipv6":
        try:
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv6Address)
        except ValueError:
            return False
    if fmt == "cidr":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return False
        return "/" in value
    if fmt == "hostname":
        return len(value) <= 255 and bool(_HOSTNAME.match(value))
    if fmt == "duration":
        return bool(_DURATION.match(value))
    if fmt == "email":
        return bool(_EMAIL.match(value))
    return True


def _validate_number(value: float | int, schema: Schema, path: str, causes: list[Cause]) -> None:
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple and (value / multiple) % 1 != 0:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {go_value(value)}: {path} in body should be a multiple of "
                f"{_number(multiple)}",
                path,
            )
        )
    maximum = schema.get("maximum")
    if isinstance(maximum, int | float):
        exclusive = schema.get("exclusiveMaximum") is True
        if value > maximum or (exclusive and value == maximum):
            relation = "less than" if exclusive else "less than or equal to"
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(value)}: {path} in body should be {relation} "
                    f"{_number(maximum)}",
                    path,
                )
            )
    minimum = schema.get("minimum")
    if isinstance(minimum, int | float):
        exclusive = schema.get("exclusiveMinimum") is True
        if value < minimum or (exclusive and value == minimum):
            relation = "greater than" if exclusive else "greater than or equal to"
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {go_value(value)}: {path} in body should be {relation} "
                    f"{_number(minimum)}",
                    path,
                )
            )
    fmt = schema.get("format")
    if isinstance(value, int) and fmt in ("int32", "int64"):
        bits = 31 if fmt == "int32" else 63
        if not -(2**bits) <= value < 2**bits:
            causes.append(
                Cause(
                    "FieldValueTypeInvalid",
                    f'Invalid value: {value}: {path} in body must be of type {fmt}: "{value}"',
                    path,
                )
            )


def _validate_array(value: list[Any], schema: Schema, path: str, causes: list[Cause]) -> None:
    min_items = schema.get("minItems")
    if isinstance(min_items, int) and len(value) < min_items:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{min_items} items",
                path,
            )
        )
    max_items = schema.get("maxItems")
    if isinstance(max_items, int) and len(value) > max_items:
        causes.append(
            Cause(
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {max_items} items",
                path,
            )
        )
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _validate(item, items, f"{path}[{index}]", causes)


def _validate_object(value: dict[str, Any], schema: Schema, path: str, causes: list[Cause]) -> None:
    max_properties = schema.get("maxProperties")
    if isinstance(max_properties, int) and len(value) > max_properties:
        causes.append(
            Cause(
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {max_properties} items",
                path,
            )
        )
    min_properties = schema.get("minProperties")
    if isinstance(min_properties, int) and len(value) < min_properties:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{min_properties} properties",
                path,
            )
        )
    for name in schema.get("required") or []:
        if name not in value:
            causes.append(Cause("FieldValueRequired", "Required value", _child(path, name)))
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for name in sorted(value):
        if path == "" and name in ("apiVersion", "kind", "metadata"):
            continue
        if name in properties and isinstance(properties[name], dict):
            _validate(value[name], properties[name], _child(path, name), causes)
        elif isinstance(additional, dict):
            _validate(value[name], additional, _child(path, name), causes)


def list_type_causes(value: Any, schema: Schema, path: str) -> list[Cause]:
    """Duplicate items in `x-kubernetes-list-type: set|map` lists."""
    causes: list[Cause] = []
    _list_types(value, schema, path, causes)
    return causes


def _list_types(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for name in sorted(value):
            if name in properties and isinstance(properties[name], dict):
                _list_types(value[name], properties[name], _child(path, name), causes)
            elif isinstance(additional, dict):
                _list_types(value[name], additional, _child(path, name), causes)
        return
    if not isinstance(value, list):
        return
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                causes.append(
                    Cause(
                        "FieldValueDuplicate",
                        f"Duplicate value: {go_value(item)}",
                        f"{path}[{index}]",
                    )
                )
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[dict[str, Any]] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            identity = {k: item.get(k) for k in keys if k in item}
            if identity in seen_keys:
                causes.append(
                    Cause(
                        "FieldValueDuplicate",
                        f"Duplicate value: {go_syntax(identity)}",
                        f"{path}[{index}]",
                    )
                )
            else:
                seen_keys.append(identity)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _list_types(item, items, f"{path}[{index}]", causes)

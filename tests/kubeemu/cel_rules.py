"""`x-kubernetes-validations`: CEL rules evaluated as the API server evaluates them.

Rules run on the node that declares them with `self` bound to its value (and `oldSelf` to
the previous value on update; a transition rule runs only when that old value exists).
Expressions are evaluated with the `common-expression-language` package, extended here with
the Kubernetes CEL library functions Kiln's CRDs use (lists, strings, regex).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import cel

from tests.kubeemu.celcost import cost_causes, undefined_fields
from tests.kubeemu.celnames import escaped_name
from tests.kubeemu.errors import Cause
from tests.kubeemu.schema import Schema, type_name

_OLD_SELF = re.compile(r"\boldSelf\b")


def cel_value(value: Any, schema: Schema) -> Any:
    """The value as rules see it: object properties under their escaped names."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        converted = {}
        for name, item in value.items():
            if name in properties and isinstance(properties[name], dict):
                converted[escaped_name(name)] = cel_value(item, properties[name])
            elif isinstance(additional, dict):
                converted[name] = cel_value(item, additional)
            else:
                converted[name] = item
        return converted
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [cel_value(item, items) for item in value]
    return value


def _is_sorted(values: Any) -> bool:
    items = list(values)
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _sum(values: Any) -> Any:
    items = list(values)
    if not items:
        return 0
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


def _min(values: Any, *rest: Any) -> Any:
    items = [values, *rest] if rest else list(values)
    if not items:
        raise ValueError("min called on empty list")
    return min(items)


def _max(values: Any, *rest: Any) -> Any:
    items = [values, *rest] if rest else list(values)
    if not items:
        raise ValueError("max called on empty list")
    return max(items)


def _index_of(container: Any, item: Any, *start: Any) -> int:
    if isinstance(container, str):
        begin = int(start[0]) if start else 0
        return container.find(item, begin)
    items = list(container)
    return items.index(item) if item in items else -1


def _last_index_of(container: Any, item: Any) -> int:
    if isinstance(container, str):
        return container.rfind(item)
    items = list(container)
    return len(items) - 1 - items[::-1].index(item) if item in items else -1


def _substring(text: str, start: int, *end: int) -> str:
    return text[int(start) : int(end[0])] if end else text[int(start) :]


def _split(text: str, separator: str, *limit: int) -> list[str]:
    if limit and int(limit[0]) >= 0:
        if int(limit[0]) == 0:
            return []
        return text.split(separator, int(limit[0]) - 1)
    return text.split(separator)


def _join(values: Any, *separator: str) -> str:
    return (separator[0] if separator else "").join(list(values))


def _replace(text: str, old: str, new: str, *limit: int) -> str:
    count = int(limit[0]) if limit else -1
    return text.replace(old, new, count)


def _char_at(text: str, index: int) -> str:
    index = int(index)
    return text[index] if index < len(text) else ""


KUBERNETES_LIBRARY: dict[str, Callable[..., Any]] = {
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _min,
    "max": _max,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": lambda text: text.lower(),
    "upperAscii": lambda text: text.upper(),
    "trim": lambda text: text.strip(),
    "substring": _substring,
    "split": _split,
    "join": _join,
    "replace": _replace,
    "charAt": _char_at,
}

_PROGRAMS: dict[str, Any] = {}


def compiled(rule: str) -> Any:
    program = _PROGRAMS.get(rule)
    if program is None:
        program = cel.compile(rule)
        _PROGRAMS[rule] = program
    return program


def evaluate(rule: str, variables: dict[str, Any]) -> Any:
    context = cel.Context(variables=variables, functions=KUBERNETES_LIBRARY)
    return compiled(rule).execute(context)


def _error_text(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no such key: {error.args[0] if error.args else ''}"
    return str(error)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _schema_type(schema: Schema) -> str:
    """The structural type a failed rule reports as its bad value ("" when untyped)."""
    return str(schema.get("type") or "")


ABSENT = object()


def validate(new: Any, old: Any, schema: Schema, path: str) -> list[Cause]:
    """Run every rule in the schema over `new` (with `old` for transition rules)."""
    causes: list[Cause] = []
    _walk(new, old, schema, path, causes)
    return causes


def _walk(new: Any, old: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        if isinstance(rule, dict) and isinstance(rule.get("rule"), str):
            cause = _check(rule, new, old, schema, path)
            if cause is not None:
                causes.append(cause)
    if isinstance(new, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for name in sorted(new):
            sub = properties.get(name)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if not isinstance(sub, dict):
                continue
            old_child = old.get(name, ABSENT) if isinstance(old, dict) else ABSENT
            _walk(new[name], old_child, sub, _child(path, name), causes)
    elif isinstance(new, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return
        correlated = _correlate(new, old, schema)
        for index, item in enumerate(new):
            _walk(item, correlated[index], items, f"{path}[{index}]", causes)


def _correlate(new: list[Any], old: Any, schema: Schema) -> list[Any]:
    """Old items that transition rules may compare with: by key (map) or value (set)."""
    found: list[Any] = [ABSENT] * len(new)
    if not isinstance(old, list):
        return found
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        by_key = {
            json.dumps([item.get(k) for k in keys]): item for item in old if isinstance(item, dict)
        }
        for index, item in enumerate(new):
            if isinstance(item, dict):
                found[index] = by_key.get(json.dumps([item.get(k) for k in keys]), ABSENT)
    elif list_type == "set":
        for index, item in enumerate(new):
            if item in old:
                found[index] = item
    return found


def _check(rule: dict[str, Any], new: Any, old: Any, schema: Schema, path: str) -> Cause | None:
    expression = rule["rule"]
    uses_old = bool(_OLD_SELF.search(expression))
    if uses_old and old is ABSENT:
        return None
    variables: dict[str, Any] = {"self": cel_value(new, schema)}
    if uses_old:
        variables["oldSelf"] = cel_value(old, schema)
    field = path
    field_path = rule.get("fieldPath")
    if isinstance(field_path, str) and field_path:
        field = _child(path, field_path.lstrip("."))
    value_type = _schema_type(schema) if new is not None else type_name(new)
    try:
        result = evaluate(expression, variables)
    except Exception as error:
        return Cause(
            "FieldValueInvalid",
            f'Invalid value: "{value_type}": {_error_text(error)} evaluating rule: '
            f"{_rule_error_string(rule)}",
            field,
        )
    if result is True:
        return None
    if result is not False:
        return Cause(
            "FieldValueInvalid",
            f'Invalid value: "{value_type}": rule did not evaluate to a bool: {expression}',
            field,
        )
    message = _message(rule, variables)
    reason = rule.get("reason")
    if reason == "FieldValueForbidden":
        return Cause("FieldValueForbidden", f"Forbidden: {message}", field)
    if reason == "FieldValueRequired":
        return Cause("FieldValueRequired", f"Required value: {message}", field)
    if reason == "FieldValueDuplicate":
        return Cause("FieldValueDuplicate", f'Duplicate value: "{value_type}"', field)
    return Cause("FieldValueInvalid", f'Invalid value: "{value_type}": {message}', field)


def _rule_error_string(rule: dict[str, Any]) -> str:
    """How the API server names a rule that failed to evaluate: its message, else itself."""
    message = rule.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()
    return str(rule["rule"]).strip()


def _message(rule: dict[str, Any], variables: dict[str, Any]) -> str:
    expression = rule.get("messageExpression")
    if isinstance(expression, str) and expression:
        try:
            produced = evaluate(expression, variables)
        except Exception:
            produced = None
        if isinstance(produced, str) and produced.strip():
            return produced
    message = rule.get("message")
    if isinstance(message, str) and message:
        return message
    return f"failed rule: {rule['rule']}"


# ---- at CRD creation: rules must compile and fit the cost budget ------------------------------


def rule_causes(schema: Schema, path: str) -> list[Cause]:
    """Rules that do not compile, or (when all compile) that exceed the cost budget."""
    causes: list[Cause] = []
    _compile_all(schema, path, causes)
    if not causes:
        causes.extend(cost_causes(schema, path))
    return causes


def _rule_repr(rule: dict[str, Any]) -> str:
    return (
        "apiextensions.ValidationRule{"
        f"Rule:{json.dumps(rule.get('rule', ''))}, "
        f"Message:{json.dumps(rule.get('message', ''))}, "
        f"MessageExpression:{json.dumps(rule.get('messageExpression', ''))}, "
        "Reason:(*apiextensions.FieldValueErrorReason)(nil), "
        f"FieldPath:{json.dumps(rule.get('fieldPath', ''))}, OptionalOldSelf:(*bool)(nil)}}"
    )


def _compile_problem(expression: str, schema: Schema) -> str | None:
    """Why the API server would not compile the expression (syntax, unknown field), or None."""
    try:
        compiled(expression)
    except Exception as error:
        return str(error)
    try:
        undefined = undefined_fields(expression, schema)
    except Exception:
        return None  # what the checker cannot parse, it does not judge
    if undefined:
        return f"undefined field '{undefined[0]}'"
    return None


def _compile_all(schema: Schema, path: str, causes: list[Cause]) -> None:
    for index, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        where = f"{path}.x-kubernetes-validations[{index}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
            causes.append(Cause("FieldValueRequired", "Required value", f"{where}.rule"))
            continue
        for key in ("rule", "messageExpression"):
            text = rule.get(key)
            if not isinstance(text, str) or not text:
                continue
            problem = _compile_problem(text, schema)
            if problem is not None:
                message = f"compilation failed: ERROR: <input>: {problem}"
                if key == "messageExpression":
                    message = f"messageExpression compilation failed: ERROR: <input>: {problem}"
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {_rule_repr(rule)}: {message}",
                        f"{where}.{key}",
                    )
                )
        if rule.get("reason") not in (
            None,
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        ):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"Unsupported value: {json.dumps(rule['reason'])}: supported values: "
                    '"FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", '
                    '"FieldValueRequired"',
                    f"{where}.reason",
                )
            )
    for name, sub in sorted((schema.get("properties") or {}).items()):
        if isinstance(sub, dict):
            _compile_all(sub, f"{path}.properties[{name}]", causes)
    items = schema.get("items")
    if isinstance(items, dict):
        _compile_all(items, f"{path}.items", causes)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        _compile_all(additional, f"{path}.additionalProperties", causes)

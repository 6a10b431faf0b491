"""The CEL cost budget a real API server enforces when a CRD is created.

kube-apiserver estimates, for every `x-kubernetes-validations` rule, the worst-case cost of
evaluating it given the largest values the schema allows (`maxItems`, `maxProperties`,
`maxLength` in bytes, or else what fits in a 3 MiB request), times how often the schema lets
the rule run, and refuses a rule whose estimate exceeds 10,000,000 ("estimated rule cost
exceeds budget by factor of 1.101005x ..."), and a schema whose rules add up to more than
100,000,000. This module follows cel-go's cost model (comprehensions cost range size x
per-iteration cost; string functions and comparisons scale with string size; the size of a
map() or filter() result is unknown) and equals the real estimate on every rule Kiln ships
(`tests/cluster/reference/kiln-cel-costs.json`). The same walk of a rule against its schema
finds the fields a rule selects that the schema rules out, which the server's type checker
refuses to compile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from celpy import celparser
from lark import Token, Tree

from tests.kubeemu.celnames import escaped_name
from tests.kubeemu.errors import Cause

PER_RULE_LIMIT = 10_000_000
PER_CRD_LIMIT = 100_000_000
MAX_REQUEST_BYTES = 3 * 1024 * 1024
STRING_TRAVERSAL = 0.1
REGEX_LENGTH = 0.25
LIST_CREATE = 10
MAP_CREATE = 30

_BUDGET_HINT = (
    "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, "
    "maps, and strings are declared)"
)

Schema = dict[str, Any]


# What the estimator does not know the size of (the result of map() or filter()): a real
# server then assumes the largest size there is, which puts any walk over it past the budget.
UNKNOWN_SIZE = math.inf


def _ceil(value: float) -> float:
    """``math.ceil`` that lets an unknown (infinite) estimate through."""
    return value if math.isinf(value) else math.ceil(value)


def _min_json_size(schema: Schema | None) -> int:
    if not schema:
        return 1
    if schema.get("nullable"):
        return 4
    if schema.get("x-kubernetes-int-or-string"):
        return 1
    return {"boolean": 4, "number": 1, "integer": 1, "string": 2, "array": 2, "object": 2}.get(
        schema.get("type", ""), 1
    )


# The JSON sizes apiserver assumes for strings of these formats, whatever their maxLength.
_FORMAT_SIZES = {"duration": 32, "date": 12, "date-time": 32}


def max_size(schema: Schema | None) -> float:
    """The largest length/count the schema lets a value have (0 when unknown)."""
    if not schema:
        return 0
    kind = schema.get("type")
    if kind == "array":
        if isinstance(schema.get("maxItems"), int):
            return float(schema["maxItems"])
        return float((MAX_REQUEST_BYTES - 2) // (_min_json_size(schema.get("items")) + 1))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        if isinstance(schema.get("maxProperties"), int):
            return float(schema["maxProperties"])
        value = schema["additionalProperties"]
        return float((MAX_REQUEST_BYTES - 2) // (_min_json_size(value) + 4))
    if kind == "string":
        # As apiserver's cel/common/schemas.go sizes strings: in bytes, so a maxLength in
        # code points counts four bytes each; an enum does not bound it.
        fmt = schema.get("format")
        if fmt in _FORMAT_SIZES:
            return float(_FORMAT_SIZES[fmt])
        if isinstance(schema.get("maxLength"), int):
            per_character = 1 if fmt == "byte" else 4
            return float(max(schema["maxLength"], 0) * per_character)
        return float(MAX_REQUEST_BYTES - 2)
    return 0


def _element(schema: Schema | None) -> Schema | None:
    if not schema:
        return None
    if schema.get("type") == "array":
        items = schema.get("items")
        return items if isinstance(items, dict) else None
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        return {"type": "string"}  # iterating a map yields its keys
    return None


def _field(schema: Schema | None, name: str) -> Schema | None:
    if not schema:
        return None
    properties = {escaped_name(k): v for k, v in (schema.get("properties") or {}).items()}
    if name in properties and isinstance(properties[name], dict):
        return properties[name]
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


# Always selectable on an object, whatever its schema lists (the server adds them).
_IMPLICIT_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


def _is_undefined(schema: Schema | None, name: str) -> bool:
    """A field the type checker knows an object cannot have (a compile error on a server)."""
    if not schema or schema.get("type") != "object" or name in _IMPLICIT_FIELDS:
        return False
    if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
        return False
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return False
    return name not in {escaped_name(k) for k in properties}


@dataclass(frozen=True)
class Estimate:
    cost: float
    schema: Schema | None = None
    size: float = 0  # for strings, lists and maps: the largest size; 0 when unknown

    @staticmethod
    def of(cost: float, schema: Schema | None) -> Estimate:
        return Estimate(cost, schema, max_size(schema))


_PARSER: celparser.CELParser | None = None


def _parse(rule: str) -> Tree[Any]:
    global _PARSER
    if _PARSER is None:
        _PARSER = celparser.CELParser()
    return _PARSER.parse(rule)


_MACROS = {"all", "exists", "exists_one", "map", "filter"}
# Per-iteration overhead of each macro's generated loop step and condition (cel-go).
_MACRO_LOOP_COST = {"all": 3, "exists": 4, "exists_one": 2, "map": 12, "filter": 13}


class _Estimator:
    def __init__(self, variables: dict[str, Schema | None]) -> None:
        self.variables = dict(variables)
        self.undefined: list[str] = []

    def estimate(self, node: Any) -> Estimate:
        if isinstance(node, Token):
            return Estimate(0)
        method = getattr(self, f"_{node.data}", None)
        if method is not None:
            return method(node)
        parts = [self.estimate(child) for child in node.children if child is not None]
        if len(parts) == 1:
            return parts[0]
        return Estimate(sum(p.cost for p in parts))

    def _expr(self, node: Tree[Any]) -> Estimate:
        children = [c for c in node.children if c is not None]
        if len(children) == 1:
            return self.estimate(children[0])
        condition, then, otherwise = (self.estimate(c) for c in children)
        branch = then if then.cost >= otherwise.cost else otherwise
        return Estimate(condition.cost + branch.cost, branch.schema, max(then.size, otherwise.size))

    def _binary(self, node: Tree[Any]) -> Estimate:
        children = [c for c in node.children if c is not None]
        if len(children) == 1:
            return self.estimate(children[0])
        left_tree, right_tree = children
        operator = left_tree.data if isinstance(left_tree, Tree) else ""
        left = self.estimate(left_tree.children[0]) if operator else self.estimate(left_tree)
        right = self.estimate(right_tree)
        cost = left.cost + right.cost
        if operator == "relation_in":
            return Estimate(cost + max(right.size, 1))
        ordering = operator in ("relation_lt", "relation_le", "relation_gt", "relation_ge")
        if operator in ("relation_eq", "relation_ne") or (
            ordering and (_is_string(left) or _is_string(right))
        ):
            # (In)equality, and ordering of strings, walk the shorter side (cel-go): strings
            # by their byte size; values the schema gives no size (numbers, booleans,
            # objects) cost nothing more.
            smaller = min(left.size, right.size)
            return Estimate(cost + _ceil(smaller * STRING_TRAVERSAL))
        if ordering:
            return Estimate(cost + 1)  # numbers, timestamps, durations: O(1)
        if operator == "addition_add" and (_is_string(left) or _is_string(right)):
            size = left.size + right.size
            return Estimate(cost + _ceil(size * STRING_TRAVERSAL), left.schema, size)
        if operator == "addition_add":
            # List concatenation is O(1) in cel-go; only the size grows.
            return Estimate(cost + 1, left.schema, left.size + right.size)
        return Estimate(cost + (1 if operator else 0), left.schema)

    def _conditionalor(self, node: Tree[Any]) -> Estimate:
        return self._logical(node)

    def _conditionaland(self, node: Tree[Any]) -> Estimate:
        return self._logical(node)

    def _logical(self, node: Tree[Any]) -> Estimate:
        parts = [self.estimate(c) for c in node.children if c is not None]
        if len(parts) == 1:
            return parts[0]
        return Estimate(sum(p.cost for p in parts))

    _relation = _binary
    _addition = _binary
    _multiplication = _binary

    def _unary(self, node: Tree[Any]) -> Estimate:
        children = [c for c in node.children if c is not None]
        if len(children) == 1:
            return self.estimate(children[0])
        inner = self.estimate(children[1])
        return Estimate(inner.cost + 1, inner.schema, inner.size)

    def _member(self, node: Tree[Any]) -> Estimate:
        return self.estimate(node.children[0])

    def _primary(self, node: Tree[Any]) -> Estimate:
        return self.estimate(node.children[0])

    def _paren_expr(self, node: Tree[Any]) -> Estimate:
        return self.estimate(node.children[0])

    def _literal(self, node: Tree[Any]) -> Estimate:
        token = node.children[0]
        text = str(token)
        if isinstance(token, Token) and token.type in ("STRING_LIT", "MLSTRING_LIT", "BYTES_LIT"):
            return Estimate(0, {"type": "string"}, float(max(len(text) - 2, 0)))
        return Estimate(0)

    def _ident(self, node: Tree[Any]) -> Estimate:
        name = str(node.children[0])
        return Estimate.of(1, self.variables.get(name))

    def _member_dot(self, node: Tree[Any]) -> Estimate:
        operand = self.estimate(node.children[0])
        name = str(node.children[1])
        if _is_undefined(operand.schema, name):
            self.undefined.append(name)
        return Estimate.of(operand.cost + 1, _field(operand.schema, name))

    def _member_index(self, node: Tree[Any]) -> Estimate:
        operand = self.estimate(node.children[0])
        index = self.estimate(node.children[1])
        element = _element(operand.schema)
        if operand.schema and operand.schema.get("type") == "object":
            element = _field(operand.schema, "")
        return Estimate.of(operand.cost + index.cost + 1, element)

    def _list_lit(self, node: Tree[Any]) -> Estimate:
        items = self._arguments(node.children[0] if node.children else None)
        return Estimate(LIST_CREATE + sum(i.cost for i in items), None, float(len(items)))

    def _map_lit(self, node: Tree[Any]) -> Estimate:
        parts = [self.estimate(c) for c in node.children if c is not None]
        return Estimate(MAP_CREATE + sum(p.cost for p in parts))

    def _arguments(self, exprlist: Any) -> list[Estimate]:
        if exprlist is None:
            return []
        return [self.estimate(child) for child in exprlist.children]

    def _ident_arg(self, node: Tree[Any]) -> Estimate:
        name = str(node.children[0])
        args_tree = node.children[1] if len(node.children) > 1 else None
        if name == "has" and args_tree is not None:
            inner = self.estimate(args_tree.children[0])
            return Estimate(inner.cost)
        args = self._arguments(args_tree)
        return self._call(name, None, args)

    def _member_dot_arg(self, node: Tree[Any]) -> Estimate:
        target = self.estimate(node.children[0])
        name = str(node.children[1])
        args_tree = node.children[2] if len(node.children) > 2 else None
        if name in _MACROS and args_tree is not None and len(args_tree.children) == 2:
            return self._comprehension(name, target, args_tree.children)
        return self._call(name, target, self._arguments(args_tree))

    def _comprehension(self, name: str, target: Estimate, children: list[Any]) -> Estimate:
        variable = _variable_name(children[0])
        saved = self.variables.get(variable)
        self.variables[variable] = _element(target.schema)
        body = self.estimate(children[1])
        if saved is None:
            self.variables.pop(variable, None)
        else:
            self.variables[variable] = saved
        count = target.size
        per_iteration = body.cost + _MACRO_LOOP_COST[name]
        init = LIST_CREATE if name in ("map", "filter") else 0
        # cel-go does not carry the receiver's size through to a map() or filter() result.
        size = UNKNOWN_SIZE if name in ("map", "filter") else count
        return Estimate(target.cost + init + 1 + _ceil(count * per_iteration), None, size)

    def _call(self, name: str, target: Estimate | None, args: list[Estimate]) -> Estimate:
        base = sum(a.cost for a in args) + (target.cost if target else 0)
        receiver = target if target is not None else (args[0] if args else Estimate(0))
        if name == "contains" and target is not None and args:
            own = _ceil(target.size * STRING_TRAVERSAL) * _ceil(args[0].size * STRING_TRAVERSAL)
            return Estimate(base + max(own, 1))
        if name in ("startsWith", "endsWith") and args:
            return Estimate(base + max(_ceil(args[0].size * STRING_TRAVERSAL), 1))
        if name == "matches":
            pattern = args[-1] if args else Estimate(0)
            subject = target if target is not None else (args[0] if args else Estimate(0))
            own = _ceil(subject.size * STRING_TRAVERSAL) * _ceil(pattern.size * REGEX_LENGTH)
            return Estimate(base + max(own, 1))
        if name in ("isSorted", "sum", "min", "max", "indexOf", "lastIndexOf"):
            return Estimate(base + max(receiver.size, 1), _element(receiver.schema))
        if name in (
            "lowerAscii",
            "upperAscii",
            "trim",
            "replace",
            "split",
            "substring",
            "join",
            "charAt",
            "url",
            "quantity",
            "isURL",
            "isQuantity",
        ):
            own = _ceil(receiver.size * STRING_TRAVERSAL)
            return Estimate(base + max(own, 1), receiver.schema, receiver.size)
        return Estimate(base + 1)


def _is_string(estimate: Estimate) -> bool:
    return bool(estimate.schema) and (estimate.schema or {}).get("type") == "string"


def _variable_name(expr: Any) -> str:
    for token in expr.scan_values(lambda v: isinstance(v, Token) and v.type == "IDENT"):
        return str(token)
    return ""


def undefined_fields(rule: str, schema: Schema) -> list[str]:
    """Fields a rule selects that its schema rules out, in the order the rule names them."""
    estimator = _Estimator({"self": schema, "oldSelf": schema})
    estimator.estimate(_parse(rule))
    return estimator.undefined


def rule_cost(rule: str, schema: Schema) -> float:
    tree = _parse(rule)
    estimator = _Estimator({"self": schema, "oldSelf": schema})
    return estimator.estimate(tree).cost


def _factor(cost: float, limit: int) -> str:
    """The factor as the API server words it (apiextensions' getCostErrorMessage)."""
    factor = cost / limit
    if factor > 100:
        return "more than 100x"
    if factor < 1.5:
        return f"{factor:f}x"
    return f"{factor:.1f}x"


def cost_causes(root: Schema, path: str) -> list[Cause]:
    """Forbidden causes for rules (and a schema) over the budget; empty when within it.

    As apiextensions words them: each rule whose cost (times how many times the schema
    lets it run) is over the per-rule budget; then, when the whole schema is over its
    budget, the (at most four) costliest rules that took at least 1% of it and the total.
    """
    causes: list[Cause] = []
    contributions: list[tuple[str, float]] = []
    _visit(root, path, 1.0, causes, contributions)
    total = sum(cost for _, cost in contributions)
    if total > PER_CRD_LIMIT:
        costly = [c for c in contributions if c[1] >= PER_CRD_LIMIT / 100]
        costly.sort(key=lambda c: c[1], reverse=True)
        for where, _ in costly[:4]:
            causes.append(
                Cause(
                    "FieldValueForbidden",
                    "Forbidden: contributed to estimated rule cost total exceeding cost limit "
                    "for entire OpenAPIv3 schema",
                    where,
                )
            )
        causes.append(
            Cause(
                "FieldValueForbidden",
                "Forbidden: x-kubernetes-validations estimated rule cost total for entire "
                f"OpenAPIv3 schema exceeds budget by factor of {_factor(total, PER_CRD_LIMIT)} "
                f"{_BUDGET_HINT}",
                path,
            )
        )
    return causes


def _visit(
    node: Schema,
    path: str,
    cardinality: float,
    causes: list[Cause],
    contributions: list[tuple[str, float]],
) -> None:
    for index, rule in enumerate(node.get("x-kubernetes-validations") or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
            continue
        where = f"{path}.x-kubernetes-validations[{index}].rule"
        try:
            # A rule runs once for each value the enclosing lists and maps can hold.
            cost = rule_cost(rule["rule"], node) * cardinality
        except Exception:
            continue  # what the estimator cannot read, it does not judge
        if cost > PER_RULE_LIMIT:
            causes.append(
                Cause(
                    "FieldValueForbidden",
                    "Forbidden: estimated rule cost exceeds budget by factor of "
                    f"{_factor(cost, PER_RULE_LIMIT)} {_BUDGET_HINT}",
                    where,
                )
            )
        contributions.append((where, cost))
    for name, sub in sorted((node.get("properties") or {}).items()):
        if isinstance(sub, dict):
            _visit(sub, f"{path}.properties[{name}]", cardinality, causes, contributions)
    items = node.get("items")
    if isinstance(items, dict):
        _visit(items, f"{path}.items", cardinality * max(max_size(node), 1), causes, contributions)
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        _visit(
            additional,
            f"{path}.additionalProperties",
            cardinality * max(max_size(node), 1),
            causes,
            contributions,
        )

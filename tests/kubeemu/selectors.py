"""Label and field selectors, parsed once per request into a predicate over objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.kubeemu.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^\s!=()]+)\s*$")
_EQUALITY_TERM = re.compile(r"^\s*([^\s!=()]+)\s*(==|!=|=)\s*([^\s!=(),]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside a `(...)` value set."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    if match := _SET_TERM.match(term):
        key, operator, raw_values = match.groups()
        values = {v.strip() for v in raw_values.split(",") if v.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY_TERM.match(term):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: found '{term.strip()}', invalid selector")


def label_selector(selector: str) -> Predicate:
    terms = [_label_term(term) for term in _split_terms(selector)]

    def accepts(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return accepts


def _field_value(obj: dict[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    return str(current)


def field_selector(selector: str, supported: frozenset[str]) -> Predicate:
    terms: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        match = _EQUALITY_TERM.match(term)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, operator, value = match.groups()
        if path not in supported:
            raise bad_request(f"field label not supported: {path}")
        terms.append((path, operator == "!=", value))

    def accepts(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) != negated for path, negated, value in terms)

    return accepts


def combine(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return lambda obj: True
    if len(predicates) == 1:
        return predicates[0]
    return lambda obj: all(predicate(obj) for predicate in predicates)

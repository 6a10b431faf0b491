"""The subset of Kubernetes JSONPath that printer columns use.

Supports `.field`, `['field']`, `[n]`, `[*]`, `..field` and filters such as
`[?(@.type=="Ready")]`, with or without the surrounding `{}`.
"""

from __future__ import annotations

import re
from typing import Any

_FILTER = re.compile(r"^\?\(\s*@((?:\.[\w\-/]+)*)\s*(==|!=)\s*(.+?)\s*\)$")


def _split(expression: str) -> list[str]:
    """Tokenise into steps: names, bracket contents, and `..` markers."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    steps: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("..", i):
            steps.append("..")
            i += 2
        elif char == ".":
            i += 1
        elif char == "[":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "[":
                    depth += 1
                elif text[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            steps.append(text[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < len(text) and text[j] not in ".[":
                j += 1
            steps.append(text[i:j])
            i = j
    return steps


def _literal(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw


def _descend(values: list[Any]) -> list[Any]:
    found: list[Any] = []
    stack = list(values)
    while stack:
        value = stack.pop(0)
        found.append(value)
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def find(expression: str, document: Any) -> list[Any]:
    """Every value the expression selects, in document order."""
    current = [document]
    recursive = False
    for step in _split(expression):
        if step == "..":
            recursive = True
            continue
        pool = _descend(current) if recursive else current
        recursive = False
        selected: list[Any] = []
        if step.startswith("["):
            inner = step[1:-1].strip()
            for value in pool:
                selected.extend(_bracket(inner, value))
        else:
            for value in pool:
                if isinstance(value, dict) and step in value:
                    selected.append(value[step])
        current = selected
    return current


def _bracket(inner: str, value: Any) -> list[Any]:
    if inner == "*":
        if isinstance(value, dict):
            return list(value.values())
        return list(value) if isinstance(value, list) else []
    if match := _FILTER.match(inner):
        path, operator, raw = match.groups()
        expected = _literal(raw)
        if not isinstance(value, list):
            return []
        kept = []
        for item in value:
            found = find(path, item) if path else [item]
            actual = found[0] if found else None
            if (actual == expected) == (operator == "=="):
                kept.append(item)
        return kept
    if inner[:1] in "\"'":
        key = inner[1:-1]
        return [value[key]] if isinstance(value, dict) and key in value else []
    try:
        index = int(inner)
    except ValueError:
        return []
    if isinstance(value, list) and -len(value) <= index < len(value):
        return [value[index]]
    return []

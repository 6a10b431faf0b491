"""managedFields: which manager owns which field, in the API server's FieldsV1 notation.

A field set is a set of paths; each path element is already spelled as FieldsV1 spells it
(`f:name`, `k:{"name":"app"}`, `v:"value"`), so converting to and from the wire format is a
matter of building or walking a tree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.kubeemu.shapes import Shape, item_key

Path = tuple[str, ...]
FieldSet = frozenset[Path]

_OWNED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_element(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    identity = {k: item[k] for k in keys if k in item}
    return "k:" + json.dumps(identity, separators=(",", ":"), sort_keys=True)


def value_element(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"), sort_keys=True)


def leaves(obj: dict[str, Any], shape: Shape, scope: str) -> dict[Path, Any]:
    """Every owned path to a leaf value (maps and keyed items are not leaves).

    `scope` is "main" (everything but status), "status" (only status) or "all".
    """
    result: dict[Path, Any] = {}
    for name, value in obj.items():
        if name in ("apiVersion", "kind"):
            continue
        if scope == "main" and name == "status":
            continue
        if scope == "status" and name != "status":
            continue
        if name == "metadata":
            if isinstance(value, dict):
                for meta_name in _OWNED_METADATA:
                    if meta_name in value:
                        _walk(
                            value[meta_name],
                            shape.child("metadata").child(meta_name),
                            ("f:metadata", f"f:{meta_name}"),
                            result,
                        )
            continue
        _walk(value, shape.child(name), (f"f:{name}",), result)
    return result


def _walk(value: Any, shape: Shape, path: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and value and not shape.is_atomic_map():
        out[path] = _INTERIOR
        for name, child in value.items():
            _walk(child, shape.child(name), (*path, f"f:{name}"), out)
        return
    if isinstance(value, list) and value:
        kind = shape.list_kind()
        if kind.kind == "map":
            item_shape = shape.items()
            for item in value:
                if item_key(item, kind.keys) is None:
                    out[path] = value
                    return
            out[path] = _INTERIOR
            for item in value:
                element = (*path, key_element(item, kind.keys))
                out[element] = _INTERIOR
                for name, child in item.items():
                    _walk(child, item_shape.child(name), (*element, f"f:{name}"), out)
            return
        if kind.kind == "set":
            out[path] = _INTERIOR
            for item in value:
                out[(*path, value_element(item))] = item
            return
    out[path] = value


class _Interior:
    """Marks a path that is owned as a container whose children are listed too."""

    def __repr__(self) -> str:
        return "<interior>"


_INTERIOR = _Interior()


def is_interior(value: Any) -> bool:
    """Whether a `leaves` value marks a container rather than a leaf value."""
    return value is _INTERIOR


def field_set(obj: dict[str, Any], shape: Shape, scope: str) -> FieldSet:
    return frozenset(leaves(obj, shape, scope))


def changed_paths(
    old: dict[str, Any] | None, new: dict[str, Any], shape: Shape, scope: str
) -> FieldSet:
    """Paths an update set or changed: owned by the updating manager afterwards."""
    new_leaves = leaves(new, shape, scope)
    old_leaves = leaves(old, shape, scope) if old is not None else {}
    changed = set()
    for path, value in new_leaves.items():
        if (
            path not in old_leaves
            or (
                value is not _INTERIOR
                and (old_leaves[path] is _INTERIOR or old_leaves[path] != value)
            )
            or (value is _INTERIOR and old_leaves[path] is not _INTERIOR)
        ):
            changed.add(path)
    return frozenset(changed)


def to_fields_v1(paths: FieldSet) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    members: set[Path] = set(paths)
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    return _render(tree, (), members)


def _render(node: dict[str, Any], path: Path, members: set[Path]) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if node and path in members:
        rendered["."] = {}
    for element in sorted(node):
        rendered[element] = _render(node[element], (*path, element), members)
    return rendered


def from_fields_v1(tree: Any, path: Path = ()) -> FieldSet:
    found: set[Path] = set()
    if not isinstance(tree, dict):
        return frozenset()
    if not tree and path:
        found.add(path)
    for element, child in tree.items():
        if element == ".":
            found.add(path)
            continue
        found.update(from_fields_v1(child, (*path, element)))
    return frozenset(found)


def entry_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return (entry.get("manager", ""), entry.get("operation", ""), entry.get("subresource", ""))


def parse_entries(managed: Any) -> list[tuple[dict[str, Any], FieldSet]]:
    if not isinstance(managed, list):
        return []
    parsed = []
    for entry in managed:
        if isinstance(entry, dict):
            parsed.append((entry, from_fields_v1(entry.get("fieldsV1") or {})))
    return parsed


def render_entries(entries: list[tuple[dict[str, Any], FieldSet]]) -> list[dict[str, Any]]:
    rendered = []
    for entry, paths in entries:
        if not paths:
            continue
        out = {k: v for k, v in entry.items() if k != "fieldsV1"}
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = to_fields_v1(paths)
        rendered.append(_ordered_entry(out))
    return rendered


def _ordered_entry(entry: dict[str, Any]) -> dict[str, Any]:
    order = ["apiVersion", "fieldsType", "fieldsV1", "manager", "operation", "subresource", "time"]
    return {k: entry[k] for k in order if k in entry}


def record_update(
    managed: Any,
    manager: str,
    api_version: str,
    subresource: str,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    shape: Shape,
    scope: str,
) -> list[dict[str, Any]]:
    """managedFields after an Update (create, PUT, non-apply PATCH) by `manager`."""
    entries = parse_entries(managed)
    changed = changed_paths(old, new, shape, scope)
    present = field_set(new, shape, "all")
    # Containers that existed before stay with whoever created them, as on a real server.
    claimed = changed
    key = (manager, "Update", subresource)
    updated: list[tuple[dict[str, Any], FieldSet]] = []
    found = False
    for entry, paths in entries:
        kept = frozenset(p for p in paths if p in present)
        if entry_key(entry) == key:
            found = True
            new_paths = kept | claimed
            if new_paths != paths:
                entry = {**entry, "time": now_rfc3339(), "apiVersion": api_version}
            updated.append((entry, new_paths))
        else:
            others = frozenset(p for p in kept if p not in changed)
            updated.append((entry, others))
    if not found and claimed:
        entry = {"manager": manager, "operation": "Update", "apiVersion": api_version}
        entry["time"] = now_rfc3339()
        if subresource:
            entry["subresource"] = subresource
        updated.append((entry, frozenset(claimed)))
    return render_entries(updated)

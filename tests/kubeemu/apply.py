"""Server-side apply: merge a manager's applied configuration and track what it owns.

The rules that matter to an operator applying its children: the applied configuration is
merged into the live object (keyed lists by key, sets as sets, everything else replaced);
a field another manager owns with a different value is a conflict unless `force` (or, for
kubectl, unless its last-applied annotation holds the live value: `lastapplied.py`); fields
the manager applied before but dropped now are removed unless someone else owns them; and
re-applying the same configuration changes nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.kubeemu import fieldsets, lastapplied
from tests.kubeemu.errors import ApiError
from tests.kubeemu.fieldsets import FieldSet, Path
from tests.kubeemu.resources import ResourceType
from tests.kubeemu.shapes import Shape, item_key


def apply(
    live: dict[str, Any],
    config: dict[str, Any],
    manager: str,
    force: bool,
    shape: Shape,
    scope: str,
    rt: ResourceType,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The merged object and its new managedFields."""
    subresource = "status" if scope == "status" else ""
    entries = fieldsets.parse_entries(live.get("metadata", {}).get("managedFields"))
    config_leaves = fieldsets.leaves(config, shape, scope)
    live_leaves = fieldsets.leaves(live, shape, scope)
    config_set = frozenset(config_leaves)
    own_key = (manager, "Apply", subresource)

    contested: list[tuple[str, Path]] = []
    for entry, paths in entries:
        if fieldsets.entry_key(entry) == own_key:
            continue
        for path in paths & config_set:
            value = config_leaves[path]
            if fieldsets.is_interior(value) or fieldsets.is_interior(live_leaves.get(path)):
                continue
            if path in live_leaves and live_leaves[path] != value:
                contested.append((_manager_label(entry), path))
    if contested and not force:
        conflicts = contested
        if manager == lastapplied.KUBECTL:
            forgiven = lastapplied.forgiven_conflicts(live, shape, scope, rt.api_version)
            conflicts = [c for c in contested if c[1] not in forgiven]
        if conflicts:
            raise _conflict_error(conflicts, rt)
    # Forced, or every conflict forgiven: the contested fields change hands.
    taken = {path for _, path in contested}

    merged = _merge(live, _without_nulls(config), shape, top=True, scope=scope)
    previous = next((p for e, p in entries if fieldsets.entry_key(e) == own_key), frozenset())
    others: set[Path] = set()
    for entry, paths in entries:
        if fieldsets.entry_key(entry) != own_key:
            others.update(paths - taken)
    dropped = sorted(previous - config_set, key=len)
    for path in dropped:
        if path in others or any(o[: len(path)] == path for o in others):
            continue
        _remove_path(merged, path)

    present = fieldsets.field_set(merged, shape, "all")
    updated: list[tuple[dict[str, Any], FieldSet]] = []
    found = False
    for entry, paths in entries:
        if fieldsets.entry_key(entry) == own_key:
            found = True
            if paths != config_set:
                entry = {**entry, "time": fieldsets.now_rfc3339()}
            entry = {**entry, "apiVersion": rt.api_version}
            updated.append((entry, config_set))
        else:
            updated.append((entry, frozenset(p for p in paths - taken if p in present)))
    if not found:
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": rt.api_version,
            "time": fieldsets.now_rfc3339(),
        }
        if subresource:
            entry["subresource"] = subresource
        updated.append((entry, config_set))
    return merged, fieldsets.render_entries(updated)


def _manager_label(entry: dict[str, Any]) -> str:
    """A manager as conflict messages name it: Update managers with their version.

    The API server's printManager would add the time, but it prints a manager identifier,
    from which the time has been dropped (recorded in ``realk8s-answers.json``).
    """
    label = json.dumps(str(entry.get("manager", "")))
    if entry.get("subresource"):
        label += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == "Update":
        label += f" using {entry.get('apiVersion', '')}"
    return label


def _readable(path: Path) -> str:
    parts = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            parts.append("." + rest)
        elif kind == "k":
            identity = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in identity.items()) + "]")
        elif kind == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


def _conflict_error(conflicts: list[tuple[str, Path]], rt: ResourceType) -> ApiError:
    conflicts = sorted(set(conflicts), key=lambda c: (c[0], c[1]))
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {manager}",
            "field": _readable(path),
        }
        for manager, path in conflicts
    ]
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {manager}: {_readable(path)}"
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}):
            lines.append(f"conflicts with {manager}:")
            lines.extend(f"- {_readable(p)}" for m, p in conflicts if m == manager)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, message, reason="Conflict", details={"causes": causes})


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _merge(live: Any, config: Any, shape: Shape, top: bool = False, scope: str = "all") -> Any:
    if isinstance(config, dict) and isinstance(live, dict) and not shape.is_atomic_map():
        result = dict(live)
        for key, value in config.items():
            if top and key in ("apiVersion", "kind"):
                continue
            if top and key == "metadata":
                result[key] = _merge_metadata(live.get("metadata") or {}, value, shape)
                continue
            if key in live:
                result[key] = _merge(live[key], value, shape.child(key))
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(config, list) and isinstance(live, list):
        kind = shape.list_kind()
        if kind.kind == "map":
            item_shape = shape.items()
            merged = list(live)
            for item in config:
                identity = item_key(item, kind.keys)
                position = next(
                    (
                        i
                        for i, existing in enumerate(merged)
                        if identity is not None and item_key(existing, kind.keys) == identity
                    ),
                    None,
                )
                if position is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[position] = _merge(merged[position], item, item_shape)
            return merged
        if kind.kind == "set":
            return list(live) + [copy.deepcopy(v) for v in config if v not in live]
    return copy.deepcopy(config)


def _merge_metadata(live: dict[str, Any], config: Any, shape: Shape) -> dict[str, Any]:
    result = dict(live)
    if not isinstance(config, dict):
        return result
    meta_shape = shape.child("metadata")
    for key in ("labels", "annotations", "finalizers", "ownerReferences"):
        if key in config:
            if key in live:
                result[key] = _merge(live[key], config[key], meta_shape.child(key))
            else:
                result[key] = copy.deepcopy(config[key])
    for key in ("generateName",):
        if key in config and key not in live:
            result[key] = config[key]
    return result


def _remove_path(obj: Any, path: Path) -> None:
    parent: Any = obj
    for element in path[:-1]:
        parent = _step(parent, element)
        if parent is None:
            return
    last = path[-1]
    kind, _, rest = last.partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
        if not parent and len(path) > 1 and path[-2] == "f:metadata":
            return
    elif kind == "k" and isinstance(parent, list):
        identity = json.loads(rest)
        parent[:] = [
            item
            for item in parent
            if not (isinstance(item, dict) and all(item.get(k) == v for k, v in identity.items()))
        ]
    elif kind == "v" and isinstance(parent, list):
        value = json.loads(rest)
        parent[:] = [item for item in parent if item != value]


def _step(node: Any, element: str) -> Any:
    kind, _, rest = element.partition(":")
    if kind == "f" and isinstance(node, dict):
        child = node.get(rest)
        if isinstance(child, dict | list):
            # Copy on the way down: `merged` may share nested values with the stored object.
            child = copy.copy(child)
            node[rest] = child
        return child
    if kind == "k" and isinstance(node, list):
        identity = json.loads(rest)
        for index, item in enumerate(node):
            if isinstance(item, dict) and all(item.get(k) == v for k, v in identity.items()):
                node[index] = copy.copy(item)
                return node[index]
    return None

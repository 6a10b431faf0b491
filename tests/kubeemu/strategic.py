"""Strategic merge patch for built-in kinds: lists merge by their patchMergeKey.

Implements the directives clients send: `null` deletes a field, `$patch: delete|replace|merge`
on maps and list items, `$deleteFromPrimitiveList/<field>`, `$retainKeys` (honoured) and
`$setElementOrder/<field>` (accepted; the server's order is kept).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeemu.errors import bad_request
from tests.kubeemu.shapes import Shape, item_key


def strategic_merge(original: Any, patch: Any, shape: Shape) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}, Patch: {patch}")
    result = dict(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            current = result.get(field)
            if isinstance(current, list) and isinstance(value, list):
                result[field] = [item for item in current if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child_shape = shape.child(key)
        if isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child_shape)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, child_shape)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], shape: Shape) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    kind = shape.list_kind()
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            copy.deepcopy(item)
            for item in patch
            if not (isinstance(item, dict) and item.get("$patch") == "replace")
        ]
    if kind.kind == "set":
        merged = list(current)
        for item in patch:
            if item not in merged:
                merged.append(copy.deepcopy(item))
        return merged
    if kind.kind != "map":
        return copy.deepcopy(patch)
    item_shape = shape.items()
    merged = list(current)
    for item in patch:
        identity = item_key(item, kind.keys)
        if identity is None:
            merged.append(copy.deepcopy(item))
            continue
        position = next(
            (i for i, existing in enumerate(merged) if item_key(existing, kind.keys) == identity),
            None,
        )
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if position is not None:
                del merged[position]
            continue
        if position is None:
            merged.append(strategic_merge({}, item, item_shape))
        else:
            merged[position] = strategic_merge(merged[position], item, item_shape)
    return merged

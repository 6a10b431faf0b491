"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) over plain JSON values."""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeemu.errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _patch_error(f'invalid JSON pointer "{pointer}"')
    return [_unescape(t) for t in pointer[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    # The API server reports JSON patch failures as 422 with the library's message.
    return ApiError(422, message)


def _index(container: list[Any], token: str, for_insert: bool) -> int:
    if token == "-" and for_insert:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _patch_error(f'invalid array index "{token}"')
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise _patch_error(f"index out of range: {index}")
    return index


def _parent(document: Any, tokens: list[str], op: str) -> Any:
    current = document
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise _patch_error(f'doc is missing path: "/{"/".join(tokens)}": missing value')
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_insert=False)]
        else:
            raise _patch_error(f"{op} operation does not apply: doc is missing path")
    return current


def _get(document: Any, pointer: str) -> Any:
    current = document
    for token in _tokens(pointer):
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_insert=False)]
        else:
            raise _patch_error(f'doc is missing path: "{pointer}": missing value')
    return current


def _add(document: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent = _parent(document, tokens, "add")
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_insert=True), value)
    else:
        raise _patch_error(f'add operation does not apply: doc is missing path: "{pointer}"')
    return document


def _remove(document: Any, pointer: str) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        raise _patch_error("remove operation does not apply: cannot remove the whole document")
    parent = _parent(document, tokens, "remove")
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise _patch_error(f'remove operation does not apply: doc is missing path: "{pointer}"')
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, tokens[-1], for_insert=False)]
    else:
        raise _patch_error(f'remove operation does not apply: doc is missing path: "{pointer}"')
    return document


def _replace(document: Any, pointer: str, value: Any) -> Any:
    tokens = _tokens(pointer)
    if not tokens:
        return value
    parent = _parent(document, tokens, "replace")
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise _patch_error(f'replace operation does not apply: doc is missing key: "{pointer}"')
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent[_index(parent, tokens[-1], for_insert=False)] = value
    else:
        raise _patch_error(f'replace operation does not apply: doc is missing path: "{pointer}"')
    return document


def json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict):
            raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Operation")
        op = operation.get("op")
        path = operation.get("path")
        if not isinstance(path, str):
            raise _patch_error(f"{op} operation does not apply: missing path")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise _patch_error(f"{op} operation does not apply: missing value")
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            result = _add(result, path, value)
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            result = _replace(result, path, value)
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise _patch_error(f"{op} operation does not apply: missing from")
            moved = copy.deepcopy(_get(result, source))
            if op == "move":
                result = _remove(result, source)
            result = _add(result, path, moved)
        elif op == "test":
            if _get(result, path) != value:
                raise _patch_error(f"testing value {path} failed: test failed")
        else:
            raise _patch_error(f"Unexpected kind: {op}")
    return result

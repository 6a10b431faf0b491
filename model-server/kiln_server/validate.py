"""``kiln-server validate``: prove an artifact is the one registered and that it runs.

Fetch (if remote), verify the sha256, load with ONNX Runtime, run one inference on zeros of
the declared shapes, and report the signature as JSON on stdout and in the termination
message (shape documented in ``kiln_server.contract``), which the ModelVersion reconciler
reads from the Pod status.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from kiln_server.contract import TERMINATION_MESSAGE_LIMIT
from kiln_server.fetch import DEFAULT_PVC_ROOT, FetchError, file_sha256, verified_local_or_fetched
from kiln_server.runtime import ModelLoadError, OnnxModel


class ValidationError(Exception):
    """The artifact loads but cannot run one inference."""


def signature_report(uri: str, sha256: str, *, pvc_root: str = DEFAULT_PVC_ROOT) -> dict[str, Any]:
    """The success document; raises FetchError, ModelLoadError or ValidationError."""
    with tempfile.TemporaryDirectory(prefix="kiln-validate-") as scratch:
        path = verified_local_or_fetched(uri, sha256, scratch, pvc_root=pvc_root)
        size = os.path.getsize(path)
        digest = file_sha256(path)
        model = OnnxModel(path, device="cpu", threads=1)
        try:
            model.run(model.output_names, model.zero_feeds(1))
        except Exception as error:
            raise ValidationError(f"one inference on zeros failed: {error}") from error
        opset = model_opset(path)
    return {
        "ok": True,
        "sha256": digest,
        "sizeBytes": size,
        "opset": opset,
        "inputs": [spec.to_json() for spec in model.signature.inputs],
        "outputs": [spec.to_json() for spec in model.signature.outputs],
    }


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValidationError("truncated protobuf in model file")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """Top-level (field number, wire type, value) of a protobuf message."""
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(data, position)
            yield number, wire, value
        elif wire == 2:
            length, position = _varint(data, position)
            yield number, wire, data[position : position + length]
            position += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, data[position : position + size]
            position += size
        else:
            raise ValidationError(f"unexpected protobuf wire type {wire} in model file")


# ModelProto.opset_import is field 8; OperatorSetIdProto has domain = 1, version = 2.
_OPSET_IMPORT, _DOMAIN, _VERSION = 8, 1, 2


def model_opset(path: str) -> int | None:
    """The default-domain opset of an ONNX file, read without the onnx package."""
    with open(path, "rb") as source:
        data = source.read()
    for number, wire, value in _fields(data):
        if number != _OPSET_IMPORT or wire != 2 or not isinstance(value, bytes):
            continue
        domain, version = "", None
        for inner_number, _, inner in _fields(value):
            if inner_number == _DOMAIN and isinstance(inner, bytes):
                domain = inner.decode("utf-8", "replace")
            elif inner_number == _VERSION and isinstance(inner, int):
                version = inner
        if domain in ("", "ai.onnx"):
            return version
    return None


def compact(document: dict[str, Any], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """JSON under ``limit`` bytes: long tensor lists are cut and marked truncated."""
    text = json.dumps(document, separators=(",", ":"))
    trimmed = dict(document)
    while len(text.encode()) > limit - 64:
        longest = max(("inputs", "outputs"), key=lambda k: len(trimmed.get(k, [])))
        items = trimmed.get(longest, [])
        if not items:
            # Shorten the error until its JSON fits: a character may take up to 12 bytes
            # once escaped, so a cut by characters alone cannot know where to stop.
            error = str(document.get("error", ""))[:2000]
            while True:
                trimmed = {"ok": document.get("ok"), "error": error}
                text = json.dumps(trimmed, separators=(",", ":"))
                if len(text.encode()) <= limit - 64 or not error:
                    break
                error = error[: len(error) * 3 // 4]
            break
        trimmed[longest] = items[: len(items) // 2]
        trimmed["truncated"] = True
        text = json.dumps(trimmed, separators=(",", ":"))
    return text


def write_termination_message(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as target:
            target.write(text)
    except OSError:
        # Outside Kubernetes the path may not exist; stdout/stderr still carry the report.
        pass


def run_validate(uri: str, sha256: str, termination_path: str, pvc_root: str) -> int:
    try:
        document = signature_report(uri, sha256, pvc_root=pvc_root)
    except (FetchError, ModelLoadError, ValidationError, OSError) as error:
        failure = {"ok": False, "error": str(error)}
        text = compact(failure)
        print(text, file=sys.stderr)
        write_termination_message(termination_path, text)
        return 1
    text = compact(document)
    print(text)
    write_termination_message(termination_path, text)
    return 0

"""``kiln-server validate``: prove an artifact is the one registered and that it runs.

Fetch (if remote; transient failures retried with backoff), verify the sha256, check that
the file is an ONNX model, load it with ONNX Runtime, run one inference on zeros of the
declared shapes, and, given a baseline, check it as the serving pods will (valid
``kiln.baseline/v1``, its features fitting the model's input). Report the signature, or the
reason of a refusal (``contract.VALIDATION_REASONS``), as JSON on stdout and in the
termination message (shape documented in ``kiln_server.contract``), which the ModelVersion
reconciler reads from the Pod status.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from kiln_server import contract
from kiln_server.baseline import BaselineError, load_baseline
from kiln_server.contract import TERMINATION_MESSAGE_LIMIT
from kiln_server.drift import DriftMonitor, drift_input
from kiln_server.fetch import (
    DEFAULT_ATTEMPTS,
    DEFAULT_PVC_ROOT,
    DigestMismatch,
    FetchError,
    file_sha256,
    verified_local_or_fetched,
)
from kiln_server.runtime import ModelLoadError, OnnxModel


class ValidationError(Exception):
    """The artifact is refused; ``reason`` is one of ``contract.VALIDATION_REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def signature_report(
    uri: str,
    sha256: str,
    *,
    pvc_root: str = DEFAULT_PVC_ROOT,
    baseline_uri: str | None = None,
    baseline_sha256: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> dict[str, Any]:
    """The success document; raises ValidationError with the reason of a refusal."""
    with tempfile.TemporaryDirectory(prefix="kiln-validate-") as scratch:
        path = _fetched(uri, sha256, scratch, pvc_root, "model.onnx", attempts)
        size = os.path.getsize(path)
        digest = file_sha256(path)
        opset = _onnx_opset(path, uri)
        try:
            model = OnnxModel(path, device="cpu", threads=1)
        except ModelLoadError as error:
            raise ValidationError(contract.LOAD_FAILED, str(error)) from error
        try:
            model.run(model.output_names, model.zero_feeds(1))
        except Exception as error:  # onnxruntime raises several unrelated types
            raise ValidationError(
                contract.INFERENCE_FAILED, f"one inference on zeros failed: {error}"
            ) from error
        report: dict[str, Any] = {
            "ok": True,
            "sha256": digest,
            "sizeBytes": size,
            "opset": opset,
            "inputs": [spec.to_json() for spec in model.signature.inputs],
            "outputs": [spec.to_json() for spec in model.signature.outputs],
        }
        if baseline_uri:
            baseline_path = _fetched(
                baseline_uri, baseline_sha256, scratch, pvc_root, "baseline.json", attempts
            )
            report["baseline"] = _checked_baseline(baseline_path, model)
    return report


def _fetched(
    uri: str, sha256: str | None, scratch: str, pvc_root: str, filename: str, attempts: int
) -> str:
    try:
        return verified_local_or_fetched(
            uri, sha256, scratch, pvc_root=pvc_root, filename=filename, attempts=attempts
        )
    except DigestMismatch as error:
        raise ValidationError(contract.DIGEST_MISMATCH, str(error)) from error
    except (FetchError, OSError) as error:
        raise ValidationError(contract.FETCH_FAILED, str(error)) from error


def _checked_baseline(path: str, model: OnnxModel) -> dict[str, Any]:
    """What the serving pods will check of ``baseline.json``, checked now."""
    try:
        baseline = load_baseline(path)
        name, columns = drift_input(baseline, model.signature.inputs)
        DriftMonitor(baseline, name, columns, window_rows=1)
    except BaselineError as error:
        raise ValidationError(contract.BASELINE_INVALID, f"baseline: {error}") from error
    return {"input": name, "features": len(baseline.features)}


def _onnx_opset(path: str, uri: str) -> int | None:
    """The model's opset; NotOnnx unless the file is a ModelProto with a graph."""
    try:
        with open(path, "rb") as source:
            data = source.read()
        if not any(number == _GRAPH and wire == 2 for number, wire, _ in _fields(data)):
            raise ValidationError(contract.NOT_ONNX, "no ONNX graph in the file")
        return _opset_of(data)
    except ValidationError as error:
        raise ValidationError(contract.NOT_ONNX, f"{uri} is not an ONNX model: {error}") from error


class _Truncated(ValidationError):
    def __init__(self, message: str) -> None:
        super().__init__(contract.NOT_ONNX, message)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise _Truncated("truncated protobuf")
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
            if position + length > len(data):
                raise _Truncated("truncated protobuf")
            yield number, wire, data[position : position + length]
            position += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, wire, data[position : position + size]
            position += size
        else:
            raise _Truncated(f"unexpected protobuf wire type {wire}")


# ModelProto.graph is field 7 and opset_import field 8; OperatorSetIdProto has
# domain = 1, version = 2.
_GRAPH, _OPSET_IMPORT, _DOMAIN, _VERSION = 7, 8, 1, 2


def model_opset(path: str) -> int | None:
    """The default-domain opset of an ONNX file, read without the onnx package."""
    with open(path, "rb") as source:
        return _opset_of(source.read())


def _opset_of(data: bytes) -> int | None:
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
                if "reason" in document:
                    trimmed["reason"] = document["reason"]
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


def run_validate(
    uri: str,
    sha256: str,
    termination_path: str,
    pvc_root: str,
    *,
    baseline_uri: str | None = None,
    baseline_sha256: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> int:
    try:
        document = signature_report(
            uri,
            sha256,
            pvc_root=pvc_root,
            baseline_uri=baseline_uri,
            baseline_sha256=baseline_sha256,
            attempts=attempts,
        )
    except ValidationError as error:
        failure = {"ok": False, "reason": error.reason, "error": str(error)}
        text = compact(failure)
        print(text, file=sys.stderr)
        write_termination_message(termination_path, text)
        return contract.VALIDATION_FAILED_EXIT_CODE
    text = compact(document)
    print(text)
    write_termination_message(termination_path, text)
    return 0

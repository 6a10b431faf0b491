"""The result protocol: what a training container reports through its termination message.

The container writes one JSON document to ``/dev/termination-log``::

    {"metrics": {"accuracy": 0.97}, "artifact": "model.onnx",
     "sha256": "<64 hex digits>", "baseline": "baseline.json"}

``artifact`` and ``baseline`` are paths relative to the run's output directory
(``KILN_OUTPUT_DIR``), absolute paths inside it, or URIs. The operator reads the document
from the Pod status, so training images need no Kiln library. Anything wrong with it is an
:class:`InvalidResult` whose message says exactly what, for the run's condition.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Final

from kiln_operator.api.trainingjob import MAX_LOCATION

#: The kubelet keeps at most 4096 bytes of a termination message.
MAX_RESULT_BYTES: Final = 4096
MAX_METRICS: Final = 64
MAX_METRIC_NAME: Final = 63

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")
_SUPPORTED_SCHEMES: Final = ("pvc://", "s3://", "http://", "https://")


class InvalidResult(ValueError):
    """The termination message is not a valid result; the message says what is wrong."""


@dataclass(frozen=True)
class RunResult:
    """A validated result, locations resolved to URIs."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifact_uri: str = ""
    sha256: str = ""
    baseline_uri: str | None = None


def parse_result(message: str | None, output_uri: str, output_dir: str | None) -> RunResult:
    """Validate a termination message and resolve its paths against the run's output.

    ``output_uri`` is the run's own output location (``pvc://claim/path/<run>``,
    ``s3://bucket/prefix/<run>``); ``output_dir`` is where it is mounted in the pod, if it is.
    """
    if message is None or not message.strip():
        raise InvalidResult(
            "the training container wrote no result: write a JSON document with metrics, "
            "artifact and sha256 to /dev/termination-log"
        )
    try:
        size = len(message.encode())
    except UnicodeEncodeError:
        raise InvalidResult("the result is not UTF-8 text: write a JSON document") from None
    if size > MAX_RESULT_BYTES:
        raise InvalidResult(f"the result is {size} bytes; at most {MAX_RESULT_BYTES} are allowed")
    try:
        document = json.loads(message)
    except ValueError as error:
        raise InvalidResult(f"the result is not valid JSON: {error}") from None
    except RecursionError:
        # 4 KB of brackets is enough to exhaust the parser's recursion limit.
        raise InvalidResult("the result is nested too deeply to be a result document") from None
    if not isinstance(document, dict):
        raise InvalidResult(f"the result must be a JSON object, not {_json_type(document)}")
    metrics = _metrics(document.get("metrics"))
    artifact = document.get("artifact")
    if not isinstance(artifact, str) or not artifact:
        raise InvalidResult(
            "the result needs 'artifact': the model's path relative to KILN_OUTPUT_DIR, or a URI"
            + _got(artifact, "artifact" in document)
        )
    digest = document.get("sha256")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise InvalidResult(
            "the result needs 'sha256': the artifact's SHA-256 as 64 hexadecimal digits"
            + _got(digest, "sha256" in document)
        )
    baseline = document.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise InvalidResult(
            "'baseline' must be a path or URI of the training-data statistics"
            + _got(baseline, True)
        )
    return RunResult(
        metrics=metrics,
        artifact_uri=resolve_location(artifact, output_uri, output_dir, "artifact"),
        sha256=digest.lower(),
        baseline_uri=(
            resolve_location(baseline, output_uri, output_dir, "baseline") if baseline else None
        ),
    )


def resolve_location(location: str, output_uri: str, output_dir: str | None, what: str) -> str:
    """A URI for ``location``: kept if it is one, else resolved inside the run's output."""
    if len(location) > MAX_LOCATION:
        raise InvalidResult(f"'{what}' is longer than {MAX_LOCATION} characters")
    if _URI.match(location):
        if not location.startswith(_SUPPORTED_SCHEMES):
            raise InvalidResult(
                f"'{what}' {location!r} has an unsupported scheme; "
                "use pvc://, s3://, http:// or https://"
            )
        if any(c.isspace() for c in location):
            raise InvalidResult(f"'{what}' {location!r} contains whitespace")
        return location
    relative = location
    if location.startswith("/"):
        root = (output_dir or "").rstrip("/")
        if not root or not (location + "/").startswith(root + "/"):
            where = f"inside KILN_OUTPUT_DIR ({root})" if root else "relative"
            raise InvalidResult(f"'{what}' {location!r} must be a URI or a path {where}")
        relative = location[len(root) :].lstrip("/")
    normalised = posixpath.normpath(relative) if relative else ""
    if not normalised or normalised == "." or normalised.startswith(".."):
        raise InvalidResult(f"'{what}' {location!r} must name a file inside the run's output")
    if any(c.isspace() for c in normalised):
        raise InvalidResult(f"'{what}' {location!r} contains whitespace")
    resolved = f"{output_uri.rstrip('/')}/{normalised}"
    if len(resolved) > MAX_LOCATION:
        raise InvalidResult(
            f"'{what}' resolves to {resolved[:80]!r}..., longer than {MAX_LOCATION} characters"
        )
    return resolved


def _metrics(raw: Any) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidResult(f"'metrics' must be an object of name -> number, not {_json_type(raw)}")
    if len(raw) > MAX_METRICS:
        raise InvalidResult(f"'metrics' has {len(raw)} entries; at most {MAX_METRICS} are allowed")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if not name or len(name) > MAX_METRIC_NAME:
            raise InvalidResult(f"metric name {name!r} must have 1 to {MAX_METRIC_NAME} characters")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidResult(f"metric {name!r} must be a number, not {_json_type(value)}")
        if not math.isfinite(value):
            raise InvalidResult(f"metric {name!r} must be a finite number, got {value}")
        metrics[name] = float(value)
    return metrics


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _got(value: Any, present: bool) -> str:
    if not present:
        return " (missing)"
    return f" (got {_json_type(value)}{': ' + repr(value)[:80] if isinstance(value, str) else ''})"

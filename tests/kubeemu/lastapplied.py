"""kubectl's last-applied annotation under server-side apply, as kube-apiserver keeps it.

A client-side ``kubectl apply`` stores the object it applied in the
``kubectl.kubernetes.io/last-applied-configuration`` annotation and writes as the field
manager ``kubectl-client-side-apply``. When such an object is later applied server-side
under the field manager ``kubectl`` (what ``kubectl apply --server-side`` sends), the API
server eases the move from one to the other (apimachinery's managedfields
``lastAppliedManager`` and ``lastAppliedUpdater``):

- a conflict on a field whose live value the annotation holds is forgiven: if every conflict
  is, the apply goes on as if forced; otherwise only the unforgiven conflicts are refused;
- after the apply, an object that still carries a non-empty annotation gets it rewritten to
  the applied configuration as sent (Go's JSON, keys sorted, without the annotation itself),
  or loses it where that would take the annotations past their 256 KiB limit.

Under any other field manager, or on an object without the annotation, neither happens:
an object never gains the annotation from a server-side apply.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

from tests.kubeemu import fieldsets
from tests.kubeemu.fieldsets import Path
from tests.kubeemu.metadata import annotation_causes
from tests.kubeemu.shapes import Shape

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# The field manager `kubectl apply --server-side` uses unless told another.
KUBECTL = "kubectl"


def forgiven_conflicts(
    live: dict[str, Any], shape: Shape, scope: str, api_version: str
) -> set[Path]:
    """The leaves whose value in ``live``'s last-applied annotation equals the live one.

    An annotation that is missing, is no JSON object or names another apiVersion forgives
    nothing, as on the API server.
    """
    text = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return set()
    try:
        last_applied = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(last_applied, dict) or last_applied.get("apiVersion") != api_version:
        return set()
    live_leaves = fieldsets.leaves(live, shape, scope)
    return {
        path
        for path, value in fieldsets.leaves(last_applied, shape, scope).items()
        if not fieldsets.is_interior(value) and path in live_leaves and live_leaves[path] == value
    }


def rewrite(merged: dict[str, Any], applied: Any, manager: str) -> None:
    """Bring ``merged``'s annotation up to date with the configuration ``applied`` as sent."""
    if manager != KUBECTL or not isinstance(applied, dict):
        return
    meta = merged.get("metadata")
    if not isinstance(meta, dict):
        return
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict) or not annotations.get(LAST_APPLIED):
        return
    # The merge may share these with the stored object: write copies.
    merged["metadata"] = meta = dict(meta)
    meta["annotations"] = annotations = dict(annotations)
    configuration = copy.deepcopy(applied)
    applied_meta = configuration.get("metadata")
    if isinstance(applied_meta, dict) and isinstance(applied_meta.get("annotations"), dict):
        applied_meta["annotations"].pop(LAST_APPLIED, None)
    annotations[LAST_APPLIED] = go_json(configuration) + "\n"
    if annotation_causes(annotations):
        del annotations[LAST_APPLIED]
        if not annotations:
            del meta["annotations"]


def go_json(value: Any) -> str:
    """``value`` as Go's encoding/json writes a decoded JSON document: compact, map keys
    sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, and every number a float64 (the
    API server decodes an applied configuration without ``UseNumber``)."""
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_string(k)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _go_float(value)
    return _go_string(str(value))


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_string(text: str) -> str:
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif ord(char) < 0x20 or char in "<>&\u2028\u2029":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _go_float(number: int | float) -> str:
    try:
        value = float(number)
    except OverflowError:
        return str(number)
    text = repr(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        # Python's shortest repr is in exponent form here too; Go drops a leading zero of a
        # negative exponent (1e-07 -> 1e-7).
        return text.replace("e-0", "e-")
    if "e" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")

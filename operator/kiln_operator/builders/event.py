"""Kubernetes Events about a Kiln object, as ``kubectl describe`` shows them."""

from __future__ import annotations

import hashlib
from typing import Any

from kiln_operator.conditions import EventType

COMPONENT = "kiln-operator"


def desired_event(
    involved: dict[str, Any],
    type_: EventType,
    reason: str,
    message: str,
    now: str,
    name: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event on ``involved`` (a full object with apiVersion, kind, metadata),
    named ``name`` (default: :func:`aggregated_event_name`)."""
    meta = involved["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name or aggregated_event_name(involved, type_, reason),
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": type_,
        # The API server's limits for an event's reason and note.
        "reason": reason[:128],
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def aggregated_event_name(involved: dict[str, Any], type_: EventType, reason: str) -> str:
    """The one Event name for (object, type, reason): repeats raise that Event's count."""
    meta = involved["metadata"]
    key = f"{meta['uid']}/{type_}/{reason}".encode()
    return f"{meta['name'][:230]}.{hashlib.sha256(key).hexdigest()[:16]}"

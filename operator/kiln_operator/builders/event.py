"""Kubernetes Events about a Kiln object, as ``kubectl describe`` shows them."""

from __future__ import annotations

import secrets
from typing import Any, Literal

EventType = Literal["Normal", "Warning"]
COMPONENT = "kiln-operator"


def desired_event(
    involved: dict[str, Any],
    type_: EventType,
    reason: str,
    message: str,
    now: str,
    name_suffix: str | None = None,
) -> dict[str, Any]:
    """A core/v1 Event on ``involved`` (a full object with apiVersion, kind, metadata).

    Event names only need to be unique; ``name_suffix`` defaults to a random one.
    """
    meta = involved["metadata"]
    suffix = name_suffix or secrets.token_hex(8)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name'][:230]}.{suffix}",
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

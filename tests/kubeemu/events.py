"""One Event resource, two APIs: core `v1` events and `events.k8s.io/v1` views of them.

A real API server stores events once and serves both groups by converting field names
(`involvedObject` is `regarding`, `message` is `note`, ...). An event an operator posts to
one group is therefore listed, watched and selected through the other as well.
"""

from __future__ import annotations

from typing import Any

# events.k8s.io/v1 field <-> core/v1 field
_FIELDS = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)
_SHARED = ("eventTime", "series", "reportingInstance", "action", "reason", "related", "type")

EVENTS_API = "events.k8s.io/v1"


def to_events_api(core: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {"apiVersion": EVENTS_API, "kind": "Event"}
    converted["metadata"] = core.get("metadata", {})
    for new, old in _FIELDS:
        if old in core:
            converted[new] = core[old]
    for name in _SHARED:
        if name in core:
            converted[name] = core[name]
    return converted


def to_core(event: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {"apiVersion": "v1", "kind": "Event"}
    converted["metadata"] = event.get("metadata", {})
    for new, old in _FIELDS:
        if new in event:
            converted[old] = event[new]
    for name in _SHARED:
        if name in event:
            converted[name] = event[name]
    return converted

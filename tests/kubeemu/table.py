"""`kubectl get`'s Table format, with CRD printer columns evaluated server-side."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.kubeemu.jsonpath import find
from tests.kubeemu.resources import PrinterColumn, ResourceType

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an appropriate "
    "name automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "priority": 0,
}
_AGE = PrinterColumn(
    "Age",
    "date",
    ".metadata.creationTimestamp",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: the AGE column's wording."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def _age(value: Any) -> Any:
    if not isinstance(value, str):
        return "<unknown>"
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - moment).total_seconds())


def _printed(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _cell(column: PrinterColumn, obj: dict[str, Any]) -> Any:
    results = find(column.json_path, obj)
    if not results:
        return None
    value = results[0]
    if column.type == "date":
        return _age(value)
    if column.type == "string":
        return _printed(value)
    if column.type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if column.type == "boolean" and isinstance(value, bool):
        return value
    return _printed(value)


def _columns(rt: ResourceType) -> tuple[PrinterColumn, ...]:
    return rt.printer_columns if rt.printer_columns else (_AGE,)


# Built-in kinds print computed columns (kubectl's familiar READY "1/2" and the like).
Computed = tuple[str, str, Callable[[dict[str, Any]], Any]]


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(pod: dict[str, Any]) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        reason = (state.get("waiting") or state.get("terminated") or {}).get("reason")
        if reason:
            return str(reason)
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _restarts(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def _replicas(obj: dict[str, Any], field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def _job_status(job: dict[str, Any]) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return "Running"


def _ports(service: dict[str, Any]) -> str:
    ports = (service.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


BUILTIN_COLUMNS: dict[tuple[str, str], tuple[Computed, ...]] = {
    ("", "pods"): (
        ("Ready", "string", _pod_ready),
        ("Status", "string", _pod_status),
        ("Restarts", "integer", _restarts),
    ),
    ("apps", "deployments"): (
        (
            "Ready",
            "string",
            lambda d: f"{_replicas(d, 'readyReplicas')}/{(d.get('spec') or {}).get('replicas', 1)}",
        ),
        ("Up-to-date", "integer", lambda d: _replicas(d, "updatedReplicas")),
        ("Available", "integer", lambda d: _replicas(d, "availableReplicas")),
    ),
    ("batch", "jobs"): (
        ("Status", "string", _job_status),
        (
            "Completions",
            "string",
            lambda j: f"{_replicas(j, 'succeeded')}/{(j.get('spec') or {}).get('completions', 1)}",
        ),
    ),
    ("", "services"): (
        ("Type", "string", lambda s: (s.get("spec") or {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", lambda s: (s.get("spec") or {}).get("clusterIP", "<none>")),
        ("Port(s)", "string", _ports),
    ),
    ("", "namespaces"): (("Status", "string", lambda n: (n.get("status") or {}).get("phase")),),
    ("", "configmaps"): (("Data", "integer", lambda c: len(c.get("data") or {})),),
}


def render(
    rt: ResourceType, items: list[dict[str, Any]], list_meta: dict[str, Any], include: str
) -> dict[str, Any]:
    columns = _columns(rt)
    computed = () if rt.is_custom else BUILTIN_COLUMNS.get(rt.storage_key, ())
    definitions = [_NAME_COLUMN]
    definitions += [
        {"name": name, "type": kind, "format": "", "description": name, "priority": 0}
        for name, kind, _ in computed
    ]
    definitions += [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in columns
    ]
    rows = []
    for obj in items:
        cells = [obj["metadata"]["name"]] + [value(obj) for _, _, value in computed]
        row: dict[str, Any] = {"cells": cells + [_cell(c, obj) for c in columns]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_meta),
        "columnDefinitions": definitions,
        "rows": rows,
    }

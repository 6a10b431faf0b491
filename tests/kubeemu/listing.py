"""Lists: which fields each resource can be selected on, and continue tokens for pages.

A continue token records the snapshot's resourceVersion and the last key returned, as etcd
pages do, so every page of one list reads the same snapshot.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.kubeemu.errors import bad_request
from tests.kubeemu.resources import ResourceType
from tests.kubeemu.store import Obj

FIELD_SELECTABLE: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("events.k8s.io", "events"): frozenset(
        {
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        }
    ),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
    ("batch", "jobs"): frozenset({"status.successful"}),
}
ALWAYS_SELECTABLE = frozenset({"metadata.name", "metadata.namespace"})


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


def sort_key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def encode_continue(rv: int, key: tuple[str, str]) -> str:
    """A continue token: the snapshot's version and the last key listed, as etcd pages."""
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def decode_continue(token: str) -> tuple[int, tuple[str, str]] | None:
    if not token:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = decoded["start"]
        return int(decoded["rv"]), (str(namespace), str(name))
    except (ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid: could not decode continue token") from None


def as_list_items(rt: ResourceType, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as a list response carries them: a built-in kind's lack apiVersion and kind.

    A real server encodes a typed list whose items have no TypeMeta; custom resources are
    unstructured and keep theirs (recorded from kube-apiserver v1.28.7, ``list_items``).
    """
    if rt.is_custom:
        return items
    return [{k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in items]

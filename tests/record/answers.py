"""Requests whose answers the emulator once got wrong, and the real server's answers.

Each function below sends requests to an API server and reduces what it answered to the
part that matters (no uids, resourceVersions or timestamps). ``python -m
tests.record.answers`` runs them on a real kube-apiserver and writes
``tests/cluster/reference/realk8s-answers.json``; ``tests/cluster/test_real_server_answers.py``
runs the same functions on the selected backend and compares.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.record import real_server
from tests.support.backends import install_crds
from tests.support.kube import ApiError, KubeClient, Obj

REFERENCE = Path(__file__).resolve().parents[1] / "cluster" / "reference"
OUTPUT = REFERENCE / "realk8s-answers.json"
CRD_API = "apiextensions.k8s.io/v1"


def widget_crd() -> Obj:
    document: Obj = yaml.safe_load((REFERENCE / "widget-crd.yaml").read_text())
    return document


def crd_as_created(client: KubeClient, namespace: str) -> Obj:
    """A new CRD is stored before its controllers accept its names."""
    crd = copy.deepcopy(widget_crd())
    crd["metadata"]["name"] = "gizmos.ref.example.dev"
    crd["spec"]["names"] = {"kind": "Gizmo", "plural": "gizmos"}
    created = client.create(crd)
    client.delete(CRD_API, "CustomResourceDefinition", "gizmos.ref.example.dev")
    return {
        "status": created["status"],
        "finalizers": created["metadata"].get("finalizers"),
    }


def _list_shape(listing: Obj) -> Obj:
    return {"list": sorted(listing), "item": sorted(listing["items"][0])}


def built_in_list_items(client: KubeClient, namespace: str) -> Obj:
    """Items of a built-in kind's list carry no apiVersion or kind."""
    client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, namespace)
    return _list_shape(client.list("v1", "ConfigMap", namespace))


def custom_resource_list_items(client: KubeClient, namespace: str) -> Obj:
    """Items of a custom resource's list keep theirs."""
    api_version = "ref.example.dev/v1alpha1"
    client.create(
        {
            "apiVersion": api_version,
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"model": "m"},
        },
        namespace,
    )
    return _list_shape(client.list(api_version, "Widget", namespace))


QUANTITIES = {
    "nvidia.com/gpu": 2,
    "cpu": 1.5,
    "memory": "1024Mi",
    "ephemeral-storage": "1e3",
    "example.com/b": "2000m",
    "example.com/c": "1000000",
    "example.com/d": "1.0Gi",
    "example.com/g": "1536Mi",
    "example.com/x": "1.5e9",
    "example.com/y": "0.5Mi",
}


def pod_quantities(client: KubeClient, namespace: str) -> Obj:
    """Resource quantities are read back in canonical form, as strings."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "q"},
        "spec": {
            "schedulingGates": [{"name": "kiln.dev/test-holds-this-pod"}],
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1",
                    "resources": {"limits": QUANTITIES, "requests": QUANTITIES},
                }
            ],
        },
    }
    created = client.create(pod, namespace)
    resources: Obj = created["spec"]["containers"][0]["resources"]
    return resources


def job_status_counts(client: KubeClient, namespace: str) -> Obj:
    """Zero counts of a Job's status vanish (omitempty), a zero ``ready`` stays."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1"}],
                }
            },
        },
    }
    client.create(job, namespace)
    counts = {"active": 0, "succeeded": 0, "failed": 0, "ready": 0}
    for _ in range(10):
        current = client.get("batch/v1", "Job", "j", namespace)
        current["status"] = dict(counts)
        try:
            written = client.replace(current, subresource="status")
        except ApiError as error:
            if error.status != 409:
                raise
            continue
        return {k: v for k, v in written["status"].items() if k in counts}
    raise AssertionError("the Job's status kept changing under the write")


def protected_group_crd(client: KubeClient, namespace: str) -> Obj:
    """A CRD in a ``*.k8s.io`` group needs the ``api-approved.kubernetes.io`` annotation
    (the Gateway API's do); with it, it is accepted."""
    crd = copy.deepcopy(widget_crd())
    crd["metadata"]["name"] = "sprockets.gateway.example.k8s.io"
    crd["spec"]["group"] = "gateway.example.k8s.io"
    crd["spec"]["names"] = {"kind": "Sprocket", "plural": "sprockets"}
    try:
        client.create(crd)
        refused: Obj = {}
    except ApiError as error:
        details = error.body.get("details") or {}
        refused = {
            "code": error.status,
            "reason": error.body.get("reason"),
            "message": error.body.get("message"),
            "causes": details.get("causes"),
        }
        crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, test only"}
        client.create(crd)
    client.delete(CRD_API, "CustomResourceDefinition", crd["metadata"]["name"])
    return {"without_annotation": refused, "with_annotation": "created"}


ANSWERS: dict[str, Callable[[KubeClient, str], Any]] = {
    "crd_as_created": crd_as_created,
    "built_in_list_items": built_in_list_items,
    "custom_resource_list_items": custom_resource_list_items,
    "pod_quantities": pod_quantities,
    "job_status_counts": job_status_counts,
    "protected_group_crd": protected_group_crd,
}


def main() -> int:
    recorded: dict[str, Any] = {}
    with real_server() as client:
        install_crds(client, [widget_crd()])
        for index, (name, ask) in enumerate(ANSWERS.items()):
            namespace = f"record-{index}"
            client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
            recorded[name] = ask(client, namespace)
            print(f"{name}: {json.dumps(recorded[name])[:120]}")
    OUTPUT.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

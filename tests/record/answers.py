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


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
WIDGET_API = "ref.example.dev/v1alpha1"
# kubectl's field managers: `kubectl apply` writes as the first, `--server-side` as the second.
CLIENT_SIDE = "kubectl-client-side-apply"
KUBECTL = "kubectl"


def _widget(name: str, labels: Obj | None = None, **spec: Any) -> Obj:
    meta: Obj = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": meta, "spec": spec}


def _last_applied_of(obj: Obj) -> str:
    """The annotation's value in kubectl's form: the object as applied, compact JSON with
    sorted keys and a newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


def _created_by_client_side_apply(
    client: KubeClient, namespace: str, obj: Obj, last_applied: Obj | None
) -> None:
    """Create ``obj`` as ``kubectl apply`` creates a new object: a POST under kubectl's
    client-side field manager, carrying the last-applied annotation (of ``last_applied``;
    none when it is None)."""
    created = copy.deepcopy(obj)
    if last_applied is not None:
        created["metadata"].setdefault("annotations", {})[LAST_APPLIED] = _last_applied_of(
            last_applied
        )
    client.create(created, namespace, fieldManager=CLIENT_SIDE)


def _applied(client: KubeClient, namespace: str, obj: Obj, manager: str) -> Obj:
    """A server-side apply of ``obj`` (which names no namespace) under ``manager``; a
    refusal is reduced to its code, reason, message and causes."""
    try:
        answer = client.patch(
            obj["apiVersion"],
            obj["kind"],
            obj["metadata"]["name"],
            namespace,
            obj,
            patch_type="apply",
            field_manager=manager,
        )
    except ApiError as error:
        return {"refused": _refusal(error)}
    return {"annotations": answer["metadata"].get("annotations")}


def _refusal(error: ApiError) -> Obj:
    details = error.body.get("details") or {}
    return {
        "code": error.status,
        "reason": error.body.get("reason"),
        "message": error.body.get("message"),
        "causes": details.get("causes"),
    }


def _stored(client: KubeClient, namespace: str, obj: Obj) -> Obj:
    stored = client.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace)
    return {
        "annotations": stored["metadata"].get("annotations"),
        "spec": stored.get("spec"),
        "data": stored.get("data"),
        "managers": sorted(
            [entry["manager"], entry["operation"]]
            for entry in stored["metadata"].get("managedFields") or []
        ),
    }


def kubectl_server_side_apply_after_client_side_apply(client: KubeClient, namespace: str) -> Obj:
    """``kubectl apply --server-side`` (field manager ``kubectl``) over an object that a
    client-side ``kubectl apply`` created: the fields it changes are taken from the
    client-side manager without a conflict where the last-applied annotation holds their
    live value, and the annotation is rewritten to the applied configuration."""
    created = _widget("w", labels={"app": "a"}, model="m", replicas=2)
    _created_by_client_side_apply(client, namespace, created, last_applied=created)
    changed = _widget("w", labels={"app": "a"}, model="m2", replicas=3)
    changed["metadata"]["annotations"] = {"note": "a<b & c>d, \u00e9"}
    changed["spec"]["uri"] = "https://example.com/?a=1&b=2"
    answer = _applied(client, namespace, changed, KUBECTL)
    again = _applied(client, namespace, changed, KUBECTL)
    return {"apply": answer, "again": again, "stored": _stored(client, namespace, changed)}


def server_side_apply_by_another_manager_after_client_side_apply(
    client: KubeClient, namespace: str
) -> Obj:
    """Under any field manager but ``kubectl`` the annotation is left as it is, and the
    client-side manager's fields conflict as any other manager's do."""
    created = _widget("w", model="m", replicas=2)
    _created_by_client_side_apply(client, namespace, created, last_applied=created)
    conflicting = _applied(client, namespace, _widget("w", model="m2"), "kiln-recorder")
    labelled = _applied(client, namespace, _widget("w", labels={"app": "a"}), "kiln-recorder")
    return {
        "conflicting": conflicting,
        "labelled": labelled,
        "stored": _stored(client, namespace, created),
    }


def kubectl_server_side_apply_without_last_applied(client: KubeClient, namespace: str) -> Obj:
    """An object without the annotation does not gain one, and its client-side manager's
    fields conflict."""
    created = _widget("w", model="m", replicas=2)
    _created_by_client_side_apply(client, namespace, created, last_applied=None)
    conflicting = _applied(client, namespace, _widget("w", model="m2"), KUBECTL)
    labelled = _applied(client, namespace, _widget("w", labels={"app": "a"}, model="m"), KUBECTL)
    return {
        "conflicting": conflicting,
        "labelled": labelled,
        "stored": _stored(client, namespace, created),
    }


def kubectl_server_side_apply_with_a_stale_last_applied(client: KubeClient, namespace: str) -> Obj:
    """Only a field whose live value the annotation holds is taken without a conflict: a
    conflict on one it holds otherwise is refused (and the annotation kept)."""
    created = _widget("w", model="m", replicas=2)
    _created_by_client_side_apply(
        client, namespace, created, last_applied=_widget("w", model="old", replicas=2)
    )
    answer = _applied(client, namespace, _widget("w", model="m2", replicas=3), KUBECTL)
    return {"apply": answer, "stored": _stored(client, namespace, created)}


def kubectl_server_side_apply_to_config_maps(client: KubeClient, namespace: str) -> Obj:
    """The same for a built-in kind, and for an apply that creates an object: the
    annotation it brings is rewritten too."""
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    original = {**config_map, "data": {"a": "1"}}
    _created_by_client_side_apply(client, namespace, original, last_applied=original)
    changed = _applied(client, namespace, {**config_map, "data": {"a": "2"}}, KUBECTL)
    created = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "created", "annotations": {LAST_APPLIED: "{}", "team": "t"}},
        "data": {"a": "1"},
    }
    return {"changed": changed, "created": _applied(client, namespace, created, KUBECTL)}


def kubectl_server_side_apply_past_the_annotations_limit(client: KubeClient, namespace: str) -> Obj:
    """An annotation that would take the annotations past 256 KiB is dropped instead (the
    apply itself succeeds), from a built-in kind and a custom resource alike."""
    big = "x" * (256 * 1024)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    _created_by_client_side_apply(
        client, namespace, {**config_map, "data": {"a": "1"}}, last_applied=config_map
    )
    widget = _widget("w", model="m")
    _created_by_client_side_apply(client, namespace, widget, last_applied=widget)
    answers = {
        "config_map": _applied(client, namespace, {**config_map, "data": {"b": big}}, KUBECTL),
        "widget": _applied(client, namespace, _widget("w", model="m", uri="s3://" + big), KUBECTL),
    }
    stored_map = client.get("v1", "ConfigMap", "c", namespace)
    stored_widget = client.get(WIDGET_API, "Widget", "w", namespace)
    return {
        **answers,
        "applied": [len(stored_map["data"]["b"]), len(stored_widget["spec"]["uri"])],
    }


ANSWERS: dict[str, Callable[[KubeClient, str], Any]] = {
    "crd_as_created": crd_as_created,
    "built_in_list_items": built_in_list_items,
    "custom_resource_list_items": custom_resource_list_items,
    "pod_quantities": pod_quantities,
    "job_status_counts": job_status_counts,
    "protected_group_crd": protected_group_crd,
    "kubectl_server_side_apply_after_client_side_apply": (
        kubectl_server_side_apply_after_client_side_apply
    ),
    "server_side_apply_by_another_manager_after_client_side_apply": (
        server_side_apply_by_another_manager_after_client_side_apply
    ),
    "kubectl_server_side_apply_without_last_applied": (
        kubectl_server_side_apply_without_last_applied
    ),
    "kubectl_server_side_apply_with_a_stale_last_applied": (
        kubectl_server_side_apply_with_a_stale_last_applied
    ),
    "kubectl_server_side_apply_to_config_maps": kubectl_server_side_apply_to_config_maps,
    "kubectl_server_side_apply_past_the_annotations_limit": (
        kubectl_server_side_apply_past_the_annotations_limit
    ),
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

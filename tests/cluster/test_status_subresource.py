"""The status subresource splits who writes what, in both directions.

Users and GitOps tools write the main resource; the operator writes ``/status``. On a kind
that declares the subresource, status sent to the main resource is dropped and everything
but status sent to ``/status`` is dropped, for PUT and PATCH alike, and status writes never
bump ``generation``.
"""

from __future__ import annotations

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, unscheduled_pod, widget
from tests.support.kube import KubeClient

pytestmark = pytest.mark.usefixtures("widget_crd")


def test_status_in_a_create_is_dropped(kube: KubeClient, namespace: str) -> None:
    manifest = widget("w")
    manifest["status"] = {"phase": "Lying"}
    created = kube.create(manifest, namespace)
    assert "status" not in created


def test_put_on_the_main_resource_keeps_the_stored_status(kube: KubeClient, namespace: str) -> None:
    kube.create(widget("w"), namespace)
    kube.patch(
        WIDGET_API, WIDGET, "w", namespace, {"status": {"phase": "Ready"}}, subresource="status"
    )
    current = kube.get(WIDGET_API, WIDGET, "w", namespace)
    current["status"] = {"phase": "Overwritten"}
    current["spec"]["replicas"] = 4
    replaced = kube.replace(current)
    assert replaced["status"] == {"phase": "Ready"}
    assert replaced["spec"]["replicas"] == 4


def test_put_on_status_keeps_the_stored_spec_and_metadata_labels(
    kube: KubeClient, namespace: str
) -> None:
    created = kube.create(widget("w", replicas=2), namespace)
    created["status"] = {"phase": "Running"}
    created["spec"]["replicas"] = 9
    created["metadata"]["labels"] = {"sneaky": "yes"}
    written = kube.replace(created, subresource="status")
    assert written["status"] == {"phase": "Running"}
    assert written["spec"]["replicas"] == 2
    assert "labels" not in written["metadata"]
    assert written["metadata"]["generation"] == 1


def test_status_writes_are_visible_on_the_main_resource(kube: KubeClient, namespace: str) -> None:
    kube.create(widget("w"), namespace)
    conditions = [{"type": "Ready", "status": "True", "reason": "Serving"}]
    kube.patch(
        WIDGET_API,
        WIDGET,
        "w",
        namespace,
        {"status": {"conditions": conditions}},
        subresource="status",
    )
    assert kube.get(WIDGET_API, WIDGET, "w", namespace)["status"] == {"conditions": conditions}


def test_built_in_pod_status_is_written_through_its_subresource(
    kube: KubeClient, namespace: str
) -> None:
    pod = kube.create(unscheduled_pod("p"), namespace)
    pod["status"] = {**pod.get("status", {}), "phase": "Running", "podIP": "10.244.0.7"}
    ignored = kube.replace(pod)
    assert ignored.get("status", {}).get("phase") != "Running"
    current = kube.get("v1", "Pod", "p", namespace)
    current["status"] = {**current.get("status", {}), "phase": "Running", "podIP": "10.244.0.7"}
    written = kube.replace(current, subresource="status")
    assert written["status"]["phase"] == "Running"
    assert written["status"]["podIP"] == "10.244.0.7"

"""Every patch flavour the operator and its users send, with the API server's semantics.

- JSON merge patch (RFC 7386): maps merge, ``null`` deletes, lists are replaced whole;
- JSON patch (RFC 6902): ordered operations, a failed ``test`` rejects the whole patch;
- strategic merge patch on built-in kinds: lists merge by their patch merge key
  (containers and env by name, ports by containerPort), ``$patch: delete`` removes;
  custom resources refuse it;
- server-side apply: creates, re-applying the same configuration writes nothing, a field
  dropped from a manager's configuration is removed, and two managers conflict on a field
  until one forces.
"""

from __future__ import annotations

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, config_map, widget
from tests.support.kube import ApiError, KubeClient, Obj

pytestmark = pytest.mark.usefixtures("widget_crd")


def deployment(name: str) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "kiln/server:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        },
                        {"name": "sidecar", "image": "busybox:1"},
                    ]
                },
            },
        },
    }


def containers(obj: Obj) -> list[Obj]:
    found: list[Obj] = obj["spec"]["template"]["spec"]["containers"]
    return found


# -- JSON merge patch --------------------------------------------------------------------


def test_merge_patch_merges_maps_and_null_deletes_a_key(kube: KubeClient, namespace: str) -> None:
    kube.create(config_map("cfg", keep="1", drop="2"), namespace)
    patched = kube.patch("v1", "ConfigMap", "cfg", namespace, {"data": {"drop": None, "add": "3"}})
    assert patched["data"] == {"keep": "1", "add": "3"}


def test_merge_patch_replaces_lists_whole(kube: KubeClient, namespace: str) -> None:
    kube.create(widget("w", steps=[1, 2, 3]), namespace)
    patched = kube.patch(WIDGET_API, WIDGET, "w", namespace, {"spec": {"steps": [9]}})
    assert patched["spec"]["steps"] == [9]


# -- JSON patch --------------------------------------------------------------------------


def test_json_patch_applies_operations_in_order(kube: KubeClient, namespace: str) -> None:
    kube.create(widget("w", steps=[1, 2]), namespace)
    patched = kube.patch(
        WIDGET_API,
        WIDGET,
        "w",
        namespace,
        [
            {"op": "add", "path": "/spec/steps/-", "value": 3},
            {"op": "replace", "path": "/spec/replicas", "value": 4},
            {"op": "remove", "path": "/spec/steps/0"},
            {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        ],
        patch_type="json",
    )
    assert patched["spec"]["steps"] == [2, 3]
    assert patched["spec"]["replicas"] == 4
    assert patched["metadata"]["labels"] == {"x": "y"}


def test_json_patch_with_a_failing_test_operation_changes_nothing(
    kube: KubeClient, namespace: str
) -> None:
    created = kube.create(widget("w", replicas=1), namespace)
    with pytest.raises(ApiError) as caught:
        kube.patch(
            WIDGET_API,
            WIDGET,
            "w",
            namespace,
            [
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "test", "path": "/spec/model", "value": "not-the-model"},
            ],
            patch_type="json",
        )
    assert caught.value.status == 422
    assert kube.get(WIDGET_API, WIDGET, "w", namespace) == created


# -- strategic merge patch ---------------------------------------------------------------


def test_strategic_merge_patch_merges_containers_by_name(kube: KubeClient, namespace: str) -> None:
    kube.create(deployment("web"), namespace)
    patched = kube.patch(
        "apps/v1",
        "Deployment",
        "web",
        namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "server", "image": "kiln/server:2"}]}}
            }
        },
        patch_type="strategic",
    )
    by_name = {c["name"]: c for c in containers(patched)}
    assert by_name["server"]["image"] == "kiln/server:2"
    assert by_name["server"]["ports"][0]["containerPort"] == 8080
    assert by_name["sidecar"]["image"] == "busybox:1"


def test_strategic_merge_patch_merges_env_by_name(kube: KubeClient, namespace: str) -> None:
    kube.create(deployment("web"), namespace)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                        }
                    ]
                }
            }
        }
    }
    patched = kube.patch("apps/v1", "Deployment", "web", namespace, patch, patch_type="strategic")
    env = {e["name"]: e["value"] for e in containers(patched)[0]["env"]}
    assert env == {"A": "1", "B": "20", "C": "3"}


def test_strategic_merge_patch_delete_directive_removes_a_list_entry(
    kube: KubeClient, namespace: str
) -> None:
    kube.create(deployment("web"), namespace)
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}
    }
    patched = kube.patch("apps/v1", "Deployment", "web", namespace, patch, patch_type="strategic")
    assert [c["name"] for c in containers(patched)] == ["server"]


def test_strategic_merge_patch_on_a_custom_resource_is_unsupported(
    kube: KubeClient, namespace: str
) -> None:
    kube.create(widget("w"), namespace)
    with pytest.raises(ApiError) as caught:
        kube.patch(
            WIDGET_API, WIDGET, "w", namespace, {"spec": {"replicas": 2}}, patch_type="strategic"
        )
    assert caught.value.status == 415
    assert caught.value.reason == "UnsupportedMediaType"


# -- server-side apply -------------------------------------------------------------------


def applied_widget(name: str, namespace: str, **spec: object) -> Obj:
    manifest = widget(name, **spec)
    manifest["metadata"]["namespace"] = namespace
    return manifest


def test_server_side_apply_creates_the_object(kube: KubeClient, namespace: str) -> None:
    applied = kube.apply(applied_widget("ssa", namespace, replicas=2), field_manager="kiln")
    assert applied["spec"] == {"model": "m", "replicas": 2, "mode": "Canary"}
    managers = {(e["manager"], e["operation"]) for e in applied["metadata"]["managedFields"]}
    assert ("kiln", "Apply") in managers


def test_reapplying_the_same_configuration_writes_nothing(kube: KubeClient, namespace: str) -> None:
    first = kube.apply(applied_widget("ssa", namespace, replicas=2), field_manager="kiln")
    second = kube.apply(applied_widget("ssa", namespace, replicas=2), field_manager="kiln")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert second["metadata"]["generation"] == 1


def test_a_field_dropped_from_the_applied_configuration_is_removed(
    kube: KubeClient, namespace: str
) -> None:
    kube.apply(
        applied_widget("ssa", namespace, uri="pvc://models/a", steps=[1]), field_manager="kiln"
    )
    reapplied = kube.apply(applied_widget("ssa", namespace, steps=[1]), field_manager="kiln")
    assert "uri" not in reapplied["spec"]
    assert reapplied["spec"]["steps"] == [1]
    assert reapplied["metadata"]["generation"] == 2


def test_a_field_owned_by_another_manager_survives_an_apply_without_it(
    kube: KubeClient, namespace: str
) -> None:
    kube.apply(applied_widget("ssa", namespace), field_manager="kiln")
    kube.patch(WIDGET_API, WIDGET, "ssa", namespace, {"spec": {"uri": "s3://b/k"}})
    reapplied = kube.apply(applied_widget("ssa", namespace, replicas=3), field_manager="kiln")
    assert reapplied["spec"]["uri"] == "s3://b/k"
    assert reapplied["spec"]["replicas"] == 3


def test_applying_a_field_another_manager_applied_conflicts_until_forced(
    kube: KubeClient, namespace: str
) -> None:
    kube.apply(applied_widget("ssa", namespace, replicas=2), field_manager="first")
    with pytest.raises(ApiError) as caught:
        kube.apply(applied_widget("ssa", namespace, replicas=5), field_manager="second")
    assert caught.value.status == 409
    assert caught.value.reason == "Conflict"
    assert 'conflict with "first"' in caught.value.message
    assert ".spec.replicas" in caught.value.message
    forced = kube.apply(
        applied_widget("ssa", namespace, replicas=5), field_manager="second", force=True
    )
    assert forced["spec"]["replicas"] == 5


def test_server_side_apply_of_a_built_in_merges_containers_by_name(
    kube: KubeClient, namespace: str
) -> None:
    manifest = deployment("web")
    manifest["metadata"]["namespace"] = namespace
    kube.apply(manifest, field_manager="kiln")
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "kiln/server:3"
    reapplied = kube.apply(manifest, field_manager="kiln")
    assert [c["image"] for c in containers(reapplied)] == ["kiln/server:3", "busybox:1"]
    assert reapplied["metadata"]["generation"] == 2

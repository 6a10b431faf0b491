"""Every patch type: JSON patch, merge patch, strategic merge patch and server-side apply."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.kubeemu.api import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    Api,
)
from tests.kubeemu.conftest import AS_TEST, api_with_namespace, served
from tests.kubeemu.errors import ApiError
from tests.kubeemu.lastapplied import LAST_APPLIED, go_json
from tests.kubeemu.options import WriteOptions
from tests.kubeemu.resources import ResourceType


@pytest.fixture
def api() -> Api:
    return api_with_namespace(widgets=True)


def deployment(**pod_spec: Any) -> dict[str, Any]:
    containers = [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "side:1"},
    ]
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers, **pod_spec},
            },
        },
    }


def patched(api: Api, rt: ResourceType, kind: str, body: Any, manager: str = "test") -> Any:
    result, _ = api.patch(rt, "ns", "web", kind, body, "", WriteOptions(manager=manager))
    return result


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers


def test_json_patch_applies_operations_in_order(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    api.create(deployments, "ns", deployment(), AS_TEST)
    result = patched(
        api,
        deployments,
        JSON_PATCH,
        [
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels", "value": {"tier": "web"}},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
        ],
    )
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["labels"] == {"tier": "web"}
    assert [c["name"] for c in containers_of(result)] == ["app"]


def test_a_failed_json_patch_test_changes_nothing(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    created = api.create(deployments, "ns", deployment(), AS_TEST)
    with pytest.raises(ApiError) as caught:
        patched(
            api, deployments, JSON_PATCH, [{"op": "test", "path": "/spec/replicas", "value": 9}]
        )
    assert caught.value.code == 422
    current = api.get(deployments, "ns", "web")
    assert current["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_merge_patch_replaces_lists_and_null_deletes(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    created = deployment()
    created["spec"]["minReadySeconds"] = 5
    api.create(deployments, "ns", created, AS_TEST)
    body = {
        "spec": {
            "minReadySeconds": None,
            "template": {"spec": {"containers": [{"name": "only", "image": "x"}]}},
        }
    }
    result = patched(api, deployments, MERGE_PATCH, body)
    assert "minReadySeconds" not in result["spec"]
    assert [c["name"] for c in containers_of(result)] == ["only"]


def test_strategic_merge_patch_merges_containers_and_env_by_name(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    api.create(deployments, "ns", deployment(), AS_TEST)
    body = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
                    "containers": [
                        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}
                    ],
                }
            }
        }
    }
    result = patched(api, deployments, STRATEGIC_PATCH, body)
    app, side = containers_of(result)
    assert (app["image"], side["image"]) == ("app:2", "side:1")
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert result["metadata"]["generation"] == 2


def test_strategic_merge_patch_directives(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    api.create(deployments, "ns", deployment(), AS_TEST)
    delete_side = {
        "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}
    }
    result = patched(api, deployments, STRATEGIC_PATCH, delete_side)
    assert [c["name"] for c in containers_of(result)] == ["app"]
    labels = {"$patch": "replace", "labels": {"app": "web", "tier": "front"}}
    replace_metadata = {"spec": {"template": {"metadata": labels}}}
    result = patched(api, deployments, STRATEGIC_PATCH, replace_metadata)
    assert result["spec"]["template"]["metadata"] == {"labels": {"app": "web", "tier": "front"}}


def test_strategic_merge_patch_merges_finalizers_as_a_set(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    api.create(configmaps, "ns", {"metadata": {"name": "web", "finalizers": ["a/b"]}}, AS_TEST)
    result = patched(api, configmaps, STRATEGIC_PATCH, {"metadata": {"finalizers": ["c/d"]}})
    assert result["metadata"]["finalizers"] == ["a/b", "c/d"]
    dropped = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/b"]}}
    result = patched(api, configmaps, STRATEGIC_PATCH, dropped)
    assert result["metadata"]["finalizers"] == ["c/d"]


def test_strategic_merge_patch_is_refused_for_custom_resources(api: Api) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    api.create(widgets, "ns", {"metadata": {"name": "web"}, "spec": {"model": "m"}}, AS_TEST)
    with pytest.raises(ApiError) as caught:
        patched(api, widgets, STRATEGIC_PATCH, {"spec": {"replicas": 2}})
    assert caught.value.code == 415
    assert caught.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


def applied(api: Api, rt: ResourceType, config: Any, manager: str, force: bool = False) -> Any:
    result, _ = api.patch(
        rt, "ns", "web", APPLY_PATCH, config, "", WriteOptions(manager=manager, force=force)
    )
    return result


def config_map(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": data}


def a_widget() -> dict[str, Any]:
    return {
        "apiVersion": "ref.example.dev/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": "web"},
        "spec": {"model": "m", "replicas": 2},
    }


def test_apply_creates_then_reapplying_changes_nothing(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    first = applied(api, configmaps, config_map(a="1"), "op")
    second = applied(api, configmaps, config_map(a="1"), "op")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    [entry] = second["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("op", "Apply")
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}


def test_apply_removes_fields_the_manager_no_longer_applies(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    applied(api, configmaps, config_map(a="1", b="2"), "op")
    result = applied(api, configmaps, config_map(a="1"), "op")
    assert result["data"] == {"a": "1"}


def test_apply_keeps_fields_another_manager_set(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    applied(api, configmaps, config_map(a="1"), "op")
    patched(api, configmaps, MERGE_PATCH, {"data": {"b": "2"}}, manager="human")
    result = applied(api, configmaps, config_map(a="1"), "op")
    assert result["data"] == {"a": "1", "b": "2"}


def test_apply_conflicts_with_another_managers_value_unless_forced(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    applied(api, configmaps, config_map(a="1"), "op")
    with pytest.raises(ApiError) as caught:
        applied(api, configmaps, config_map(a="2"), "rival")
    assert caught.value.code == 409
    assert caught.value.message == 'Apply failed with 1 conflict: conflict with "op": .data.a'
    result = applied(api, configmaps, config_map(a="2"), "rival", force=True)
    assert result["data"] == {"a": "2"}
    owners = {e["manager"]: e["fieldsV1"] for e in result["metadata"]["managedFields"]}
    assert "f:a" not in owners["op"]["f:data"]
    assert "f:a" in owners["rival"]["f:data"]


def test_apply_merges_keyed_lists_of_built_in_kinds(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", **deployment()}
    applied(api, deployments, config, "op")
    patched(
        api,
        deployments,
        STRATEGIC_PATCH,
        {"spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "d"}]}}}},
        manager="human",
    )
    result = applied(api, deployments, config, "op")
    assert [c["name"] for c in containers_of(result)] == ["app", "side", "debug"]
    fields = next(e for e in result["metadata"]["managedFields"] if e["manager"] == "op")
    containers = fields["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"name":"app"}' in containers


def test_apply_to_the_status_subresource_takes_only_status(api: Api) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    api.create(widgets, "ns", {"metadata": {"name": "web"}, "spec": {"model": "m"}}, AS_TEST)
    config = {
        "apiVersion": "ref.example.dev/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": "web"},
        "spec": {"model": "other"},
        "status": {"phase": "Ready"},
    }
    result, _ = api.patch(widgets, "ns", "web", APPLY_PATCH, config, "status", AS_TEST)
    assert result["status"] == {"phase": "Ready"}
    assert result["spec"]["model"] == "m"


def test_apply_requires_a_field_manager(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    with pytest.raises(ApiError) as caught:
        api.patch(configmaps, "ns", "web", APPLY_PATCH, config_map(), "", WriteOptions())
    assert caught.value.code == 400


def test_a_conflict_with_an_update_manager_names_its_version_but_not_its_time(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    api.create(configmaps, "ns", {"metadata": {"name": "web"}, "data": {"a": "1"}}, AS_TEST)
    with pytest.raises(ApiError) as caught:
        applied(api, configmaps, config_map(a="2"), "op")
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "test" using v1: .data.a'
    )
    [cause] = caught.value.status()["details"]["causes"]
    assert cause == {
        "reason": "FieldManagerConflict",
        "message": 'conflict with "test" using v1',
        "field": ".data.a",
    }


def test_apply_replaces_a_label_selector_whole_but_merges_a_service_selector(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", **deployment()}
    first = applied(api, deployments, config, "op")
    fields = first["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    assert fields["f:selector"] == {}
    services = served(api, "", "v1", "services")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    created = applied(api, services, service, "op")
    fields = created["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
    assert fields["f:selector"] == {".": {}, "f:app": {}}


# -- kubectl's last-applied annotation --------------------------------------------------------

CLIENT_SIDE = WriteOptions(manager="kubectl-client-side-apply")


def created_by_client_side_apply(
    api: Api, rt: ResourceType, obj: dict[str, Any], last_applied: dict[str, Any] | None
) -> None:
    """Create ``obj`` as a client-side ``kubectl apply`` does, annotated with ``last_applied``."""
    created = copy.deepcopy(obj)
    if last_applied is not None:
        annotation = json.dumps(last_applied, sort_keys=True, separators=(",", ":")) + "\n"
        created["metadata"].setdefault("annotations", {})[LAST_APPLIED] = annotation
    api.create(rt, "ns", created, CLIENT_SIDE)


def test_kubectl_server_side_apply_rewrites_the_last_applied_annotation_to_what_it_applied(
    api: Api,
) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    created_by_client_side_apply(api, configmaps, config_map(a="1"), config_map(a="1"))
    changed = config_map(a="2")
    changed["metadata"]["annotations"] = {"note": "<&>"}
    result = applied(api, configmaps, changed, "kubectl")
    assert result["data"] == {"a": "2"}
    assert result["metadata"]["annotations"] == {
        LAST_APPLIED: '{"apiVersion":"v1","data":{"a":"2"},"kind":"ConfigMap",'
        '"metadata":{"annotations":{"note":"\\u003c\\u0026\\u003e"},"name":"web"}}\n',
        "note": "<&>",
    }


def test_server_side_apply_under_another_manager_keeps_the_last_applied_annotation(
    api: Api,
) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    created_by_client_side_apply(api, configmaps, config_map(a="1"), config_map(a="1"))
    before = api.get(configmaps, "ns", "web")["metadata"]["annotations"]
    result = applied(api, configmaps, {**config_map(), "data": {"b": "2"}}, "op")
    assert result["metadata"]["annotations"] == before


def test_server_side_apply_does_not_add_a_last_applied_annotation(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    created_by_client_side_apply(api, configmaps, config_map(a="1"), last_applied=None)
    result = applied(api, configmaps, config_map(a="1", b="2"), "kubectl")
    assert result["data"] == {"a": "1", "b": "2"}
    assert "annotations" not in result["metadata"]


def test_kubectl_takes_fields_the_last_applied_annotation_holds_without_a_conflict(
    api: Api,
) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    widget = a_widget()
    created_by_client_side_apply(api, widgets, widget, last_applied=widget)
    changed = copy.deepcopy(widget)
    changed["spec"] = {"model": "m2", "replicas": 3}
    result = applied(api, widgets, changed, "kubectl")
    assert result["spec"]["model"] == "m2"
    owners = {e["manager"]: e["fieldsV1"] for e in result["metadata"]["managedFields"]}
    assert owners["kubectl"]["f:spec"] == {".": {}, "f:model": {}, "f:replicas": {}}
    assert "f:model" not in owners["kubectl-client-side-apply"]["f:spec"]


def test_kubectl_still_conflicts_on_fields_the_last_applied_annotation_holds_otherwise(
    api: Api,
) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    widget = a_widget()
    stale = copy.deepcopy(widget)
    stale["spec"]["model"] = "old"
    created_by_client_side_apply(api, widgets, widget, last_applied=stale)
    changed = copy.deepcopy(widget)
    changed["spec"] = {"model": "m2", "replicas": 3}
    with pytest.raises(ApiError) as caught:
        applied(api, widgets, changed, "kubectl")
    # Only the unforgiven conflict is named; .spec.replicas would have been taken.
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using '
        "ref.example.dev/v1alpha1: .spec.model"
    )


def test_a_last_applied_annotation_past_the_annotations_limit_is_dropped(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    created_by_client_side_apply(api, configmaps, config_map(a="1"), config_map(a="1"))
    result = applied(api, configmaps, config_map(a="1", b="x" * 256 * 1024), "kubectl")
    assert len(result["data"]["b"]) == 256 * 1024
    assert "annotations" not in result["metadata"]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param({"b": 1, "a": [True, None]}, '{"a":[true,null],"b":1}', id="keys-sorted"),
        pytest.param(
            "<a & b> \u2028\x08\n", '"\\u003ca \\u0026 b\\u003e \\u2028\\u0008\\n"', id="escapes"
        ),
        pytest.param("é", '"é"', id="utf-8-as-is"),
        pytest.param(1.0, "1", id="whole-float"),
        pytest.param(1e20, "100000000000000000000", id="large-float"),
        pytest.param(1e21, "1e+21", id="exponent"),
        pytest.param(1.5e-7, "1.5e-7", id="small-exponent"),
        pytest.param(2**53 + 1, "9007199254740992", id="int-as-float64"),
    ],
)
def test_the_last_applied_annotation_is_encoded_as_go_encodes_json(
    value: Any, encoded: str
) -> None:
    assert go_json(value) == encoded

"""Create, read, update and delete, with the metadata a real API server assigns.

Covers built-in kinds (ConfigMap) and custom resources (Widget) alike: server-assigned
metadata, ``generateName``, optimistic concurrency on update, ``generation`` bumped only
by spec changes, no write (and no new resourceVersion) for a no-op update, namespaces that
must exist, and deletion.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, config_map, widget
from tests.support.kube import ApiError, KubeClient

pytestmark = pytest.mark.usefixtures("widget_crd")

UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_create_assigns_uid_timestamp_resource_version_and_generation(
    kube: KubeClient, namespace: str
) -> None:
    created = kube.create(widget("w1"), namespace)
    meta = created["metadata"]
    assert UID.match(meta["uid"])
    assert RFC3339.match(meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    assert meta["generation"] == 1
    assert meta["namespace"] == namespace
    assert kube.get(WIDGET_API, WIDGET, "w1", namespace) == created


def test_resource_versions_increase_with_every_write(kube: KubeClient, namespace: str) -> None:
    first = kube.create(config_map("a", x="1"), namespace)
    second = kube.create(config_map("b", x="1"), namespace)
    third = kube.patch("v1", "ConfigMap", "a", namespace, {"data": {"x": "2"}})
    versions = [int(o["metadata"]["resourceVersion"]) for o in (first, second, third)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3


def test_generate_name_yields_a_unique_name_with_that_prefix(
    kube: KubeClient, namespace: str
) -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}}
    names = {kube.create(manifest, namespace)["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"cfg-[a-z0-9]{5}", name) for name in names)


def test_create_in_a_missing_namespace_is_not_found(kube: KubeClient) -> None:
    with pytest.raises(ApiError) as caught:
        kube.create(config_map("orphan"), "no-such-namespace")
    assert caught.value.status == 404
    assert caught.value.reason == "NotFound"
    assert caught.value.message == 'namespaces "no-such-namespace" not found'


def test_replace_with_the_current_resource_version_succeeds(
    kube: KubeClient, namespace: str
) -> None:
    created = kube.create(config_map("cfg", key="old"), namespace)
    created["data"]["key"] = "new"
    replaced = kube.replace(created)
    assert replaced["data"] == {"key": "new"}
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )


def test_replace_with_a_stale_resource_version_conflicts(kube: KubeClient, namespace: str) -> None:
    stale = kube.create(config_map("cfg", key="old"), namespace)
    kube.patch("v1", "ConfigMap", "cfg", namespace, {"data": {"key": "other"}})
    stale["data"]["key"] = "mine"
    with pytest.raises(ApiError) as caught:
        kube.replace(stale)
    assert caught.value.status == 409
    assert caught.value.reason == "Conflict"
    assert caught.value.message == (
        'Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert kube.get("v1", "ConfigMap", "cfg", namespace)["data"] == {"key": "other"}


def test_a_no_op_update_does_not_write(kube: KubeClient, namespace: str) -> None:
    created = kube.create(widget("same", replicas=2), namespace)
    replaced = kube.replace(created)
    patched = kube.patch(WIDGET_API, WIDGET, "same", namespace, {"spec": {"replicas": 2}})
    assert replaced["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_generation_counts_spec_changes_only(kube: KubeClient, namespace: str) -> None:
    kube.create(widget("gen"), namespace)
    labelled = kube.patch(
        WIDGET_API, WIDGET, "gen", namespace, {"metadata": {"labels": {"team": "a"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    with_status = kube.patch(
        WIDGET_API, WIDGET, "gen", namespace, {"status": {"phase": "Ok"}}, subresource="status"
    )
    assert with_status["metadata"]["generation"] == 1
    respecced = kube.patch(WIDGET_API, WIDGET, "gen", namespace, {"spec": {"replicas": 3}})
    assert respecced["metadata"]["generation"] == 2
    again = kube.patch(WIDGET_API, WIDGET, "gen", namespace, {"spec": {"mode": "Immediate"}})
    assert again["metadata"]["generation"] == 3


def test_name_and_uid_cannot_be_changed_by_an_update(kube: KubeClient, namespace: str) -> None:
    created = kube.create(config_map("fixed"), namespace)
    created["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ApiError) as caught:
        kube.replace(created)
    # A real server refuses a different uid as a precondition failure (409 Conflict).
    assert caught.value.status == 409
    assert kube.get("v1", "ConfigMap", "fixed", namespace)["metadata"]["uid"] != (
        "00000000-0000-0000-0000-000000000000"
    )


def test_delete_removes_the_object(kube: KubeClient, namespace: str) -> None:
    kube.create(widget("gone"), namespace)
    kube.delete(WIDGET_API, WIDGET, "gone", namespace)
    assert kube.get_or_none(WIDGET_API, WIDGET, "gone", namespace) is None
    with pytest.raises(ApiError) as caught:
        kube.delete(WIDGET_API, WIDGET, "gone", namespace)
    assert caught.value.status == 404
    assert caught.value.message == 'widgets.ref.example.dev "gone" not found'


def test_list_returns_only_the_namespace_asked_for(
    kube: KubeClient, namespace: str, make_namespace: Callable[[], str]
) -> None:
    other = make_namespace()
    kube.create(widget("here"), namespace)
    kube.create(widget("there"), other)
    names = [w["metadata"]["name"] for w in kube.list(WIDGET_API, WIDGET, namespace)["items"]]
    assert names == ["here"]
    everywhere = {
        (w["metadata"]["namespace"], w["metadata"]["name"])
        for w in kube.list(WIDGET_API, WIDGET)["items"]
    }
    assert {(namespace, "here"), (other, "there")} <= everywhere


def test_list_pages_with_limit_and_continue(kube: KubeClient, namespace: str) -> None:
    for index in range(7):
        kube.create(config_map(f"page-{index}"), namespace)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = kube.list(
            "v1", "ConfigMap", namespace, limit=3, **({"continue": token} if token else {})
        )
        pages += 1
        seen.extend(item["metadata"]["name"] for item in page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
    assert sorted(n for n in seen if n.startswith("page-")) == [f"page-{i}" for i in range(7)]
    assert pages >= 3


def test_dry_run_create_validates_but_stores_nothing(kube: KubeClient, namespace: str) -> None:
    answer = kube.create(widget("dry"), namespace, dryRun="All")
    assert answer["spec"]["replicas"] == 1  # defaulted as a real create would be
    assert kube.get_or_none(WIDGET_API, WIDGET, "dry", namespace) is None


def test_a_body_namespace_different_from_the_url_is_a_bad_request(
    kube: KubeClient, namespace: str
) -> None:
    manifest = config_map("cfg")
    manifest["metadata"]["namespace"] = "somewhere-else"
    path = kube.resource("v1", "ConfigMap").collection_path(namespace)
    status, body = kube.raw("POST", path, manifest)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )


def test_an_invalid_name_is_rejected(kube: KubeClient, namespace: str) -> None:
    with pytest.raises(ApiError) as caught:
        kube.create(config_map("Not_A_Name"), namespace)
    assert caught.value.status == 422
    (cause,) = caught.value.body["details"]["causes"]
    assert (cause["field"], cause["reason"]) == ("metadata.name", "FieldValueInvalid")
    assert cause["message"].startswith(
        'Invalid value: "Not_A_Name": a lowercase RFC 1123 subdomain must consist of'
    )


def test_a_missing_name_is_required(kube: KubeClient, namespace: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
    with pytest.raises(ApiError) as caught:
        kube.create(manifest, namespace)
    assert caught.value.status == 422
    assert caught.value.message == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )


def test_a_patch_carrying_a_stale_resource_version_conflicts(
    kube: KubeClient, namespace: str
) -> None:
    created = kube.create(widget("w"), namespace)
    kube.patch(WIDGET_API, WIDGET, "w", namespace, {"spec": {"replicas": 2}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(ApiError) as caught:
        kube.patch(WIDGET_API, WIDGET, "w", namespace, {**stale, "spec": {"replicas": 3}})
    assert caught.value.status == 409
    assert caught.value.reason == "Conflict"
    assert kube.get(WIDGET_API, WIDGET, "w", namespace)["spec"]["replicas"] == 2


def test_patching_a_missing_object_is_not_found(kube: KubeClient, namespace: str) -> None:
    with pytest.raises(ApiError) as caught:
        kube.patch(WIDGET_API, WIDGET, "absent", namespace, {"spec": {"replicas": 2}})
    assert caught.value.status == 404
    assert caught.value.message == 'widgets.ref.example.dev "absent" not found'


def test_delete_collection_removes_only_the_selected_objects(
    kube: KubeClient, namespace: str
) -> None:
    kube.create(config_map("run-1", labels={"run": "old"}), namespace)
    kube.create(config_map("run-2", labels={"run": "old"}), namespace)
    kube.create(config_map("keep", labels={"run": "new"}), namespace)
    path = kube.resource("v1", "ConfigMap").collection_path(namespace)
    kube.request("DELETE", path, query={"labelSelector": "run=old"})
    left = kube.list("v1", "ConfigMap", namespace, label_selector="run")["items"]
    assert [item["metadata"]["name"] for item in left] == ["keep"]


def test_the_deleted_event_carries_the_last_state(kube: KubeClient, namespace: str) -> None:
    created = kube.create(widget("w", replicas=4), namespace)
    kube.delete(WIDGET_API, WIDGET, "w", namespace)
    events = kube.watch(
        WIDGET_API,
        WIDGET,
        namespace,
        resource_version=created["metadata"]["resourceVersion"],
        timeout=5,
    )
    event = next(iter(events))
    assert event["type"] == "DELETED"
    assert event["object"]["spec"]["replicas"] == 4
    assert int(event["object"]["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )

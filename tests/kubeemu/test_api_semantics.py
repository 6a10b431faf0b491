"""Metadata semantics of every write: resourceVersion, generation, names, namespaces, dry run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kubeemu.api import MERGE_PATCH, Api
from tests.kubeemu.conftest import AS_TEST, REFERENCE, api_with_namespace, load_yaml, served
from tests.kubeemu.errors import ApiError
from tests.kubeemu.options import DeleteOptions, WriteOptions


@pytest.fixture
def api() -> Api:
    return api_with_namespace(widgets=True)


def widget(name: str = "w", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"model": "m", **spec}}


def refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def test_resource_versions_are_increasing_integers(api: Api) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    first = api.create(widgets, "ns", widget("a"), AS_TEST)
    second = api.create(widgets, "ns", widget("b"), AS_TEST)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_generation_counts_spec_changes_only(api: Api) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    created = api.create(widgets, "ns", widget(), AS_TEST)
    assert created["metadata"]["generation"] == 1
    labelled, _ = api.patch(
        widgets, "ns", "w", MERGE_PATCH, {"metadata": {"labels": {"a": "b"}}}, "", AS_TEST
    )
    assert labelled["metadata"]["generation"] == 1
    assert labelled["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    respecced, _ = api.patch(
        widgets, "ns", "w", MERGE_PATCH, {"spec": {"replicas": 4}}, "", AS_TEST
    )
    assert respecced["metadata"]["generation"] == 2


def test_an_update_that_changes_nothing_is_not_written(api: Api) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    created = api.create(widgets, "ns", widget(), AS_TEST)
    same = api.update(widgets, "ns", "w", created, "", AS_TEST)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    again, _ = api.patch(widgets, "ns", "w", MERGE_PATCH, {"spec": {"model": "m"}}, "", AS_TEST)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert api.store.resource_version == int(created["metadata"]["resourceVersion"])


def test_generate_name_appends_five_characters(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    made = api.create(configmaps, "ns", {"metadata": {"generateName": "cfg-"}}, AS_TEST)
    assert made["metadata"]["name"].startswith("cfg-")
    assert len(made["metadata"]["name"]) == len("cfg-") + 5


def test_a_namespaced_create_needs_its_namespace(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    error = refused(lambda: api.create(configmaps, "missing", {"metadata": {"name": "c"}}, AS_TEST))
    assert (error.code, error.message) == (404, 'namespaces "missing" not found')


def test_a_terminating_namespace_takes_no_new_content(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    namespaces = served(api, "", "v1", "namespaces")
    api.create(configmaps, "ns", {"metadata": {"name": "held", "finalizers": ["x/y"]}}, AS_TEST)
    api.delete(namespaces, "", "ns", DeleteOptions())
    error = refused(lambda: api.create(configmaps, "ns", {"metadata": {"name": "c"}}, AS_TEST))
    assert error.code == 403
    assert error.message == (
        'configmaps "c" is forbidden: unable to create new content in namespace ns because it '
        "is being terminated"
    )


def test_create_refuses_a_resource_version(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    body = {"metadata": {"name": "c", "resourceVersion": "5"}}
    error = refused(lambda: api.create(configmaps, "ns", body, AS_TEST))
    assert (error.code, error.message) == (
        400,
        "resourceVersion should not be set on objects to be created",
    )


def test_custom_resources_need_a_resource_version_to_update(api: Api) -> None:
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    api.create(widgets, "ns", widget(), AS_TEST)
    error = refused(lambda: api.update(widgets, "ns", "w", widget(), "", AS_TEST))
    assert error.code == 422
    assert error.message == (
        'Widget.ref.example.dev "w" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )


def test_built_in_kinds_accept_an_unconditional_update(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    api.create(configmaps, "ns", {"metadata": {"name": "c"}, "data": {"a": "1"}}, AS_TEST)
    updated = api.update(
        configmaps, "ns", "c", {"metadata": {"name": "c"}, "data": {"a": "2"}}, "", AS_TEST
    )
    assert updated["data"] == {"a": "2"}


def test_names_must_be_dns_subdomains(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    error = refused(
        lambda: api.create(configmaps, "ns", {"metadata": {"name": "Bad_Name"}}, AS_TEST)
    )
    assert error.code == 422
    assert error.causes[0].field == "metadata.name"
    assert "a lowercase RFC 1123 subdomain" in error.causes[0].message


def test_label_values_are_validated(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    body = {"metadata": {"name": "c", "labels": {"a": "not valid!"}}}
    error = refused(lambda: api.create(configmaps, "ns", body, AS_TEST))
    assert error.code == 422
    assert error.causes[0].field == "metadata.labels"


def test_dry_run_does_not_persist(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    before = api.store.resource_version
    made = api.create(configmaps, "ns", {"metadata": {"name": "c"}}, WriteOptions(dry_run=True))
    assert made["metadata"]["name"] == "c"
    assert api.store.get(configmaps.storage_key, "ns", "c") is None
    assert api.store.resource_version == before


def test_managed_fields_record_who_set_what(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    api.create(configmaps, "ns", {"metadata": {"name": "c"}, "data": {"a": "1"}}, AS_TEST)
    patched, _ = api.patch(
        configmaps, "ns", "c", MERGE_PATCH, {"data": {"b": "2"}}, "", WriteOptions(manager="other")
    )
    owners = {entry["manager"]: entry["fieldsV1"] for entry in patched["metadata"]["managedFields"]}
    assert owners["test"] == {"f:data": {".": {}, "f:a": {}}}
    assert owners["other"] == {"f:data": {"f:b": {}}}


def test_pods_start_pending(api: Api) -> None:
    pods = served(api, "", "v1", "pods")
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    pod = api.create(pods, "ns", body, AS_TEST)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_without_a_status_subresource_status_changes_bump_generation(api: Api) -> None:
    crds = served(api, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
    crd = load_yaml(REFERENCE / "widget-crd.yaml")
    crd["metadata"]["name"] = "gadgets.ref.example.dev"
    crd["spec"]["names"] = {"kind": "Gadget", "plural": "gadgets"}
    del crd["spec"]["versions"][0]["subresources"]
    api.create(crds, "", crd, AS_TEST)
    gadgets = served(api, "ref.example.dev", "v1alpha1", "gadgets")
    api.create(gadgets, "ns", widget("g"), AS_TEST)
    patched, _ = api.patch(
        gadgets, "ns", "g", MERGE_PATCH, {"status": {"phase": "Ok"}}, "", AS_TEST
    )
    assert patched["status"] == {"phase": "Ok"}
    assert patched["metadata"]["generation"] == 2


def test_only_one_owner_reference_may_be_the_controller(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    refs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": n, "controller": True}
        for n in ("a", "b")
    ]
    body = {"metadata": {"name": "c", "ownerReferences": refs}}
    error = refused(lambda: api.create(configmaps, "ns", body, AS_TEST))
    assert error.code == 422
    assert error.causes[0].message.endswith(
        'Found "true" in references for ConfigMap/a and ConfigMap/b'
    )


def test_unknown_metadata_fields_are_dropped(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    made = api.create(configmaps, "ns", {"metadata": {"name": "c", "colour": "red"}}, AS_TEST)
    assert "colour" not in made["metadata"]


def test_annotations_are_limited_to_256_kib(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    body = {"metadata": {"name": "c", "annotations": {"big": "x" * (256 * 1024)}}}
    error = refused(lambda: api.create(configmaps, "ns", body, AS_TEST))
    assert (error.code, error.causes[0].message) == (
        422,
        "Too long: must have at most 262144 bytes",
    )


def test_an_object_too_large_for_etcd_is_refused(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    body = {"metadata": {"name": "c"}, "data": {f"k{i}": "x" * 100_000 for i in range(16)}}
    error = refused(lambda: api.create(configmaps, "ns", body, AS_TEST))
    assert (error.code, error.message) == (500, "etcdserver: request is too large")
    assert api.store.get(configmaps.storage_key, "ns", "c") is None

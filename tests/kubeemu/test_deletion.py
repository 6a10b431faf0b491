"""Deletion: finalizers, garbage collection by ownerReferences, namespace and CRD cleanup.

Without a running event loop the in-process controllers act right after each write, so these
tests observe the settled state directly.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kubeemu import deletion
from tests.kubeemu.api import MERGE_PATCH, Api
from tests.kubeemu.conftest import AS_TEST, REFERENCE, api_with_namespace, load_yaml, served
from tests.kubeemu.options import DeleteOptions


@pytest.fixture
def api() -> Api:
    return api_with_namespace()


def config_map(api: Api, name: str, **meta: Any) -> dict[str, Any]:
    return api.create(
        served(api, "", "v1", "configmaps"), "ns", {"metadata": {"name": name, **meta}}, AS_TEST
    )


def owned_by(owner: dict[str, Any], block: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "blockOwnerDeletion": block,
        }
    ]


def exists(api: Api, name: str) -> bool:
    return api.store.get(("", "configmaps"), "ns", name) is not None


def test_a_finalizer_holds_the_object_until_it_is_removed(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    config_map(api, "held", finalizers=["example.com/hold"])
    marked = api.delete(configmaps, "ns", "held", DeleteOptions())
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert exists(api, "held")
    api.patch(
        configmaps, "ns", "held", MERGE_PATCH, {"metadata": {"finalizers": None}}, "", AS_TEST
    )
    assert not exists(api, "held")


def test_background_deletion_removes_dependents_after_the_owner(api: Api) -> None:
    owner = config_map(api, "owner")
    config_map(api, "child", ownerReferences=owned_by(owner))
    api.delete(served(api, "", "v1", "configmaps"), "ns", "owner", DeleteOptions())
    assert not exists(api, "owner")
    assert not exists(api, "child")


def test_a_dependent_of_a_missing_owner_is_collected(api: Api) -> None:
    ghost = {"metadata": {"name": "ghost", "uid": "0000-gone"}}
    config_map(api, "orphaned", ownerReferences=owned_by(ghost))
    assert not exists(api, "orphaned")


def test_foreground_deletion_waits_for_blocking_dependents(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    owner = config_map(api, "owner")
    config_map(
        api, "child", ownerReferences=owned_by(owner, block=True), finalizers=["example.com/x"]
    )
    api.delete(configmaps, "ns", "owner", DeleteOptions(propagation="Foreground"))
    held_owner = api.get(configmaps, "ns", "owner")
    assert held_owner["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert api.get(configmaps, "ns", "child")["metadata"]["deletionTimestamp"]
    api.patch(
        configmaps, "ns", "child", MERGE_PATCH, {"metadata": {"finalizers": None}}, "", AS_TEST
    )
    assert not exists(api, "child")
    assert not exists(api, "owner")


def test_orphan_deletion_leaves_dependents_without_the_reference(api: Api) -> None:
    configmaps = served(api, "", "v1", "configmaps")
    owner = config_map(api, "owner")
    config_map(api, "child", ownerReferences=owned_by(owner))
    api.delete(configmaps, "ns", "owner", DeleteOptions(propagation="Orphan"))
    assert not exists(api, "owner")
    assert "ownerReferences" not in api.get(configmaps, "ns", "child")["metadata"]


def test_deleting_a_namespace_deletes_its_contents_then_itself(api: Api) -> None:
    namespaces = served(api, "", "v1", "namespaces")
    config_map(api, "a")
    config_map(api, "b", finalizers=["example.com/hold"])
    terminating = api.delete(namespaces, "", "ns", DeleteOptions())
    assert terminating["status"]["phase"] == "Terminating"
    assert not exists(api, "a")
    assert exists(api, "b")
    configmaps = served(api, "", "v1", "configmaps")
    api.patch(configmaps, "ns", "b", MERGE_PATCH, {"metadata": {"finalizers": None}}, "", AS_TEST)
    assert api.store.get(("", "namespaces"), "", "ns") is None


def test_deleting_a_crd_deletes_its_objects_and_stops_serving_them(api: Api) -> None:
    crds = served(api, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
    api.create(crds, "", load_yaml(REFERENCE / "widget-crd.yaml"), AS_TEST)
    widgets = served(api, "ref.example.dev", "v1alpha1", "widgets")
    api.create(widgets, "ns", {"metadata": {"name": "w"}, "spec": {"model": "m"}}, AS_TEST)
    api.delete(crds, "", "widgets.ref.example.dev", DeleteOptions())
    assert api.registry.find("ref.example.dev", "v1alpha1", "widgets") is None
    assert api.store.get(crds.storage_key, "", "widgets.ref.example.dev") is None


def test_a_crd_is_stored_unestablished_then_established_by_its_controllers(api: Api) -> None:
    crds = served(api, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
    crd = api.create(crds, "", load_yaml(REFERENCE / "widget-crd.yaml"), AS_TEST)
    # As kube-apiserver v1.28.7 answers the create: nothing accepted yet, conditions null.
    assert crd["status"] == {
        "acceptedNames": {"kind": "", "plural": ""},
        "conditions": None,
        "storedVersions": ["v1alpha1"],
    }
    assert "finalizers" not in crd["metadata"]
    # Outside an event loop the controllers' pass has run by the time create returns.
    stored = api.store.get(crds.storage_key, "", "widgets.ref.example.dev")
    assert stored is not None
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert stored["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert stored["status"]["storedVersions"] == ["v1alpha1"]
    assert stored["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]


@pytest.mark.parametrize(
    ("current", "propagation", "is_crd", "expected"),
    [
        ([], "", False, []),
        ([], "Background", False, []),
        (["a/b"], "", False, ["a/b"]),
        ([], "Foreground", False, ["foregroundDeletion"]),
        ([], "Orphan", False, ["orphan"]),
        (["orphan"], "Background", False, []),
        (["orphan"], "Foreground", False, ["foregroundDeletion"]),
        ([], "", True, ["customresourcecleanup.apiextensions.k8s.io"]),
    ],
)
def test_finalizers_a_delete_leaves(
    current: list[str], propagation: str, is_crd: bool, expected: list[str]
) -> None:
    assert deletion.finalizers_after_delete(current, propagation, is_crd) == expected


def test_a_marked_object_keeps_its_first_deletion_timestamp() -> None:
    obj = {"metadata": {"name": "x", "generation": 3}}
    marked = deletion.marked_for_deletion(obj, ["a/b"], bump_generation=True)
    assert marked["metadata"]["generation"] == 4
    again = deletion.marked_for_deletion(marked, ["a/b", "c/d"], bump_generation=True)
    assert again["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    assert again["metadata"]["generation"] == 4
    assert "deletionTimestamp" not in obj["metadata"]

"""CRDs come and go at run time, as ``helm install`` and ``kubectl apply -f crds/`` make them.

A new CRD is served (discovery shows its names, scope, verbs, short names and categories)
once it is Established; deleting it deletes its objects and stops serving the resource.
Deleting a namespace deletes what is in it, which is kube-controller-manager's job: that
test is skipped on envtest, which does not run it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from tests.support.backends import Cluster, install_crds
from tests.support.kube import ApiError, KubeClient, Obj

CRD_API = "apiextensions.k8s.io/v1"


def gadget_crd(group: str) -> Obj:
    return {
        "apiVersion": CRD_API,
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": "Gadget",
                "listKind": "GadgetList",
                "plural": "gadgets",
                "singular": "gadget",
                "shortNames": ["gd"],
                "categories": ["gizmos"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def gadget_group(kube: KubeClient) -> Iterator[str]:
    """A CRD in a group of its own, installed for one test and removed afterwards."""
    group = f"t{secrets.token_hex(3)}.example.dev"
    install_crds(kube, [gadget_crd(group)])
    yield group
    try:
        kube.delete(CRD_API, "CustomResourceDefinition", f"gadgets.{group}")
    except ApiError as error:
        if error.status != 404:
            raise


def test_a_new_crd_is_served_with_its_names(kube: KubeClient, gadget_group: str) -> None:
    groups = kube.request("GET", "/apis")["groups"]
    (entry,) = [g for g in groups if g["name"] == gadget_group]
    assert entry["preferredVersion"]["groupVersion"] == f"{gadget_group}/v1"
    resources = kube.request("GET", f"/apis/{gadget_group}/v1")["resources"]
    by_name = {r["name"]: r for r in resources}
    gadgets = by_name["gadgets"]
    assert (gadgets["kind"], gadgets["namespaced"], gadgets["singularName"]) == (
        "Gadget",
        True,
        "gadget",
    )
    assert gadgets["shortNames"] == ["gd"]
    assert gadgets["categories"] == ["gizmos"]
    assert set(gadgets["verbs"]) >= {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert "gadgets/status" in by_name


def test_deleting_a_crd_deletes_its_objects_and_stops_serving_it(
    kube: KubeClient, namespace: str, gadget_group: str
) -> None:
    api = f"{gadget_group}/v1"
    kube.create(
        {"apiVersion": api, "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 1}},
        namespace,
    )
    path = kube.resource(api, "Gadget").collection_path(namespace)
    kube.delete(CRD_API, "CustomResourceDefinition", f"gadgets.{gadget_group}")
    kube.wait_for(
        CRD_API,
        "CustomResourceDefinition",
        f"gadgets.{gadget_group}",
        None,
        lambda crd: crd is None,
        timeout=60,
        description="the CRD to be deleted",
    )
    status, _ = kube.raw("GET", path)
    assert status == 404
    kube.forget_discovery()
    # Re-creating the CRD must not bring the old objects back.
    install_crds(kube, [gadget_crd(gadget_group)])
    assert kube.list(api, "Gadget", namespace)["items"] == []


def test_deleting_a_namespace_deletes_its_contents(
    cluster: Cluster, kube: KubeClient, make_namespace: Callable[[], str]
) -> None:
    if not cluster.runs_controllers:
        pytest.skip("envtest runs no namespace controller: a deleted namespace stays Terminating")
    doomed = make_namespace()
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, doomed)
    kube.delete("v1", "Namespace", doomed)
    kube.wait_for(
        "v1", "Namespace", doomed, None, lambda ns: ns is None, timeout=120, description="deletion"
    )
    items = kube.list("v1", "ConfigMap", None, field_selector=f"metadata.namespace={doomed}")
    assert items["items"] == []

"""What kubectl reads: discovery, OpenAPI for `explain` and `apply`, and server-side tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubeemu.api import Api
from tests.kubeemu.conftest import REFERENCE, Http, load_yaml, served
from tests.kubeemu.jsonpath import find
from tests.kubeemu.options import WriteOptions

ROOT = Path(__file__).resolve().parents[2]
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture(scope="module", autouse=True)
def widget_crd(http: Http) -> None:
    crd = load_yaml(REFERENCE / "widget-crd.yaml")
    status, _ = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201


def test_discovery_lists_a_crd_with_its_names_and_status_subresource(http: Http) -> None:
    _, groups = http.get("/apis")
    widget_group = next(g for g in groups["groups"] if g["name"] == "ref.example.dev")
    assert widget_group["preferredVersion"]["version"] == "v1alpha1"
    _, resources = http.get("/apis/ref.example.dev/v1alpha1")
    by_name = {r["name"]: r for r in resources["resources"]}
    widgets = by_name["widgets"]
    assert (widgets["kind"], widgets["singularName"], widgets["namespaced"]) == (
        "Widget",
        "widget",
        True,
    )
    assert (widgets["shortNames"], widgets["categories"]) == (["wd"], ["refcat"])
    assert by_name["widgets/status"]["verbs"] == ["get", "patch", "update"]


def test_core_discovery_has_pods_with_status_and_namespaces_cluster_scoped(http: Http) -> None:
    _, resources = http.get("/api/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert "pods/status" in by_name
    assert by_name["namespaces"]["namespaced"] is False
    _, version = http.get("/version")
    assert version["major"] == "1"


def test_openapi_v3_describes_custom_resources_for_explain(http: Http) -> None:
    _, index = http.get("/openapi/v3")
    url = index["paths"]["apis/ref.example.dev/v1alpha1"]["serverRelativeURL"]
    path, _, query = url.partition("?")
    _, document = http.get(path, hash=query.partition("=")[2])
    widget = document["components"]["schemas"]["dev.example.ref.v1alpha1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "ref.example.dev", "kind": "Widget", "version": "v1alpha1"}
    ]
    assert widget["properties"]["spec"]["required"] == ["model"]
    patch_parameters = [
        p["name"]
        for path_item in document["paths"].values()
        for p in path_item.get("patch", {}).get("parameters", [])
    ]
    assert "fieldValidation" in patch_parameters


def test_tables_evaluate_printer_columns(http: Http, namespace: str) -> None:
    path = f"/apis/ref.example.dev/v1alpha1/namespaces/{namespace}/widgets"
    http.post(path, {"metadata": {"name": "ready"}, "spec": {"model": "m"}})
    http.post(path, {"metadata": {"name": "plain"}, "spec": {"model": "m"}})
    conditions = [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]
    http.patch(
        f"{path}/ready/status",
        {"status": {"conditions": conditions}},
        "application/merge-patch+json",
    )
    status, table = http.request("GET", path, accept=TABLE)
    assert (status, table["kind"]) == (200, "Table")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready"]
    assert [row["cells"] for row in table["rows"]] == [["plain", None], ["ready", "True"]]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        ("{.status.conditions[*].type}", ["Other", "Ready"]),
        (".spec.steps[1]", [20]),
        (".metadata.labels['app.kubernetes.io/name']", ["kiln"]),
        ("..weight", [5]),
        (".spec.missing", []),
    ],
)
def test_jsonpath_as_printer_columns_use_it(expression: str, expected: list[Any]) -> None:
    document = {
        "metadata": {"labels": {"app.kubernetes.io/name": "kiln"}},
        "spec": {"steps": [10, 20], "rollout": {"weight": 5}},
        "status": {
            "conditions": [
                {"type": "Other", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]
        },
    }
    assert find(expression, document) == expected


def test_kiln_crds_register_and_the_examples_validate() -> None:
    crd_files = sorted((ROOT / "crds").glob("*.yaml"))
    assert crd_files, "crds/ holds the generated CRDs"
    api = Api()
    options = WriteOptions(manager="kubectl")
    crds = served(api, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
    for path in crd_files:
        api.create(crds, "", load_yaml(path), options)
    examples = [
        doc
        for path in sorted((ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("apiVersion", "").startswith("kiln.dev/")
    ]
    assert examples
    for doc in examples:
        rt = api.registry.find_kind(doc["apiVersion"], doc["kind"])
        assert rt is not None, f"{doc['kind']} is not served after installing crds/"
        created = api.create(rt, "default", doc, options)
        assert created["metadata"]["generation"] == 1


def test_built_in_tables_print_computed_columns(http: Http, namespace: str) -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
    }
    http.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    statuses = [
        {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
        {"name": "b", "ready": False, "restartCount": 1, "state": {"waiting": {"reason": "Boom"}}},
    ]
    http.patch(
        f"/api/v1/namespaces/{namespace}/pods/p/status",
        {"status": {"phase": "Running", "containerStatuses": statuses}},
        "application/merge-patch+json",
    )
    _, table = http.request("GET", f"/api/v1/namespaces/{namespace}/pods", accept=TABLE)
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:4] == ["p", "1/2", "Boom", 3]

"""Error answers at the HTTP edge: each one a `kind: Status` with the API server's code."""

from __future__ import annotations

import json
from http.client import HTTPConnection

import pytest

from tests.kubeemu.conftest import REFERENCE, Http, load_yaml


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "code", "reason"),
    [
        ("GET", "/apis/example.com/v1/things", None, "application/json", 404, "NotFound"),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps",
            {},
            "application/json",
            405,
            "MethodNotAllowed",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "{bad",
            "application/json",
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/absent",
            {},
            "text/plain",
            415,
            "UnsupportedMediaType",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
            "application/json",
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"metadata": {"name": "x", "labels": 5}},
            "application/json",
            400,
            "BadRequest",
        ),
    ],
)
def test_errors_are_statuses_with_the_right_code(
    http: Http, method: str, path: str, body: object, content_type: str, code: int, reason: str
) -> None:
    status, answer = http.request(method, path, body, content_type=content_type)
    assert (status, answer["kind"], answer["code"], answer["reason"]) == (
        code,
        "Status",
        code,
        reason,
    )


def test_query_parameters_that_are_not_integers_are_bad_requests(http: Http) -> None:
    status, answer = http.get("/api/v1/namespaces/default/configmaps", limit="many")
    assert (status, answer["reason"]) == (400, "BadRequest")


def test_mismatched_name_in_an_update_is_a_bad_request(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(path, {"metadata": {"name": "a"}})
    status, answer = http.put(f"{path}/a", {"metadata": {"name": "b"}})
    assert (status, answer["message"]) == (
        400,
        "the name of the object (b) does not match the name on the URL (a)",
    )


def test_pruned_fields_are_warned_about_unless_strict(http: Http, namespace: str) -> None:
    crd = load_yaml(REFERENCE / "widget-crd.yaml")
    http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    path = f"/apis/ref.example.dev/v1alpha1/namespaces/{namespace}/widgets"
    body = {"metadata": {"name": "w"}, "spec": {"model": "m", "colour": "red"}}
    connection = HTTPConnection(http.host, http.port, timeout=10)
    try:
        connection.request(
            "POST", path, json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 201
    assert response.getheader("Warning") == '299 - "unknown field \\"spec.colour\\""'
    body["metadata"]["name"] = "strict"
    status, answer = http.post(path, body, fieldValidation="Strict")
    assert (status, answer["message"]) == (
        400,
        'Widget in version "v1alpha1" cannot be handled as a Widget: strict decoding error: '
        'unknown field "spec.colour"',
    )


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ({"gracePeriodSeconds": "soon"}, None),
        ({}, {"gracePeriodSeconds": "soon"}),
        ({}, {"preconditions": 5}),
        ({}, {"propagationPolicy": "Sideways"}),
    ],
)
def test_malformed_delete_options_are_bad_requests(
    http: Http, namespace: str, query: dict[str, str], body: object
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(path, {"metadata": {"name": "a"}})
    status, answer = http.delete(f"{path}/a", body, **query)
    assert (status, answer["reason"]) == (400, "BadRequest")


def test_a_request_body_over_3_mib_is_too_large(http: Http, namespace: str) -> None:
    body = {"metadata": {"name": "big"}, "data": {"k": "x" * (3 * 1024 * 1024)}}
    status, answer = http.post(f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert (status, answer["reason"]) == (413, "RequestEntityTooLarge")


def test_pod_logs_say_why_there_are_none(http: Http, namespace: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    http.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    status, answer = http.get(f"/api/v1/namespaces/{namespace}/pods/p/log")
    assert (status, answer["message"]) == (400, "pod p does not have a host assigned")
    status, _ = http.get(f"/api/v1/namespaces/{namespace}/pods/absent/log")
    assert status == 404

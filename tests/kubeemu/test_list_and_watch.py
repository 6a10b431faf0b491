"""List and watch over HTTP: shapes, pagination, selectors, resume, expiry, bookmarks."""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

import pytest

from tests.kubeemu.conftest import REFERENCE, Http, load_yaml

WIDGETS = "/apis/ref.example.dev/v1alpha1/namespaces/{ns}/widgets"


@pytest.fixture(scope="module", autouse=True)
def widget_crd(http: Http) -> None:
    crd = load_yaml(REFERENCE / "widget-crd.yaml")
    status, _ = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201


def make_config_maps(http: Http, namespace: str, labels: dict[str, dict[str, str]]) -> None:
    for name, label_set in labels.items():
        body = {"metadata": {"name": name, "labels": label_set}}
        status, _ = http.post(f"/api/v1/namespaces/{namespace}/configmaps", body)
        assert status == 201


def names(listing: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listing["items"]]


def test_custom_resource_list_has_the_recorded_shape(http: Http, namespace: str) -> None:
    http.post(WIDGETS.format(ns=namespace), {"metadata": {"name": "a"}, "spec": {"model": "m"}})
    status, listing = http.get(WIDGETS.format(ns=namespace))
    recorded = json.loads((REFERENCE / "apiserver-answers.json").read_text())["list_shape"]
    expected = recorded["code_and_response"][1]
    assert status == 200
    assert (listing["apiVersion"], listing["kind"]) == (expected["apiVersion"], expected["kind"])
    assert sorted(listing["metadata"]) == sorted(expected["metadata"])
    assert listing["metadata"]["continue"] == ""
    assert sorted(listing["items"][0]["metadata"]) == expected["items[0].metadata keys"]


def test_pages_follow_continue_tokens(http: Http, namespace: str) -> None:
    make_config_maps(http, namespace, {f"c{i}": {} for i in range(5)})
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, first = http.get(path, limit="2")
    assert names(first) == ["c0", "c1"]
    assert first["metadata"]["remainingItemCount"] == 3
    _, second = http.get(path, limit="2", **{"continue": first["metadata"]["continue"]})
    _, third = http.get(path, limit="2", **{"continue": second["metadata"]["continue"]})
    assert names(second) + names(third) == ["c2", "c3", "c4"]
    assert "continue" not in third["metadata"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier in (web,db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("tier=web,env=prod", ["a"]),
    ],
)
def test_label_selectors(http: Http, namespace: str, selector: str, expected: list[str]) -> None:
    make_config_maps(
        http,
        namespace,
        {
            "a": {"tier": "web", "env": "prod"},
            "b": {"tier": "web"},
            "c": {"tier": "db"},
            "d": {},
        },
    )
    _, listing = http.get(f"/api/v1/namespaces/{namespace}/configmaps", labelSelector=selector)
    assert names(listing) == expected


def test_field_selectors_on_name_and_pod_phase(http: Http, namespace: str) -> None:
    for name in ("p1", "p2"):
        pod = {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        http.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    http.patch(
        f"/api/v1/namespaces/{namespace}/pods/p2/status",
        {"status": {"phase": "Running"}},
        "application/merge-patch+json",
    )
    path = f"/api/v1/namespaces/{namespace}/pods"
    assert names(http.get(path, fieldSelector="status.phase=Running")[1]) == ["p2"]
    assert names(http.get(path, fieldSelector="metadata.name=p1")[1]) == ["p1"]
    status, answer = http.get(path, fieldSelector="spec.priority=1")
    assert (status, answer["message"]) == (400, "field label not supported: spec.priority")


def test_watch_resumes_after_a_resource_version(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, created = http.post(path, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    http.patch(f"{path}/w", {"data": {"a": "2"}}, "application/merge-patch+json")
    http.delete(f"{path}/w")
    events = http.watch(
        path, {"resourceVersion": created["metadata"]["resourceVersion"], "timeoutSeconds": "1"}
    )
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["data"] == {"a": "2"}
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


def test_watch_without_a_version_starts_with_the_current_state(http: Http, namespace: str) -> None:
    make_config_maps(http, namespace, {"x": {}, "y": {}})
    events = http.watch(f"/api/v1/namespaces/{namespace}/configmaps", {"timeoutSeconds": "1"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "x"),
        ("ADDED", "y"),
    ]


def test_watch_from_a_compacted_version_answers_an_expired_error_event(
    http: Http, namespace: str
) -> None:
    events = http.watch(WIDGETS.format(ns=namespace), {"resourceVersion": "1"})
    recorded = json.loads((REFERENCE / "apiserver-answers.json").read_text())["watch_too_old_rv"]
    expected = recorded["code_and_response"][1]
    [event] = events
    assert event["type"] == expected["type"]
    assert {k: v for k, v in event["object"].items() if k != "message"} == {
        k: v for k, v in expected["object"].items() if k != "message"
    }


def test_a_bookmark_arrives_two_seconds_before_the_timeout_after_a_live_change(
    http: Http, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, listing = http.get(path)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watching = pool.submit(
            http.watch,
            path,
            {
                "resourceVersion": listing["metadata"]["resourceVersion"],
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "3",
            },
        )
        time.sleep(0.5)
        _, news = http.post(path, {"metadata": {"name": "news"}})
        events = watching.result()
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(
        news["metadata"]["resourceVersion"]
    )
    assert time.monotonic() - started >= 2.5


def test_no_bookmark_for_changes_the_watch_replayed(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, listing = http.get(path)
    http.post(path, {"metadata": {"name": "replayed"}})
    query = {
        "resourceVersion": listing["metadata"]["resourceVersion"],
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "3",
    }
    assert [e["type"] for e in http.watch(path, query)] == ["ADDED"]


def test_a_watch_without_a_resource_version_gets_no_bookmark(http: Http, namespace: str) -> None:
    """Served from etcd on a real server, not from the watch cache that sends bookmarks."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    http.post(path, {"metadata": {"name": "there"}})
    events = http.watch(path, {"allowWatchBookmarks": "true", "timeoutSeconds": "3"})
    assert [e["type"] for e in events] == ["ADDED"]


def test_a_watched_object_leaving_the_selector_is_reported_deleted(
    http: Http, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, created = http.post(path, {"metadata": {"name": "m", "labels": {"keep": "yes"}}})
    http.patch(
        f"{path}/m", {"metadata": {"labels": {"keep": "no"}}}, "application/merge-patch+json"
    )
    events = http.watch(
        path,
        {
            "resourceVersion": created["metadata"]["resourceVersion"],
            "labelSelector": "keep=yes",
            "timeoutSeconds": "1",
        },
    )
    assert [e["type"] for e in events] == ["DELETED"]
    assert events[0]["object"]["metadata"]["labels"] == {"keep": "no"}


def test_every_request_is_logged(http: Http, emulator: Any, namespace: str) -> None:
    http.get(f"/api/v1/namespaces/{namespace}/configmaps", labelSelector="a=b")
    method, path, query, agent, status = emulator.request_log[-1]
    assert (method, path, query, status) == (
        "GET",
        f"/api/v1/namespaces/{namespace}/configmaps",
        "labelSelector=a%3Db",
        200,
    )
    assert agent == "kubeemu-test/1.0"


def test_events_are_one_resource_served_by_two_groups(http: Http, namespace: str) -> None:
    core = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Widget", "name": "w", "namespace": namespace},
        "reason": "Started",
        "message": "run started",
        "type": "Normal",
    }
    http.post(f"/api/v1/namespaces/{namespace}/events", core)
    modern = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e2"},
        "regarding": {"kind": "Widget", "name": "other", "namespace": namespace},
        "reason": "Failed",
        "note": "run failed",
        "type": "Warning",
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "kiln.dev/operator",
        "reportingInstance": "kiln-0",
        "action": "Run",
    }
    status, _ = http.post(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", modern)
    assert status == 201
    _, seen_new = http.get(
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", fieldSelector="regarding.name=w"
    )
    assert [(e["note"], e["regarding"]["name"]) for e in seen_new["items"]] == [
        ("run started", "w")
    ]
    _, seen_core = http.get(
        f"/api/v1/namespaces/{namespace}/events", fieldSelector="involvedObject.name=other"
    )
    [event] = seen_core["items"]
    assert (event["message"], event["reportingComponent"]) == ("run failed", "kiln.dev/operator")


def test_pages_are_one_consistent_snapshot(http: Http, namespace: str) -> None:
    make_config_maps(http, namespace, {f"c{i}": {} for i in range(4)})
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, first = http.get(path, limit="2")
    http.delete(f"{path}/c3")
    make_config_maps(http, namespace, {"c9": {}})
    _, rest = http.get(path, limit="10", **{"continue": first["metadata"]["continue"]})
    assert names(rest) == ["c2", "c3"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_an_exact_list_reads_an_earlier_version(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, created = http.post(path, {"metadata": {"name": "v"}, "data": {"n": "1"}})
    http.patch(f"{path}/v", {"data": {"n": "2"}}, "application/merge-patch+json")
    make_config_maps(http, namespace, {"later": {}})
    _, then = http.get(
        path,
        resourceVersion=created["metadata"]["resourceVersion"],
        resourceVersionMatch="Exact",
    )
    assert [(o["metadata"]["name"], o["data"]) for o in then["items"]] == [("v", {"n": "1"})]
    status, answer = http.get(path, resourceVersion="1", resourceVersionMatch="Exact")
    assert (status, answer["reason"]) == (410, "Expired")


def test_a_thousand_objects_list_well_within_a_second(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for index in range(1000):
        body = {"metadata": {"name": f"c{index:04d}"}, "data": {"payload": "x" * 200}}
        assert http.post(path, body)[0] == 201
    began = time.monotonic()
    status, listing = http.get(path)
    elapsed = time.monotonic() - began
    assert (status, len(listing["items"])) == (200, 1000)
    assert elapsed < 0.5, f"listing 1,000 objects took {elapsed:.3f}s"


def test_a_version_from_the_future_times_out(http: Http, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, answer = http.get(path, resourceVersion="999999999")
    assert (status, answer["reason"]) == (504, "Timeout")
    [event] = http.watch(path, {"resourceVersion": "999999999"})
    assert (event["type"], event["object"]["code"]) == ("ERROR", 504)


def test_initial_events_end_with_an_annotated_bookmark(http: Http, namespace: str) -> None:
    make_config_maps(http, namespace, {"one": {}})
    events = http.watch(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "1",
        },
    )
    assert [e["type"] for e in events[:2]] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}

"""Label and field selectors on list, with every operator the API server accepts."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import config_map, unscheduled_pod
from tests.support.kube import ApiError, KubeClient, Obj


@pytest.fixture
def labelled(kube: KubeClient, namespace: str) -> str:
    """Four ConfigMaps with different labels in ``namespace``."""
    kube.create(config_map("ml-stable", labels={"team": "ml", "track": "stable"}), namespace)
    kube.create(config_map("ml-canary", labels={"team": "ml", "track": "canary"}), namespace)
    kube.create(config_map("web", labels={"team": "web"}), namespace)
    kube.create(config_map("plain", labels={"kind": "plain"}), namespace)
    return namespace


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("team=ml", ["ml-canary", "ml-stable"]),
        ("team==ml", ["ml-canary", "ml-stable"]),
        ("team!=ml", ["plain", "web"]),
        ("team in (web, nobody)", ["web"]),
        ("team notin (ml)", ["plain", "web"]),
        ("track", ["ml-canary", "ml-stable"]),
        ("!track", ["plain", "web"]),
        ("team=ml,track=canary", ["ml-canary"]),
        ("team=ml,!track", []),
    ],
)
def test_label_selector(
    kube: KubeClient, labelled: str, selector: str, expected: list[str]
) -> None:
    items = kube.list("v1", "ConfigMap", labelled, label_selector=selector)["items"]
    names = sorted(
        i["metadata"]["name"] for i in items if i["metadata"]["name"] != "kube-root-ca.crt"
    )
    assert names == expected


def test_field_selector_on_name(kube: KubeClient, labelled: str) -> None:
    items = kube.list("v1", "ConfigMap", labelled, field_selector="metadata.name=web")["items"]
    assert [i["metadata"]["name"] for i in items] == ["web"]


def test_field_selector_on_namespace_across_namespaces(kube: KubeClient, labelled: str) -> None:
    items = kube.list(
        "v1",
        "ConfigMap",
        None,
        field_selector=f"metadata.namespace={labelled}",
        label_selector="team",
    )["items"]
    assert sorted(i["metadata"]["name"] for i in items) == ["ml-canary", "ml-stable", "web"]


def test_field_selector_on_pod_phase(kube: KubeClient, namespace: str) -> None:
    for name in ("a", "b"):
        kube.create(unscheduled_pod(name), namespace)
    running = kube.get("v1", "Pod", "a", namespace)
    running["status"] = {**running.get("status", {}), "phase": "Running"}
    kube.replace(running, subresource="status")
    items = kube.list("v1", "Pod", namespace, field_selector="status.phase=Running")["items"]
    assert [i["metadata"]["name"] for i in items] == ["a"]
    others = kube.list("v1", "Pod", namespace, field_selector="status.phase!=Running")["items"]
    assert [i["metadata"]["name"] for i in others] == ["b"]


def test_an_unsupported_field_selector_is_a_bad_request(kube: KubeClient, labelled: str) -> None:
    with pytest.raises(ApiError) as caught:
        kube.list("v1", "ConfigMap", labelled, field_selector="data.x=1")
    assert caught.value.status == 400
    assert caught.value.reason == "BadRequest"


def core_event(name: str, involved: Obj, reason: str, type_: str = "Normal") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": involved["metadata"]["name"],
            "namespace": involved["metadata"]["namespace"],
            "uid": involved["metadata"]["uid"],
        },
        "reason": reason,
        "message": f"{reason} happened",
        "type": type_,
        "source": {"component": "kiln-tests"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }


def test_events_are_found_by_the_object_they_are_about(kube: KubeClient, namespace: str) -> None:
    first = kube.create(config_map("first"), namespace)
    second = kube.create(config_map("second"), namespace)
    kube.create(core_event("e1", first, "Started"), namespace)
    kube.create(core_event("e2", first, "Failed", "Warning"), namespace)
    kube.create(core_event("e3", second, "Started"), namespace)

    def names(selector: str) -> list[str]:
        items = kube.list("v1", "Event", namespace, field_selector=selector)["items"]
        return sorted(i["metadata"]["name"] for i in items)

    assert names("involvedObject.name=first") == ["e1", "e2"]
    assert names(f"involvedObject.uid={second['metadata']['uid']}") == ["e3"]
    assert names("involvedObject.kind=ConfigMap,type=Warning") == ["e2"]
    assert names("reason=Started") == ["e1", "e3"]

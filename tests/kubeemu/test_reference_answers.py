"""The emulator's registry answers exactly as the recorded kube-apiserver v1.28 did.

White-box: each recorded request is replayed on `Api` directly (no HTTP), against the
recorded Widget CRD, and the code, message, reason, details and causes are compared
exactly; only server-assigned values (uid, resourceVersion, timestamps) are left out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kubeemu.api import MERGE_PATCH, Api
from tests.kubeemu.conftest import REFERENCE, load_yaml, served
from tests.kubeemu.errors import ApiError
from tests.kubeemu.options import WriteOptions
from tests.kubeemu.resources import ResourceType

ANSWERS: dict[str, Any] = json.loads((REFERENCE / "apiserver-answers.json").read_text())
CREATE_CASES = sorted(name for name, case in ANSWERS.items() if isinstance(case["request"], dict))
AS_CLIENT = WriteOptions(manager="Python-urllib")


def widget_api() -> tuple[Api, ResourceType]:
    api = Api()
    crds = served(api, "apiextensions.k8s.io", "v1", "customresourcedefinitions")
    api.create(crds, "", load_yaml(REFERENCE / "widget-crd.yaml"), AS_CLIENT)
    api.create(served(api, "", "v1", "namespaces"), "", {"metadata": {"name": "ref"}}, AS_CLIENT)
    return api, served(api, "ref.example.dev", "v1alpha1", "widgets")


def recorded(case: str) -> tuple[int, dict[str, Any]]:
    code, body = ANSWERS[case]["code_and_response"]
    return code, body


def refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.status()


def without_server_values(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in obj["metadata"].items()
        if k not in ("uid", "resourceVersion", "creationTimestamp", "managedFields")
    }
    fields = [
        {k: v for k, v in entry.items() if k != "time"}
        for entry in obj["metadata"].get("managedFields", [])
    ]
    return {**obj, "metadata": {**meta, "managedFields": fields}}


@pytest.mark.parametrize("case", CREATE_CASES)
def test_create_answers_like_the_recorded_server(case: str) -> None:
    api, widgets = widget_api()
    code, expected = recorded(case)
    request = ANSWERS[case]["request"]
    if code >= 400:
        assert refusal(lambda: api.create(widgets, "ref", request, AS_CLIENT)) == expected
    else:
        created = api.create(widgets, "ref", request, AS_CLIENT)
        assert without_server_values(created) == without_server_values(expected)


def immutable_widget() -> tuple[Api, ResourceType, dict[str, Any]]:
    api, widgets = widget_api()
    body = {"metadata": {"name": "imm"}, "spec": {"model": "m", "version": 1}}
    return api, widgets, api.create(widgets, "ref", body, AS_CLIENT)


def test_transition_rule_refuses_a_changed_version() -> None:
    api, widgets, _ = immutable_widget()
    change = {"spec": {"version": 2}}
    answer = refusal(lambda: api.patch(widgets, "ref", "imm", MERGE_PATCH, change, "", AS_CLIENT))
    assert answer == recorded("cel_transition_rule")[1]


def test_stale_resource_version_is_a_conflict() -> None:
    api, widgets, created = immutable_widget()
    stale = {**created, "metadata": {**created["metadata"], "resourceVersion": "1"}}
    answer = refusal(lambda: api.update(widgets, "ref", "imm", stale, "", AS_CLIENT))
    assert answer == recorded("conflict_stale_rv")[1]


def test_second_create_of_a_name_already_exists() -> None:
    api, widgets, _ = immutable_widget()
    again = {"metadata": {"name": "imm"}, "spec": {"model": "m"}}
    answer = refusal(lambda: api.create(widgets, "ref", again, AS_CLIENT))
    assert answer == recorded("already_exists")[1]


def test_missing_object_is_not_found() -> None:
    api, widgets = widget_api()
    assert refusal(lambda: api.get(widgets, "ref", "nope")) == recorded("not_found")[1]


def test_status_written_to_the_main_resource_is_ignored() -> None:
    api, widgets, created = immutable_widget()
    patched, _ = api.patch(
        widgets, "ref", "imm", MERGE_PATCH, {"status": {"phase": "X"}}, "", AS_CLIENT
    )
    assert "status" not in patched
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert without_server_values(patched) == without_server_values(
        recorded("status_write_on_main_ignored")[1]
    )


def test_status_subresource_takes_only_status() -> None:
    api, widgets, _ = immutable_widget()
    body = {"status": {"phase": "Y"}, "spec": {"model": "changed"}}
    patched, _ = api.patch(widgets, "ref", "imm", MERGE_PATCH, body, "status", AS_CLIENT)
    expected = recorded("status_subresource_write")[1]
    assert without_server_values(patched) == without_server_values(expected)
    subresources = [e.get("subresource") for e in patched["metadata"]["managedFields"]]
    assert subresources == [None, "status"]


def test_status_schema_violation_is_reported_without_the_status_prefix() -> None:
    api, widgets, _ = immutable_widget()
    body = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    answer = refusal(
        lambda: api.patch(widgets, "ref", "imm", MERGE_PATCH, body, "status", AS_CLIENT)
    )
    assert answer == recorded("status_enum_violation")[1]


def test_watch_from_a_compacted_version_is_expired() -> None:
    api, widgets, _ = immutable_widget()
    expected = recorded("watch_too_old_rv")[1]["object"]
    answer = refusal(lambda: api.store.watch(widgets.storage_key, lambda o: True, since=1))
    assert {k: v for k, v in answer.items() if k != "message"} == {
        k: v for k, v in expected.items() if k != "message"
    }
    assert answer["message"].startswith("too old resource version: 1 (")

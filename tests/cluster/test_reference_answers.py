"""Replay the recorded kube-apiserver answers against the selected backend.

Each entry of ``reference/apiserver-answers.json`` is a request about the Widget CRD and
the exact answer a real kube-apiserver gave. Error answers (the ``Status`` object: code,
reason, message, every cause and its field) must match exactly. Successful answers must
match in everything the client chose; server-assigned values (uid, resourceVersion,
timestamps) are compared by shape, and the field manager by its rule (the client's
user agent) rather than its recorded name.
"""

from __future__ import annotations

import re

import pytest

from tests.cluster.conftest import WIDGET, WIDGET_API, reference_answers, widget
from tests.support.kube import ApiError, KubeClient, Obj

pytestmark = pytest.mark.usefixtures("widget_crd")

ANSWERS = reference_answers()
CREATE_CASES = sorted(name for name, entry in ANSWERS.items() if isinstance(entry["request"], dict))
ERROR_CREATE_CASES = [name for name in CREATE_CASES if ANSWERS[name]["code_and_response"][0] >= 400]
CREATED_CASES = [name for name in CREATE_CASES if ANSWERS[name]["code_and_response"][0] < 400]

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def expected(case: str) -> tuple[int, Obj]:
    code, body = ANSWERS[case]["code_and_response"]
    return code, body


def post(kube: KubeClient, namespace: str, manifest: Obj) -> tuple[int, Obj]:
    path = kube.resource(WIDGET_API, WIDGET).collection_path(namespace)
    return kube.raw("POST", path, manifest)


def assert_server_assigned_metadata(metadata: Obj, recorded: Obj, namespace: str) -> None:
    assert sorted(metadata) == sorted(recorded)
    assert metadata["namespace"] == namespace
    assert metadata["name"] == recorded["name"]
    assert metadata["generation"] == recorded["generation"]
    assert RFC3339.match(metadata["creationTimestamp"])
    assert UID.match(metadata["uid"])
    assert metadata["resourceVersion"].isdigit()


def assert_managed_fields_match(actual: list[Obj], recorded: list[Obj], manager: str) -> None:
    """Same entries, operations, subresources and field sets; the manager is whoever
    sent the request (the recording's client called itself Python-urllib)."""
    assert len(actual) == len(recorded), actual
    for got, want in zip(actual, recorded, strict=True):
        assert got["manager"] == manager
        assert RFC3339.match(got["time"])
        comparable = {k: v for k, v in got.items() if k not in ("manager", "time")}
        assert comparable == {k: v for k, v in want.items() if k not in ("manager", "time")}


def assert_same_status(answer: Obj, recorded: Obj) -> None:
    """The Status as recorded, except the order of its causes.

    A real server reports schema errors in the order it walks the schema's properties, a
    Go map (so the order changes from request to request); the causes must be the same set,
    and the message must list them as the causes list them.
    """
    causes = (answer.get("details") or {}).get("causes")
    recorded_causes = (recorded.get("details") or {}).get("causes")
    if not causes or not recorded_causes or len(recorded_causes) < 2:
        assert answer == recorded
        return

    def key(cause: Obj) -> str:
        return repr(sorted(cause.items()))

    assert sorted(causes, key=key) == sorted(recorded_causes, key=key)

    def without_causes(status: Obj) -> Obj:
        details = {k: v for k, v in status["details"].items() if k != "causes"}
        return {**{k: v for k, v in status.items() if k != "message"}, "details": details}

    assert without_causes(answer) == without_causes(recorded)
    prefix = recorded["message"].split(": [", 1)[0]
    listed = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    assert answer["message"] == f"{prefix}: [{listed}]"


@pytest.mark.parametrize("case", ERROR_CREATE_CASES)
def test_invalid_widget_is_rejected_exactly_as_the_api_server_does(
    kube: KubeClient, namespace: str, case: str
) -> None:
    code, body = expected(case)
    status, answer = post(kube, namespace, ANSWERS[case]["request"])
    assert status == code
    assert_same_status(answer, body)


@pytest.mark.parametrize("case", CREATED_CASES)
def test_valid_widget_is_created_pruned_and_defaulted_as_recorded(
    kube: KubeClient, namespace: str, case: str
) -> None:
    code, body = expected(case)
    status, answer = post(kube, namespace, ANSWERS[case]["request"])
    assert status == code, answer
    assert {k: answer[k] for k in ("apiVersion", "kind", "spec")} == {
        k: body[k] for k in ("apiVersion", "kind", "spec")
    }
    assert "status" not in answer
    assert_server_assigned_metadata(answer["metadata"], body["metadata"], namespace)
    assert_managed_fields_match(
        answer["metadata"]["managedFields"], body["metadata"]["managedFields"], "kiln-tests"
    )


@pytest.fixture
def immutable_widget(kube: KubeClient, namespace: str) -> Obj:
    """The recording's ``imm`` Widget: pinned to version 1."""
    return kube.create(widget("imm", version=1), namespace)


def assert_error(error: ApiError, case: str) -> None:
    code, body = expected(case)
    assert error.status == code
    assert_same_status(error.body, body)


def test_changing_a_field_guarded_by_a_transition_rule_is_rejected(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    with pytest.raises(ApiError) as caught:
        kube.patch(WIDGET_API, WIDGET, "imm", namespace, {"spec": {"version": 2}})
    assert_error(caught.value, "cel_transition_rule")


def test_update_with_a_stale_resource_version_conflicts(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    kube.patch(WIDGET_API, WIDGET, "imm", namespace, {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(ApiError) as caught:
        kube.replace(immutable_widget)  # still carries the first resourceVersion
    assert_error(caught.value, "conflict_stale_rv")


def test_creating_an_existing_name_is_already_exists(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    with pytest.raises(ApiError) as caught:
        kube.create(widget("imm", version=1), namespace)
    assert_error(caught.value, "already_exists")


def test_getting_a_missing_object_is_not_found(kube: KubeClient, namespace: str) -> None:
    with pytest.raises(ApiError) as caught:
        kube.get(WIDGET_API, WIDGET, "nope", namespace)
    assert_error(caught.value, "not_found")


def test_status_sent_to_the_main_resource_is_ignored(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    code, body = expected("status_write_on_main_ignored")
    answer = kube.patch(WIDGET_API, WIDGET, "imm", namespace, {"status": {"phase": "X"}})
    assert "status" not in answer
    assert answer["spec"] == body["spec"]
    assert answer["metadata"]["generation"] == body["metadata"]["generation"]
    # Nothing changed, so nothing was written: a real server keeps the resourceVersion.
    assert answer["metadata"]["resourceVersion"] == immutable_widget["metadata"]["resourceVersion"]
    assert code == 200


def test_spec_sent_to_the_status_subresource_is_ignored(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    _, body = expected("status_subresource_write")
    answer = kube.patch(
        WIDGET_API,
        WIDGET,
        "imm",
        namespace,
        {"status": {"phase": "Y"}, "spec": {"model": "changed"}},
        subresource="status",
    )
    assert answer["spec"] == body["spec"]
    assert answer["status"] == body["status"]
    assert answer["metadata"]["generation"] == 1
    assert_managed_fields_match(
        answer["metadata"]["managedFields"], body["metadata"]["managedFields"], "kiln-tests"
    )


def test_status_schema_violation_names_the_field_without_the_status_prefix(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    with pytest.raises(ApiError) as caught:
        kube.patch(
            WIDGET_API,
            WIDGET,
            "imm",
            namespace,
            {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}},
            subresource="status",
        )
    assert_error(caught.value, "status_enum_violation")


def test_watch_from_a_compacted_resource_version_reports_expired(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    code, body = expected("watch_too_old_rv")
    events = kube.watch(WIDGET_API, WIDGET, namespace, resource_version="1", timeout=5)
    first = next(iter(events))
    recorded = body["object"]
    assert first["type"] == body["type"] == "ERROR"
    # The server's current resourceVersion differs per run; the rest is exact.
    assert re.fullmatch(r"too old resource version: 1 \(\d+\)", first["object"]["message"])
    assert {k: v for k, v in first["object"].items() if k != "message"} == {
        k: v for k, v in recorded.items() if k != "message"
    }
    assert code == 200


def test_list_has_the_recorded_shape(
    kube: KubeClient, namespace: str, immutable_widget: Obj
) -> None:
    _, body = expected("list_shape")
    answer = kube.list(WIDGET_API, WIDGET, namespace)
    assert answer["apiVersion"] == body["apiVersion"]
    assert answer["kind"] == body["kind"]
    assert sorted(answer["metadata"]) == sorted(body["metadata"])
    assert answer["metadata"]["continue"] == ""
    assert int(answer["metadata"]["resourceVersion"]) >= int(
        immutable_widget["metadata"]["resourceVersion"]
    )
    (item,) = answer["items"]
    assert sorted(item["metadata"]) == body["items[0].metadata keys"]

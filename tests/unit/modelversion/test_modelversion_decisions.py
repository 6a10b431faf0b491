"""Pure decisions of the ModelVersion reconciler: validation outcomes from a Job and its
pods, the validation Job itself, approval records, the key metric and version selection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kiln_operator import naming
from kiln_operator.api.inferenceservice import SelectionPolicy
from kiln_operator.api.modelversion import ModelVersionSpec
from kiln_operator.builders.validation import desired_validation_job
from kiln_operator.decisions.registry import (
    approval_record,
    desired_status,
    key_metric,
    registry_notices,
)
from kiln_operator.decisions.selection import Selection, select_version
from kiln_operator.decisions.validation import (
    observe_validation,
    recorded_outcome,
    validation_key,
)

Obj = dict[str, Any]
SHA = "a" * 64
NOW = "2026-12-07T08:00:00Z"


def spec(**overrides: Any) -> ModelVersionSpec:
    body: Obj = {
        "model": "iris",
        "version": 3,
        "artifact": {"uri": "pvc://models/iris/model.onnx", "sha256": SHA},
    }
    body.update(overrides)
    return ModelVersionSpec.model_validate(body)


def model_version(name: str = "iris-v3", **metadata: Any) -> Obj:
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": "ml", "uid": "mv-uid", **metadata},
    }


def job(conditions: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": "iris-v3-val-1234abcd"},
        "status": {"conditions": conditions or []},
    }


def pod(state: Obj, phase: str = "Running") -> Obj:
    return {
        "metadata": {"name": "iris-v3-val-1234abcd-x"},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": naming.VALIDATOR_CONTAINER, "state": state}],
        },
    }


def terminated(report: Obj, exit_code: int = 0, finished: str = NOW) -> Obj:
    return pod(
        {
            "terminated": {
                "exitCode": exit_code,
                "message": json.dumps(report),
                "finishedAt": finished,
            }
        },
        "Succeeded" if exit_code == 0 else "Failed",
    )


GOOD = {
    "ok": True,
    "sha256": SHA,
    "sizeBytes": 1234,
    "opset": 17,
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
}


def test_a_good_report_is_ready_with_its_signature_in_status() -> None:
    outcome = observe_validation(job(), [terminated(GOOD)], SHA)
    assert (outcome.phase, outcome.verdict.status) == ("Ready", "True")
    assert outcome.verdict.message == "loaded and ran once: input FP32[-1,4] -> output FP32[-1,3]"
    status = desired_status({}, 2, outcome, "iris-v3-val-1234abcd", None, None, NOW)
    assert status["signature"] == {"inputs": GOOD["inputs"], "outputs": GOOD["outputs"]}
    assert (status["sizeBytes"], status["opset"], status["validatedAt"]) == (1234, 17, NOW)
    ready = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert ready == {"Validated": ("True", "Validated"), "Ready": ("True", "Validated")}


@pytest.mark.parametrize(
    "reason", ["DigestMismatch", "NotOnnx", "LoadFailed", "InferenceFailed", "FetchFailed"]
)
def test_a_refusal_is_failed_with_the_reason_the_report_names(reason: str) -> None:
    report = {"ok": False, "reason": reason, "error": f"precisely: {reason}"}
    outcome = observe_validation(job(), [terminated(report, exit_code=3)], SHA)
    assert (outcome.phase, outcome.verdict.reason) == ("Failed", reason)
    assert outcome.verdict.message == f"precisely: {reason}"
    status = desired_status({}, 1, outcome, "j", None, None, NOW)
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Validated": reason,
        "Ready": reason,
    }
    (notice,) = registry_notices({}, status)
    assert (notice.type, notice.reason) == ("Warning", reason)


def test_a_report_for_other_bytes_is_a_digest_mismatch() -> None:
    outcome = observe_validation(job(), [terminated({**GOOD, "sha256": "b" * 64})], SHA)
    assert (outcome.phase, outcome.verdict.reason) == ("Failed", "DigestMismatch")


def test_the_newest_report_wins_over_a_crashed_attempt() -> None:
    crashed = pod(
        {
            "terminated": {
                "exitCode": 137,
                "reason": "OOMKilled",
                "finishedAt": "2026-12-07T07:00:00Z",
            }
        },
        "Failed",
    )
    outcome = observe_validation(job(), [crashed, terminated(GOOD)], SHA)
    assert outcome.phase == "Ready"


def test_a_job_past_its_deadline_without_a_report_timed_out() -> None:
    failed = job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                   "message": "Job was active longer than specified deadline"}])  # fmt: skip
    outcome = observe_validation(failed, [], SHA)
    assert (outcome.phase, outcome.verdict.reason) == ("Failed", "ValidationTimedOut")
    assert "DeadlineExceeded" in outcome.verdict.message


def test_a_running_pod_is_validating_and_a_pull_failure_is_pending_with_its_reason() -> None:
    running = observe_validation(job(), [pod({"running": {"startedAt": NOW}})], SHA)
    assert (running.phase, running.verdict.reason) == ("Validating", "Validating")
    waiting = pod(
        {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}, "Pending"
    )
    blocked = observe_validation(job(), [waiting], SHA)
    assert (blocked.phase, blocked.verdict.reason) == ("Pending", "ImagePullBackOff")
    assert "no such image" in blocked.verdict.message


def test_a_recorded_verdict_for_the_same_artifact_is_kept_without_a_job() -> None:
    outcome = observe_validation(job(), [terminated(GOOD)], SHA)
    status = desired_status({}, 1, outcome, "iris-v3-val-1234abcd", None, None, NOW)
    assert recorded_outcome(status, "iris-v3-val-1234abcd")
    assert not recorded_outcome(status, "iris-v3-val-99999999")
    kept = desired_status(
        status, 2, None, "iris-v3-val-1234abcd", None, None, "2027-01-01T00:00:00Z"
    )
    assert {k: v for k, v in kept.items() if k != "conditions"} == {
        k: v for k, v in status.items() if k not in ("conditions", "observedGeneration")
    } | {"observedGeneration": 2}
    assert [c["lastTransitionTime"] for c in kept["conditions"]] == [NOW, NOW]


def test_the_validation_key_follows_the_artifact_baseline_and_credentials_only() -> None:
    base = validation_key(spec())
    assert validation_key(spec(approved=True, metrics={"accuracy": 0.9})) == base
    assert validation_key(spec(baseline={"uri": "pvc://models/iris/baseline.json"})) != base
    assert validation_key(spec(credentials={"name": "store"})) != base


def test_the_validation_job_mounts_claims_read_only_and_fails_fast_on_a_verdict() -> None:
    mv_spec = spec(
        baseline={"uri": "pvc://stats/iris/baseline.json", "sha256": "b" * 64},
        credentials={"name": "store"},
    )
    body = desired_validation_job(model_version(), mv_spec, "iris-v3-val-1", "kiln-server:dev", 300)
    pod_spec = body["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["args"] == [
        "validate", "--uri", "pvc://models/iris/model.onnx", "--sha256", SHA,
        "--baseline-uri", "pvc://stats/iris/baseline.json", "--baseline-sha256", "b" * 64,
        "--pvc-root", "/mnt/pvc", "--termination-message-path", "/dev/termination-log",
    ]  # fmt: skip
    assert {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]} == {
        "/tmp": None, "/mnt/pvc/models": True, "/mnt/pvc/stats": True,
    }  # fmt: skip
    assert container["envFrom"] == [{"secretRef": {"name": "store"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert body["spec"]["activeDeadlineSeconds"] == 300
    fail_fast = body["spec"]["podFailurePolicy"]["rules"][0]
    assert fail_fast["action"] == "FailJob"
    assert fail_fast["onExitCodes"]["values"] == [3]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "mv-uid"
    assert body["metadata"]["labels"][naming.MODEL_VERSION_OWNER_LABEL] == "iris-v3"


def test_approval_names_the_annotation_else_the_field_manager_with_its_time() -> None:
    managed = [
        {"manager": "kiln-operator", "operation": "Update", "time": "2026-12-07T07:00:00Z",
         "fieldsV1": {"f:spec": {"f:model": {}}}},
        {"manager": "kubectl-patch", "operation": "Update", "time": "2026-12-07T07:30:00Z",
         "fieldsV1": {"f:spec": {"f:approved": {}}}},
        {"manager": "kiln-operator", "operation": "Update", "subresource": "status",
         "time": "2026-12-07T07:40:00Z", "fieldsV1": {"f:status": {}}},
    ]  # fmt: skip
    approved = spec(approved=True)
    record = approval_record(model_version(managedFields=managed), approved, None, NOW)
    assert record == {
        "approvedBy": "kubectl-patch",
        "fieldManager": "kubectl-patch",
        "approvedAt": "2026-12-07T07:30:00Z",
    }
    annotated = model_version(
        managedFields=managed, annotations={naming.APPROVED_BY_ANNOTATION: "alice@example.com"}
    )
    assert approval_record(annotated, approved, None, NOW)["approvedBy"] == "alice@example.com"  # type: ignore[index]
    assert approval_record(model_version(), approved, record, NOW) == record
    assert approval_record(model_version(), spec(), record, NOW) is None
    assert approval_record(model_version(), approved, None, NOW) == {
        "approvedBy": "unknown",
        "approvedAt": NOW,
    }


def test_the_key_metric_is_the_named_one_else_the_first_by_name() -> None:
    assert key_metric(spec(metrics={"loss": 0.2, "accuracy": 0.94})) == "accuracy=0.94"
    assert key_metric(spec(metrics={"loss": 0.2, "accuracy": 0.94}, keyMetric="loss")) == "loss=0.2"
    assert key_metric(spec()) is None


def version(number: int, *, ready: bool = True, approved: bool = False, model: str = "iris",
            **metrics: float) -> Obj:  # fmt: skip
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {"name": f"{model}-v{number}"},
        "spec": {"model": model, "version": number, "approved": approved, "metrics": metrics},
        "status": {"phase": "Ready" if ready else "Failed", "conditions": conditions},
    }


def chosen_name(selection: Selection) -> str | None:
    return selection.chosen.name if selection.chosen is not None else None


def test_selection_takes_the_newest_ready_version_that_passes_and_says_why_newer_ones_did_not() -> (
    None
):
    versions = [
        version(1, accuracy=0.91),
        version(2, accuracy=0.93, approved=True),
        version(3, accuracy=0.95, ready=False),
        version(4, accuracy=0.88, approved=True),
        version(5, accuracy=0.97),
        version(9, model="other", accuracy=0.99, approved=True),
    ]
    policy = SelectionPolicy.model_validate(
        {"minMetrics": {"accuracy": 0.9}, "requireApproval": True}
    )
    selection = select_version(versions, "iris", policy)
    assert chosen_name(selection) == "iris-v2"
    assert [(s.version, s.reason) for s in selection.skipped] == [
        (5, "not approved (requireApproval)"),
        (4, "accuracy 0.88 is below the minimum 0.9"),
        (3, "not Ready (not validated)"),
    ]


def test_a_candidate_must_beat_the_serving_version_which_itself_always_passes() -> None:
    serving = version(2, accuracy=0.93, loss=0.3)
    policy = SelectionPolicy.model_validate(
        {"mustBeatServing": [{"metric": "accuracy"}, {"metric": "loss", "better": "lower"}]}
    )
    worse = select_version([serving, version(3, accuracy=0.92, loss=0.2)], "iris", policy, serving)
    assert chosen_name(worse) == "iris-v2"
    assert worse.skipped[0].reason == (
        "accuracy 0.92 does not beat serving iris-v2 (0.93; higher is better)"
    )
    lossy = select_version([serving, version(3, accuracy=0.95, loss=0.3)], "iris", policy, serving)
    assert lossy.skipped[0].reason.startswith("loss 0.3 does not beat serving iris-v2")
    better = select_version([serving, version(3, accuracy=0.95, loss=0.1)], "iris", policy, serving)
    assert chosen_name(better) == "iris-v3"
    first = select_version([version(1, accuracy=0.5)], "iris", policy, None)
    assert chosen_name(first) == "iris-v1"
    none = select_version([version(1, ready=False)], "iris", SelectionPolicy(), None)
    assert chosen_name(none) is None
    assert len(none.skipped) == 1


def test_the_validation_job_pulls_with_the_operators_model_server_secrets_only_when_given() -> None:
    plain = desired_validation_job(model_version(), spec(), "iris-v3-val-1", "kiln-server:dev", 300)
    assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]
    body = desired_validation_job(
        model_version(), spec(), "iris-v3-val-1", "kiln-server:dev", 300, ("regcred",)
    )
    assert body["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]

"""TrainingJob end to end at the API level: the real ``kiln-operator`` process against the
session's cluster, with the test playing the Job controller and the kubelet.

Covers: the Job a run gets (GPU, workers, env, volumes, security context); results becoming
run metrics and a ModelVersion with lineage; the registration gate; re-apply, spec edits,
the run annotation, schedules, suspend and history pruning; Job failures as condition
reasons and events; malformed results; and unknown accelerator types.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiln_operator.decisions.requests import request_annotation
from tests.support import crashing_operator
from tests.support.backends import REPO_ROOT as REPO
from tests.support.backends import Cluster
from tests.support.kube import KubeClient, Obj
from tests.support.kubelet import (
    DEADLINE_EXCEEDED,
    Workloads,
    finish_orphaning,
    set_pod_running,
    set_pod_waiting,
)
from tests.support.operator import OperatorProcess

KILN = "kiln.dev/v1alpha1"
SHA = "5d" * 32
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"
WAIT = 30.0


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def training_operator(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """``kiln-operator`` with an accelerator map that knows ``nvidia-h100``."""
    accelerator_map = tmp_path / "accelerators.yaml"
    accelerator_map.write_text(f"nvidia-h100:\n  nvidia.com/gpu.product: {H100_PRODUCT}\n")
    process = OperatorProcess(
        cluster.kubeconfig,
        namespace,
        tmp_path / "kiln-operator.log",
        extra_args=["--accelerator-map", str(accelerator_map)],
    )
    with process.running():
        yield process


def training_job(name: str = "iris", annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    body: Obj = {
        "model": "iris",
        "image": "ghcr.io/kiln/train:1",
        "output": {"uri": "pvc://models/iris"},
    }
    body.update(spec)
    metadata: Obj = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": KILN, "kind": "TrainingJob", "metadata": metadata, "spec": body}


def result(**overrides: Any) -> str:
    document: Obj = {
        "metrics": {"accuracy": 0.96, "f1": 0.95},
        "artifact": "model.onnx",
        "sha256": SHA,
    }
    document.update(overrides)
    return json.dumps(document)


def jobs_of(kube: KubeClient, namespace: str, name: str = "iris") -> list[Obj]:
    items = kube.list("batch/v1", "Job", namespace, label_selector=f"kiln.dev/trainingjob={name}")
    return sorted(
        items["items"], key=lambda j: int(j["metadata"]["annotations"]["kiln.dev/run-number"])
    )


def wait_until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
    last: Any = None
    while dt.datetime.now() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def wait_for_jobs(kube: KubeClient, namespace: str, count: int, name: str = "iris") -> list[Obj]:
    return wait_until(  # type: ignore[no-any-return]
        f"{count} Job(s) of {name}",
        lambda: (jobs := jobs_of(kube, namespace, name)) and len(jobs) == count and jobs,
    )


def status_of(kube: KubeClient, namespace: str, name: str = "iris") -> Obj:
    return kube.get(KILN, "TrainingJob", name, namespace).get("status", {})


def wait_for_status(
    kube: KubeClient, namespace: str, predicate: Callable[[Obj], bool], name: str = "iris"
) -> Obj:
    return wait_until(  # type: ignore[no-any-return]
        f"status of {name}", lambda: (s := status_of(kube, namespace, name)) and predicate(s) and s
    )


def condition(status: Obj, type_: str) -> Obj:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def run_row(status: Obj, index: int = -1) -> Obj:
    runs = status.get("runs", [])
    return runs[index] if runs else {}


def events_of(kube: KubeClient, namespace: str, name: str = "iris") -> list[Obj]:
    items = kube.list("v1", "Event", namespace)["items"]
    return [e for e in items if e["involvedObject"].get("name") == name]


def event_reasons(kube: KubeClient, namespace: str) -> list[str]:
    return [e["reason"] for e in events_of(kube, namespace)]


def model_versions(kube: KubeClient, namespace: str) -> list[Obj]:
    return sorted(
        kube.list(KILN, "ModelVersion", namespace)["items"], key=lambda mv: mv["spec"]["version"]
    )


def env_of(job: Obj) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- runs as Jobs --------------------------------------------------------------------------


def test_a_run_gets_a_job_with_gpus_workers_env_output_and_a_restricted_pod(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest(
        [
            training_job(
                accelerator={"type": "nvidia-h100", "count": 2},
                workers=2,
                hyperparameters={"learning_rate": "0.01"},
                dataset={"uri": "s3://datasets/iris", "version": "v3"},
            )
        ],
        namespace,
    )
    (job,) = wait_for_jobs(kube, namespace, 1)
    run = job["metadata"]["name"]
    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    # Quantities read back as canonical strings, as a real API server encodes them.
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": H100_PRODUCT}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "models"}
    env = env_of(job)
    assert env["KILN_RUN"] == run
    assert env["KILN_OUTPUT_DIR"] == f"/kiln/output/{run}"
    assert env["KILN_DATASET_URI"] == "s3://datasets/iris"
    assert env["KILN_HP_LEARNING_RATE"] == "0.01"
    assert env["WORLD_SIZE"] == "2"
    assert env["MASTER_ADDR"] == f"{run}-0.{run}"
    service = kube.get("v1", "Service", run, namespace)
    assert service["spec"]["clusterIP"] == "None"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("TrainingJob", "iris")
    status = wait_for_status(kube, namespace, lambda s: s.get("latestRun") == run)
    assert run_row(status)["hyperparameters"] == {"learning_rate": "0.01"}


def test_a_successful_run_records_its_result_and_registers_a_model_version(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    kube.apply_manifest(
        [training_job(dataset={"uri": "s3://datasets/iris"}, hyperparameters={"C": "1.0"})],
        namespace,
    )
    (job,) = wait_for_jobs(kube, namespace, 1)
    run = job["metadata"]["name"]
    workloads.complete_job(job, message=result(baseline="baseline.json"))

    status = wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v1")
    row = run_row(status)
    assert row["phase"] == "Succeeded"
    assert row["metrics"] == {"accuracy": 0.96, "f1": 0.95}
    assert row["artifact"] == {"uri": f"pvc://models/iris/{run}/model.onnx", "sha256": SHA}
    assert row["modelVersion"] == "iris-v1"
    assert status["phase"] == "Succeeded"
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Registered")["reason"] == "Registered"

    (mv,) = model_versions(kube, namespace)
    tj = kube.get(KILN, "TrainingJob", "iris", namespace)
    assert mv["metadata"]["name"] == "iris-v1"
    assert "ownerReferences" not in mv["metadata"]
    assert mv["spec"]["version"] == 1
    assert mv["spec"]["artifact"]["uri"] == f"pvc://models/iris/{run}/model.onnx"
    assert mv["spec"]["artifact"]["sha256"] == SHA
    assert mv["spec"]["baseline"] == {"uri": f"pvc://models/iris/{run}/baseline.json"}
    assert mv["spec"]["metrics"] == {"accuracy": 0.96, "f1": 0.95}
    assert mv["spec"]["lineage"] == {
        "trainingJob": {"name": "iris", "uid": tj["metadata"]["uid"]},
        "run": run,
        "image": "ghcr.io/kiln/train:1",
        "dataset": {"uri": "s3://datasets/iris"},
        "hyperparameters": {"C": "1.0"},
    }
    wait_until(
        "events",
        lambda: {"RunStarted", "RunSucceeded", "Registered"} <= set(event_reasons(kube, namespace)),
    )


def test_a_run_below_min_metrics_registers_nothing_and_names_the_metric(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    kube.apply_manifest([training_job(register={"minMetrics": {"accuracy": 0.99}})], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(job, message=result())
    status = wait_for_status(
        kube, namespace, lambda s: run_row(s).get("reason") == "BelowMinMetrics"
    )
    registered = condition(status, "Registered")
    assert (registered["status"], registered["reason"]) == ("False", "BelowMinMetrics")
    assert "accuracy 0.96 < minimum 0.99" in registered["message"]
    assert condition(status, "Ready")["status"] == "False"
    assert model_versions(kube, namespace) == []


def test_reapplying_the_same_spec_starts_no_new_run_and_an_edit_does(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest([training_job()], namespace)
    (first,) = wait_for_jobs(kube, namespace, 1)
    wait_for_status(kube, namespace, lambda s: s.get("latestRun") == first["metadata"]["name"])
    reconciles = training_operator.metric("kiln_operator_reconciles_total", result="ok")
    kube.apply_manifest([training_job(), training_job(name="other", model="other")], namespace)
    # Both applies are reconciled (the other TrainingJob starts its run) ...
    wait_for_jobs(kube, namespace, 1, name="other")
    wait_until(
        "the re-applied TrainingJob to be reconciled",
        lambda: (
            training_operator.metric("kiln_operator_reconciles_total", result="ok")
            >= reconciles + 2
        ),
    )
    # ... and the unchanged one started nothing.
    assert [j["metadata"]["name"] for j in jobs_of(kube, namespace)] == [first["metadata"]["name"]]

    kube.apply_manifest([training_job(hyperparameters={"C": "2"})], namespace)
    jobs = wait_for_jobs(kube, namespace, 2)
    assert jobs[0]["metadata"]["name"] == first["metadata"]["name"]
    annotations = jobs[1]["metadata"]["annotations"]
    assert annotations["kiln.dev/trigger"] == "spec"
    assert (
        annotations["kiln.dev/spec-hash"] != first["metadata"]["annotations"]["kiln.dev/spec-hash"]
    )


def test_a_new_run_annotation_value_starts_one_manual_run(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    kube.apply_manifest([training_job()], namespace)
    (first,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(first, message=result())
    wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v1")

    kube.apply_manifest([training_job(annotations={"kiln.dev/run": "retrain-1"})], namespace)
    jobs = wait_for_jobs(kube, namespace, 2)
    assert jobs[1]["metadata"]["annotations"]["kiln.dev/trigger"] == "manual"
    status = wait_for_status(kube, namespace, lambda s: s.get("handledRunRequest") == "retrain-1")
    assert run_row(status)["trigger"] == "manual"
    workloads.complete_job(jobs[1], message=result())
    wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v2")
    assert len(jobs_of(kube, namespace)) == 2


def move_schedule_back(kube: KubeClient, namespace: str, hours: int) -> None:
    """Pretend the operator last acted on the schedule ``hours`` ago (a missed time)."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    kube.patch(
        KILN,
        "TrainingJob",
        "iris",
        namespace,
        {"status": {"lastScheduleTime": past.strftime("%Y-%m-%dT%H:00:00Z")}},
        subresource="status",
    )


def this_hour() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:00:00Z")


def test_a_missed_scheduled_time_starts_a_run(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    """The clock is the real one: the test moves ``lastScheduleTime`` into the past, as if
    the operator had been down over several scheduled times; exactly one run starts."""
    kube.apply_manifest([training_job(schedule="0 * * * *", concurrencyPolicy="Allow")], namespace)
    (first,) = wait_for_jobs(kube, namespace, 1)
    assert first["metadata"]["annotations"]["kiln.dev/trigger"] == "spec"
    status = wait_for_status(
        kube, namespace, lambda s: "nextScheduleTime" in s and s.get("latestRun") is not None
    )
    # No run has finished yet; where a real scheduler runs, the run's pod is also pending on
    # its volume claim (which no test creates), and the operator says that instead.
    ready = condition(status, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] in {"NoRunFinished", "Unschedulable"}

    hour_before = this_hour()
    move_schedule_back(kube, namespace, hours=3)

    first_run, job = wait_for_jobs(kube, namespace, 2)
    assert first_run["metadata"]["name"] == first["metadata"]["name"]
    annotations = job["metadata"]["annotations"]
    assert annotations["kiln.dev/trigger"] == "schedule"
    # The most recent missed time: this hour (either side of a boundary the test may cross).
    scheduled = annotations["kiln.dev/scheduled-time"]
    assert scheduled in {hour_before, this_hour()}
    status = wait_for_status(kube, namespace, lambda s: s.get("lastScheduleTime") == scheduled)
    assert run_row(status)["trigger"] == "schedule"
    assert len(jobs_of(kube, namespace)) == 2


def test_a_scheduled_training_job_runs_on_creation_and_on_every_spec_edit(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    """The schedule adds runs; it never holds back the run a new spec asks for."""
    kube.apply_manifest([training_job(schedule="0 3 * * *")], namespace)
    (first,) = wait_for_jobs(kube, namespace, 1)
    assert first["metadata"]["annotations"]["kiln.dev/trigger"] == "spec"
    status = wait_for_status(
        kube, namespace, lambda s: s.get("latestRun") == first["metadata"]["name"]
    )
    assert "nextScheduleTime" in status

    kube.apply_manifest([training_job(schedule="0 3 * * *", hyperparameters={"C": "2"})], namespace)
    jobs = wait_for_jobs(kube, namespace, 2)
    edited = jobs[1]
    assert edited["metadata"]["annotations"]["kiln.dev/trigger"] == "spec"
    assert env_of(edited)["KILN_HP_C"] == "2"
    status = wait_for_status(
        kube, namespace, lambda s: s.get("latestRun") == edited["metadata"]["name"]
    )
    assert run_row(status)["trigger"] == "spec"
    assert "nextScheduleTime" in status


def test_a_scheduled_run_replaces_the_active_one_under_concurrency_policy_replace(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest([training_job()], namespace)
    (old,) = wait_for_jobs(kube, namespace, 1)
    wait_for_status(kube, namespace, lambda s: s.get("latestRun") == old["metadata"]["name"])
    scheduled = training_job(schedule="0 * * * *", concurrencyPolicy="Replace")
    kube.apply_manifest([scheduled], namespace)
    wait_for_status(kube, namespace, lambda s: "nextScheduleTime" in s)
    move_schedule_back(kube, namespace, hours=2)

    (new,) = wait_until(
        "the scheduled run to replace the active one",
        lambda: (
            (jobs := jobs_of(kube, namespace))
            and [j["metadata"]["name"] for j in jobs] != [old["metadata"]["name"]]
            and len(jobs) == 1
            and jobs
        ),
    )
    assert new["metadata"]["annotations"]["kiln.dev/trigger"] == "schedule"
    status = wait_for_status(
        kube, namespace, lambda s: s.get("latestRun") == new["metadata"]["name"]
    )
    replaced = run_row(status, 0)
    assert (replaced["name"], replaced["phase"], replaced["reason"]) == (
        old["metadata"]["name"],
        "Failed",
        "Replaced",
    )


def test_suspend_stops_new_runs_and_suspends_the_active_job(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest([training_job()], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    kube.apply_manifest([training_job(suspend=True, hyperparameters={"C": "9"})], namespace)
    wait_until(
        "the active Job to be suspended",
        lambda: (
            kube.get("batch/v1", "Job", job["metadata"]["name"], namespace)["spec"].get("suspend")
            is True
        ),
    )
    status = wait_for_status(
        kube, namespace, lambda s: condition(s, "Running").get("reason") == "Suspended"
    )
    assert len(jobs_of(kube, namespace)) == 1, "a suspended TrainingJob started a run"
    assert (
        status["observedGeneration"]
        == kube.get(KILN, "TrainingJob", "iris", namespace)["metadata"]["generation"]
    )

    kube.apply_manifest([training_job(suspend=False, hyperparameters={"C": "9"})], namespace)
    jobs = wait_for_jobs(kube, namespace, 2)
    assert (
        kube.get("batch/v1", "Job", jobs[0]["metadata"]["name"], namespace)["spec"]["suspend"]
        is False
    )


def test_the_history_limit_prunes_the_oldest_jobs(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    names = []
    for value in ("1", "2", "3"):
        kube.apply_manifest(
            [training_job(runsHistoryLimit=2, hyperparameters={"C": value})], namespace
        )
        job = wait_until(
            f"run with C={value}",
            lambda v=value: next(
                (j for j in jobs_of(kube, namespace) if env_of(j).get("KILN_HP_C") == v), None
            ),
        )
        names.append(job["metadata"]["name"])
        workloads.complete_job(job, message=result())
        wait_for_status(
            kube,
            namespace,
            lambda s, n=job["metadata"]["name"]: (
                run_row(s).get("name") == n and run_row(s).get("reason") == "Registered"
            ),
        )
    wait_until(
        "the oldest Job to be pruned",
        lambda: [j["metadata"]["name"] for j in jobs_of(kube, namespace)] == names[1:],
    )
    status = status_of(kube, namespace)
    assert [r["name"] for r in status["runs"]] == names[1:]
    assert [mv["metadata"]["name"] for mv in model_versions(kube, namespace)] == [
        "iris-v1",
        "iris-v2",
        "iris-v3",
    ]


def test_a_version_name_held_by_another_models_object_is_skipped_not_retried_forever(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    foreign: Obj = {
        "apiVersion": KILN,
        "kind": "ModelVersion",
        "metadata": {"name": "iris-v1"},
        "spec": {
            "model": "iris-legacy",
            "version": 1,
            "artifact": {"uri": "s3://legacy/model.onnx", "sha256": SHA, "format": "onnx"},
        },
    }
    kube.apply_manifest([foreign, training_job()], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(job, message=result())
    status = wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v2")
    assert run_row(status)["modelVersion"] == "iris-v2"
    versions = {
        mv["metadata"]["name"]: mv["spec"]["model"] for mv in model_versions(kube, namespace)
    }
    assert versions == {"iris-v1": "iris-legacy", "iris-v2": "iris"}


def test_a_training_job_recreated_over_orphaned_runs_numbers_past_them(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess, cluster: Cluster
) -> None:
    """``kubectl delete --cascade=orphan`` leaves the runs' Jobs; a namesake created later
    must neither adopt them nor collide with their names."""
    kube.apply_manifest([training_job()], namespace)
    (orphan,) = wait_for_jobs(kube, namespace, 1)
    wait_for_status(kube, namespace, lambda s: s.get("latestRun") == orphan["metadata"]["name"])
    owner = kube.get(KILN, "TrainingJob", "iris", namespace)
    kube.delete(KILN, "TrainingJob", "iris", namespace, propagation_policy="Orphan")
    finish_orphaning(kube, owner, cluster.runs_controllers)
    wait_until(
        "the TrainingJob to be gone",
        lambda: kube.get_or_none(KILN, "TrainingJob", "iris", namespace) is None,
    )

    kube.apply_manifest([training_job()], namespace)
    old, new = wait_for_jobs(kube, namespace, 2)
    assert old["metadata"]["name"] == orphan["metadata"]["name"]
    assert new["metadata"]["annotations"]["kiln.dev/run-number"] == "2"
    status = wait_for_status(
        kube, namespace, lambda s: s.get("latestRun") == new["metadata"]["name"]
    )
    assert [row["name"] for row in status["runs"]] == [new["metadata"]["name"]]


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["BackoffLimitExceeded", DEADLINE_EXCEEDED])
def test_a_failed_job_maps_to_its_reason_and_a_warning_event(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    reason: str,
    workloads: Workloads,
) -> None:
    # Where the real Job controller runs, it decides the reason: no retry for the first,
    # a short deadline that passes before the retry (10 s back-off) for the second.
    limits: dict[str, Any] = {"backoffLimit": 0}
    if reason == DEADLINE_EXCEEDED:
        limits = {"backoffLimit": 6, "activeDeadlineSeconds": 3}
    kube.apply_manifest([training_job(**limits)], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(job, exit_code=137, message="CUDA out of memory", failure_reason=reason)
    status = wait_for_status(kube, namespace, lambda s: s.get("phase") == "Failed")
    succeeded = condition(status, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", reason)
    assert "exited with code 137" in succeeded["message"]
    assert "CUDA out of memory" in succeeded["message"]
    assert condition(status, "Ready")["reason"] == reason
    event = wait_until(
        "a warning event",
        lambda: next((e for e in events_of(kube, namespace) if e["reason"] == reason), None),
    )
    assert event["type"] == "Warning"


def test_an_image_pull_failure_is_reported_while_the_run_waits(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    kube.apply_manifest([training_job(image="ghcr.io/kiln/missing:0")], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    (pod,) = workloads.job_pods(job)
    set_pod_waiting(kube, pod, reason="ImagePullBackOff")
    status = wait_for_status(
        kube, namespace, lambda s: condition(s, "Running").get("reason") == "ImagePullBackOff"
    )
    assert "Back-off pulling image" in condition(status, "Running")["message"]
    assert condition(status, "Ready")["reason"] == "ImagePullBackOff"
    wait_until(
        "an ImagePullBackOff event", lambda: "ImagePullBackOff" in event_reasons(kube, namespace)
    )

    set_pod_running(kube, kube.get("v1", "Pod", pod["metadata"]["name"], namespace))
    workloads.job_active(job, 1)
    wait_for_status(kube, namespace, lambda s: condition(s, "Running").get("status") == "True")


def test_status_stays_writable_when_a_pod_message_and_a_run_request_exceed_its_bounds(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    """The API server refuses a status whose fields break the CRD's bounds; what runs and
    users supply is cut to fit, so the status keeps telling the truth."""
    request = "retrain-" + "r" * 1000
    kube.apply_manifest([training_job(annotations={"kiln.dev/run": request})], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    assert job["metadata"]["annotations"]["kiln.dev/trigger"] == "manual"
    (pod,) = workloads.job_pods(job)
    set_pod_waiting(kube, pod, reason="ErrImagePull", message="pull failed: " + "e" * 10_000)
    status = wait_for_status(kube, namespace, lambda s: run_row(s).get("reason") == "ErrImagePull")
    assert len(run_row(status)["message"]) <= 4096
    assert run_row(status)["message"].startswith(f"pod {pod['metadata']['name']}: pull failed")
    assert status["handledRunRequest"].startswith("retrain-rrr")
    assert len(status["handledRunRequest"]) <= 256
    time.sleep(1)  # a recorded request must not start the same run again
    assert len(jobs_of(kube, namespace)) == 1


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("all done!", "not valid JSON", id="not-json"),
        pytest.param(
            json.dumps({"metrics": {"a": 1}, "artifact": "m.onnx"}),
            "needs 'sha256'",
            id="no-digest",
        ),
        pytest.param(
            json.dumps({"metrics": {"a": "high"}, "artifact": "m", "sha256": SHA}),
            "'a' must be a number",
            id="wrong-type",
        ),
        pytest.param("", "wrote no result", id="empty"),
    ],
)
def test_a_malformed_result_is_succeeded_unregistered_with_a_clear_condition(
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    message: str,
    expected: str,
    workloads: Workloads,
) -> None:
    kube.apply_manifest([training_job()], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(job, message=message)
    status = wait_for_status(kube, namespace, lambda s: run_row(s).get("reason") == "InvalidResult")
    assert run_row(status)["phase"] == "Succeeded"
    registered = condition(status, "Registered")
    assert (registered["status"], registered["reason"]) == ("False", "InvalidResult")
    assert expected in registered["message"]
    assert model_versions(kube, namespace) == []
    assert training_operator.is_running()


def test_an_unknown_accelerator_type_is_a_condition_not_a_crash(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest([training_job(accelerator={"type": "tpu-v5", "count": 1})], namespace)
    status = wait_for_status(
        kube, namespace, lambda s: condition(s, "Ready").get("reason") == "UnknownAccelerator"
    )
    assert (
        "'tpu-v5' is not in the operator's accelerator map (known types: nvidia-h100)"
        in condition(status, "Ready")["message"]
    )
    assert jobs_of(kube, namespace) == []
    wait_until("a warning event", lambda: "UnknownAccelerator" in event_reasons(kube, namespace))
    kube.apply_manifest([training_job(accelerator={"type": "nvidia-h100", "count": 1})], namespace)
    wait_for_jobs(kube, namespace, 1)


# -- crashes and steady state ---------------------------------------------------------------


def operator_process(
    cluster: Cluster, namespace: str, log: Path, crash_after: str | None = None, *args: str
) -> OperatorProcess:
    """The operator; with ``crash_after`` (a plural), one that SIGKILLs itself right after
    creating its first object of that kind."""
    command = [*crashing_operator.COMMAND, crash_after] if crash_after else None
    env = {"PYTHONPATH": str(REPO)}  # the wrapper lives in the repository's tests package
    process = OperatorProcess(
        cluster.kubeconfig, namespace, log, extra_args=args, env=env, command=command
    )
    process.start()
    return process


def wait_for_exit(process: OperatorProcess) -> None:
    wait_until("the operator to kill itself at the crash point", lambda: not process.is_running())
    assert process.kill() == -9, "the crash point ends the process with SIGKILL"


def test_a_crash_between_a_write_and_status_neither_duplicates_nor_skips(
    cluster: Cluster,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    workloads: Workloads,
) -> None:
    log = tmp_path / "kiln-operator.log"
    # 1. The operator dies right after creating the run's Job, before status mentions it.
    crashing = operator_process(cluster, namespace, log, "jobs")
    kube.apply_manifest([training_job()], namespace)
    wait_for_exit(crashing)
    (job,) = jobs_of(kube, namespace)
    assert "runs" not in status_of(kube, namespace)

    # 2. Restarted, it adopts that Job instead of starting another; then it dies right after
    #    creating the run's ModelVersion, again before status records it.
    crashing = operator_process(cluster, namespace, log, "modelversions")
    wait_for_status(kube, namespace, lambda s: s.get("latestRun") == job["metadata"]["name"])
    workloads.complete_job(job, message=result())
    wait_for_exit(crashing)
    assert [mv["metadata"]["name"] for mv in model_versions(kube, namespace)] == ["iris-v1"]
    assert "modelVersion" not in run_row(status_of(kube, namespace))

    # 3. Restarted once more, it adopts iris-v1 and the next run gets iris-v2: no gap.
    healthy = operator_process(cluster, namespace, log)
    try:
        wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v1")
        assert len(jobs_of(kube, namespace)) == 1
        kube.apply_manifest([training_job(hyperparameters={"C": "2"})], namespace)
        second = wait_for_jobs(kube, namespace, 2)[1]
        workloads.complete_job(second, message=result())
        wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v2")
        versions = model_versions(kube, namespace)
        assert [(mv["metadata"]["name"], mv["spec"]["version"]) for mv in versions] == [
            ("iris-v1", 1),
            ("iris-v2", 2),
        ]
        assert [mv["spec"]["lineage"]["run"] for mv in versions] == [
            job["metadata"]["name"],
            second["metadata"]["name"],
        ]
    finally:
        healthy.stop()
    healthy.assert_no_unhandled_exceptions()


def test_two_replicas_racing_never_duplicate_a_run_or_a_version(
    cluster: Cluster,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    workloads: Workloads,
) -> None:
    """Two operators without peering reconcile the same objects at once: Job names and
    version numbers are allocated by create-or-AlreadyExists, so nothing is doubled."""
    replicas = [operator_process(cluster, namespace, tmp_path / f"replica-{i}.log") for i in (1, 2)]
    try:
        names = ("alpha", "beta", "gamma", "delta")
        kube.apply_manifest([training_job(name=name) for name in names], namespace)
        jobs = [wait_for_jobs(kube, namespace, 1, name=name)[0] for name in names]
        for job in jobs:
            workloads.complete_job(job, message=result())
        for name in names:
            wait_for_status(
                kube, namespace, lambda s: run_row(s).get("reason") == "Registered", name=name
            )
        versions = model_versions(kube, namespace)
        assert [mv["spec"]["version"] for mv in versions] == [1, 2, 3, 4]
        assert sorted(mv["spec"]["lineage"]["trainingJob"]["name"] for mv in versions) == sorted(
            names
        )
        for name in names:
            assert len(jobs_of(kube, namespace, name)) == 1
            row = run_row(status_of(kube, namespace, name))
            assert row["modelVersion"] in {mv["metadata"]["name"] for mv in versions}
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        replica.assert_no_unhandled_exceptions()


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TEST_CLIENT_AGENT = "kiln-tests"


def operator_writes(cluster: Cluster) -> list[tuple[str, str, str, str, int]]:
    """Write requests the emulator served to anyone but the test client (None elsewhere)."""
    assert cluster.emulator is not None
    return [
        record
        for record in cluster.emulator.request_log
        if record[0] in WRITE_METHODS and not record[3].startswith(TEST_CLIENT_AGENT)
    ]


@pytest.mark.slow
def test_nothing_changing_for_30_seconds_means_no_write_calls(
    cluster: Cluster,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    workloads: Workloads,
) -> None:
    """Steady state writes nothing, although the operator re-checks every 2 seconds and a
    scheduled TrainingJob sits waiting for its next time."""
    process = operator_process(
        cluster, namespace, tmp_path / "kiln-operator.log", None, "--resync-seconds", "2"
    )
    try:
        kube.apply_manifest(
            [training_job(), training_job(name="nightly", model="nightly", schedule="0 3 * * *")],
            namespace,
        )
        for name in ("iris", "nightly"):
            (job,) = wait_for_jobs(kube, namespace, 1, name=name)
            workloads.complete_job(job, message=result())
            wait_for_status(
                kube, namespace, lambda s, n=name: s.get("latestModelVersion") == f"{n}-v1", name
            )
        wait_for_status(kube, namespace, lambda s: "nextScheduleTime" in s, name="nightly")
        time.sleep(3)  # let the last status write's own watch event be reconciled

        requests_before = process.metric("kiln_operator_api_requests_total")
        write_calls = sum(
            process.metric("kiln_operator_api_requests_total", verb=verb)
            for verb in ("create", "apply", "patch", "delete")
        )
        reconciles = process.metric("kiln_operator_reconciles_total", result="ok")
        logged = operator_writes(cluster) if cluster.emulator is not None else []
        time.sleep(30)

        assert process.metric("kiln_operator_reconciles_total", result="ok") >= (reconciles + 20), (
            "the operator did not keep reconciling: the test would prove nothing"
        )
        assert process.metric("kiln_operator_api_requests_total") > requests_before
        after = sum(
            process.metric("kiln_operator_api_requests_total", verb=verb)
            for verb in ("create", "apply", "patch", "delete")
        )
        assert after == write_calls, "the operator wrote to the API in steady state"
        if cluster.emulator is not None:
            # Also counts kopf's own requests, which bypass the operator's counter.
            assert operator_writes(cluster)[len(logged) :] == []
    finally:
        process.stop()
    process.assert_no_unhandled_exceptions()


MASTER_PORT_DEFAULT = (
    "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/masterPort/default"
)


def set_master_port_default(kube: KubeClient, value: int | None) -> None:
    """Change the installed TrainingJob CRD's default of spec.masterPort (None: none)."""
    crd = "trainingjobs.kiln.dev"
    ops = [{"op": "remove", "path": MASTER_PORT_DEFAULT}]
    if value is not None:
        ops = [{"op": "add", "path": MASTER_PORT_DEFAULT, "value": value}]
    kube.patch("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd, None, ops, "json")


def wait_for_master_port_default(kube: KubeClient, namespace: str, value: int | None) -> None:
    """A real API server serves a changed CRD a moment after the write: wait until a
    dry-run create of a TrainingJob shows the new default (or none)."""

    def in_effect() -> bool:
        answer = kube.create(training_job("default-probe"), namespace, dryRun="All")
        return answer["spec"].get("masterPort") == value

    wait_until(f"spec.masterPort's default to be {value}", in_effect)


def test_a_crd_default_changed_by_a_release_reruns_nothing(
    cluster: Cluster, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    """A TrainingJob stored before its CRD gained a default reads back with that default
    (the API server defaults on read), so its stored spec changed without a user's edit:
    no run starts for it, and a real edit afterwards still does."""
    process = operator_process(
        cluster, namespace, tmp_path / "kiln-operator.log", None, "--resync-seconds", "1"
    )
    try:
        set_master_port_default(kube, None)
        wait_for_master_port_default(kube, namespace, None)
        kube.apply_manifest([training_job()], namespace)
        wait_for_jobs(kube, namespace, 1)
        wait_for_status(kube, namespace, lambda s: s.get("observedSpecGeneration") == 1)
        assert "masterPort" not in kube.get(KILN, "TrainingJob", "iris", namespace)["spec"]

        set_master_port_default(kube, 29600)
        wait_until(
            "the new default to show on read",
            lambda: (
                kube.get(KILN, "TrainingJob", "iris", namespace)["spec"].get("masterPort") == 29600
            ),
        )
        reconciles = process.metric("kiln_operator_reconciles_total", result="ok")
        wait_until(
            "a few resyncs",
            lambda: process.metric("kiln_operator_reconciles_total", result="ok") >= reconciles + 3,
        )
        assert len(jobs_of(kube, namespace)) == 1, "a changed CRD default re-ran the job"

        kube.apply_manifest([training_job(hyperparameters={"C": "3"})], namespace)
        wait_for_jobs(kube, namespace, 2)
    finally:
        set_master_port_default(kube, 29500)
        wait_for_master_port_default(kube, namespace, 29500)
        process.stop()
    process.assert_no_unhandled_exceptions()


def test_model_versions_outlive_their_training_job(
    cluster: Cluster,
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    kube.apply_manifest([training_job()], namespace)
    (job,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(job, message=result())
    wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v1")

    kube.delete(KILN, "TrainingJob", "iris", namespace)
    wait_until(
        "the TrainingJob to be gone",
        lambda: kube.get_or_none(KILN, "TrainingJob", "iris", namespace) is None,
    )
    if cluster.runs_controllers:
        wait_until("its Jobs to be garbage-collected", lambda: jobs_of(kube, namespace) == [])
    (mv,) = model_versions(kube, namespace)
    assert mv["metadata"]["name"] == "iris-v1"
    assert mv["spec"]["lineage"]["trainingJob"]["name"] == "iris"


# -- entry points and examples --------------------------------------------------------------


def annotate(kube: KubeClient, namespace: str, annotations: dict[str, str | None]) -> None:
    kube.patch(KILN, "TrainingJob", "iris", namespace, {"metadata": {"annotations": annotations}})


def test_a_run_request_through_the_api_starts_one_run_however_often_it_is_written(
    cluster: Cluster,
    kube: KubeClient,
    namespace: str,
    training_operator: OperatorProcess,
    workloads: Workloads,
) -> None:
    """What an InferenceService that detected drift does: annotate the TrainingJob with a
    request id. Two writers of the same id (or one writing it again) make one run."""
    kube.apply_manifest([training_job()], namespace)
    (first,) = wait_for_jobs(kube, namespace, 1)
    workloads.complete_job(first, message=result())
    wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v1")

    request = request_annotation("drift-42", "drift", "PSI 0.31 on petal_width")
    annotate(kube, namespace, request)
    annotate(kube, namespace, request)  # a second replica of the detector, same request
    jobs = wait_for_jobs(kube, namespace, 2)
    annotations = jobs[1]["metadata"]["annotations"]
    assert annotations["kiln.dev/trigger"] == "drift"
    assert annotations["kiln.dev/trigger-message"] == "PSI 0.31 on petal_width"
    assert annotations["kiln.dev/request-id"] == "drift-42"
    status = wait_for_status(
        kube, namespace, lambda s: "drift-42" in s.get("handledRunRequests", [])
    )
    wait_until(
        "the handled request's annotation to be removed",
        lambda: (
            "run-request.kiln.dev/drift-42"
            not in kube.get(KILN, "TrainingJob", "iris", namespace)["metadata"].get(
                "annotations", {}
            )
        ),
    )

    annotate(kube, namespace, request)  # written again, late: already handled
    workloads.complete_job(jobs[1], message=result())
    status = wait_for_status(kube, namespace, lambda s: s.get("latestModelVersion") == "iris-v2")
    assert run_row(status)["trigger"] == "drift"
    time.sleep(1)
    assert len(jobs_of(kube, namespace)) == 2, "a handled request id started a second run"


def test_an_unusable_run_request_is_a_warning_event_counted_not_a_run(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest([training_job()], namespace)
    wait_for_jobs(kube, namespace, 1)
    annotate(kube, namespace, {"run-request.kiln.dev/bad-1": '{"trigger": "schedule"}'})
    annotate(kube, namespace, {"run-request.kiln.dev/bad-2": "not json"})

    def invalid_events() -> list[Obj]:
        return [e for e in events_of(kube, namespace) if e["reason"] == "InvalidRunRequest"]

    (event,) = wait_until(
        "one aggregated InvalidRunRequest event counted twice",
        lambda: (found := invalid_events()) and found[0].get("count") == 2 and found,
    )
    assert event["type"] == "Warning"
    assert "bad-2" in event["message"]
    assert "not JSON" in event["message"]
    status = wait_for_status(
        kube, namespace, lambda s: {"bad-1", "bad-2"} <= set(s.get("handledRunRequests", []))
    )
    assert len(jobs_of(kube, namespace)) == 1
    assert len(status["runs"]) == 1


def test_the_example_manifests_are_accepted_and_start_their_runs(
    kube: KubeClient, namespace: str, training_operator: OperatorProcess
) -> None:
    kube.apply_manifest(REPO / "examples" / "training" / "trainingjob.yaml", namespace)
    (job,) = wait_for_jobs(kube, namespace, 1, name="iris-example")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "kiln-iris-train:dev"
    assert container["args"] == ["--test-size", "0.25"]
    assert env_of(job)["KILN_HP_N_ESTIMATORS"] == "100"

    # The distributed example starts on its annotation; the nightly one starts its first
    # run on creation and then waits for 03:00.
    kube.apply_manifest(REPO / "examples" / "trainingjob.yaml", namespace)
    (ddp,) = wait_for_jobs(kube, namespace, 1, name="iris-ddp")
    assert ddp["spec"]["completionMode"] == "Indexed"
    assert ddp["metadata"]["annotations"]["kiln.dev/trigger"] == "manual"
    (nightly,) = wait_for_jobs(kube, namespace, 1, name="iris")
    assert nightly["metadata"]["annotations"]["kiln.dev/trigger"] == "spec"
    wait_for_status(kube, namespace, lambda s: "nextScheduleTime" in s, name="iris")

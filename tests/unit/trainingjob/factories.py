"""Objects the unit tests of the TrainingJob reconciler build: manifests, Jobs and pods as
the API server and the Job controller would return them."""

from __future__ import annotations

import json
from typing import Any

from kiln_operator import naming
from kiln_operator.api.trainingjob import TrainingJobSpec
from kiln_operator.builders.job import desired_job
from kiln_operator.runinfo import RunStart

Obj = dict[str, Any]

SHA = "ab" * 32


def training_job(name: str = "iris", **spec: Any) -> Obj:
    body: Obj = {"model": "iris", "image": "train:1", "output": {"uri": "pvc://models/iris"}}
    body.update(spec)
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": "uid-1234",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": body,
    }


def spec_of(tj: Obj) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(tj["spec"])


def run_start(number: int = 1, trigger: str = "spec", **extra: Any) -> RunStart:
    return RunStart(
        name=f"iris-r{number}-0123abcd",
        number=number,
        trigger=trigger,  # type: ignore[arg-type]
        spec_hash="0123abcd",
        message="test",
        **extra,
    )


def run_job(
    tj: Obj | None = None,
    number: int = 1,
    outcome: str | None = None,
    reason: str = "BackoffLimitExceeded",
    **extra: Any,
) -> Obj:
    """The Job of run ``number`` as the API server returns it, finished per ``outcome``."""
    owner = tj or training_job()
    job = desired_job(owner, spec_of(owner), run_start(number, **extra), None)
    job["metadata"]["uid"] = f"job-uid-{number}"
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    status: Obj = {"startTime": "2026-01-01T00:00:05Z", "active": 1}
    if outcome == "Complete":
        status = {
            "startTime": "2026-01-01T00:00:05Z",
            "completionTime": "2026-01-01T00:10:00Z",
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    elif outcome == "Failed":
        status = {
            "startTime": "2026-01-01T00:00:05Z",
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": "2026-01-01T00:09:00Z",
                }
            ],
        }
    job["status"] = status
    return job


def pod(
    job: Obj,
    phase: str,
    message: str | None = None,
    exit_code: int = 0,
    index: int | None = None,
    finished: str = "2026-01-01T00:09:59Z",
    waiting: str | None = None,
) -> Obj:
    labels = dict(job["spec"]["template"]["metadata"]["labels"])
    if index is not None:
        labels["batch.kubernetes.io/job-completion-index"] = str(index)
    state: Obj
    if waiting:
        state = {"waiting": {"reason": waiting, "message": f"{waiting}: image train:1"}}
    elif phase in ("Succeeded", "Failed"):
        terminated: Obj = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "finishedAt": finished,
        }
        if message is not None:
            terminated["message"] = message
        state = {"terminated": terminated}
    else:
        state = {"running": {"startedAt": "2026-01-01T00:00:06Z"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{job['metadata']['name']}-{index or 0}-abcde", "labels": labels},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": naming.TRAINER_CONTAINER, "state": state}],
        },
    }


def result(**overrides: Any) -> str:
    document: Obj = {"metrics": {"accuracy": 0.97}, "artifact": "model.onnx", "sha256": SHA}
    document.update(overrides)
    return json.dumps({k: v for k, v in document.items() if v is not None})

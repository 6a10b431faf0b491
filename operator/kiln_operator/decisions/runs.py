"""What each run is doing, read from its Job and pods, merged with the recorded history.

A run's row in ``status.runs`` is derived, not remembered: the Job's conditions give the
phase, its pods give failure details and (on success) the result. Rows whose Jobs are gone
(pruned, or deleted by hand) keep what status recorded. Failures keep the Job controller's
reason (BackoffLimitExceeded, DeadlineExceeded...), with the pod's own story in the message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, get_args

from kiln_operator import naming
from kiln_operator.api.trainingjob import (
    MAX_HYPERPARAMETER_VALUE,
    MAX_HYPERPARAMETERS,
    MAX_RUN_MESSAGE,
    MAX_RUN_REASON,
    RunTrigger,
)
from kiln_operator.decisions.result import InvalidResult, RunResult, parse_result
from kiln_operator.runinfo import OUTPUT_MOUNT

Obj = dict[str, Any]

ACTIVE_PHASES: Final = frozenset({"Pending", "Running"})

#: Container waiting reasons that mean the pod will not start without a human.
BLOCKING_WAIT_REASONS: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

# Reasons of a finished run's row. Final ones are never revisited.
REGISTERED: Final = "Registered"
NOT_REGISTERED: Final = "RegistrationDisabled"
INVALID_RESULT: Final = "InvalidResult"
REGISTRATION_FAILED: Final = "RegistrationFailed"
JOB_DELETED: Final = "JobDeleted"
AWAITING_REGISTRATION: Final = "AwaitingRegistration"


@dataclass(frozen=True)
class RunRow:
    """One run as status reports it, plus what the operator needs to act on it."""

    name: str
    number: int
    trigger: str
    phase: str
    job: str | None = None
    spec_hash: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    metrics: Mapping[str, float] | None = None
    artifact_uri: str | None = None
    sha256: str | None = None
    baseline: str | None = None
    hyperparameters: Mapping[str, str] | None = None
    model_version: str | None = None
    reason: str | None = None
    message: str | None = None
    # Not in status: facts from the Job that decisions and registration use.
    job_uid: str | None = field(default=None, compare=False)
    lineage: Mapping[str, Any] = field(default_factory=dict, compare=False)
    scheduled_time: str | None = field(default=None, compare=False)
    request_value: str | None = field(default=None, compare=False)
    request_id: str | None = field(default=None, compare=False)
    generation: int | None = field(default=None, compare=False)
    suspended: bool = field(default=False, compare=False)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def awaiting_registration(self) -> bool:
        return self.phase == "Succeeded" and self.reason == AWAITING_REGISTRATION

    def to_status(self) -> Obj:
        """The row as status holds it, fitted to the schema's bounds (pod and Job messages
        can be longer than a status field may be)."""
        row: Obj = {
            "name": self.name,
            "number": self.number if self.number >= 1 else None,
            "job": self.job,
            "trigger": self.trigger,
            "phase": self.phase,
            "specHash": self.spec_hash,
            "startTime": self.start_time,
            "completionTime": self.completion_time,
            "metrics": dict(self.metrics) if self.metrics is not None else None,
            "artifact": (
                {"uri": self.artifact_uri, "sha256": self.sha256}
                if self.artifact_uri and self.sha256
                else None
            ),
            "baseline": self.baseline,
            "hyperparameters": dict(self.hyperparameters) if self.hyperparameters else None,
            "modelVersion": self.model_version,
            "runRequest": self.request_id,
            "reason": fit_text(self.reason, MAX_RUN_REASON),
            "message": fit_text(self.message, MAX_RUN_MESSAGE),
        }
        return {key: value for key, value in row.items() if value is not None}


def fit_text(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def row_from_status(row: Mapping[str, Any], position: int) -> RunRow:
    """A row recorded in status (its Job may be gone)."""
    artifact = row.get("artifact") or {}
    return RunRow(
        name=str(row["name"]),
        number=int(row.get("number") or position + 1),
        trigger=str(row.get("trigger", "spec")),
        phase=str(row.get("phase", "Pending")),
        job=row.get("job"),
        spec_hash=row.get("specHash"),
        start_time=row.get("startTime"),
        completion_time=row.get("completionTime"),
        metrics=row.get("metrics"),
        artifact_uri=artifact.get("uri"),
        sha256=artifact.get("sha256"),
        baseline=row.get("baseline"),
        hyperparameters=row.get("hyperparameters"),
        model_version=row.get("modelVersion"),
        reason=row.get("reason"),
        message=row.get("message"),
    )


def observe_runs(
    jobs: Sequence[Obj], pods: Sequence[Obj], recorded: Sequence[Mapping[str, Any]]
) -> list[RunRow]:
    """Every known run, oldest first: from the Jobs, and from status for Jobs now gone."""
    previous = {str(row["name"]): row_from_status(row, i) for i, row in enumerate(recorded)}
    pods_by_job: dict[str, list[Obj]] = {}
    for pod in pods:
        job_name = pod["metadata"].get("labels", {}).get(naming.RUN_LABEL)
        if job_name:
            pods_by_job.setdefault(job_name, []).append(pod)
    rows: dict[str, RunRow] = {}
    for job in jobs:
        name = job["metadata"]["name"]
        rows[name] = run_from_job(job, pods_by_job.get(name, []), previous.get(name))
    for name, row in previous.items():
        if name not in rows:
            rows[name] = _without_job(row)
    return sorted(rows.values(), key=lambda r: (r.number, r.name))


def _generation(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def run_from_job(job: Obj, pods: Sequence[Obj], previous: RunRow | None) -> RunRow:
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    lineage = _lineage(annotations)
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    base = RunRow(
        name=meta["name"],
        number=job_run_number(job),
        trigger=_trigger(annotations.get(naming.TRIGGER_ANNOTATION)),
        phase="Pending",
        job=meta["name"],
        spec_hash=annotations.get(naming.SPEC_HASH_ANNOTATION),
        start_time=status.get("startTime") or meta.get("creationTimestamp"),
        hyperparameters=_hyperparameters(lineage),
        job_uid=meta.get("uid"),
        lineage=lineage,
        scheduled_time=annotations.get(naming.SCHEDULED_TIME_ANNOTATION),
        request_value=annotations.get(naming.REQUEST_VALUE_ANNOTATION),
        request_id=annotations.get(naming.REQUEST_ID_ANNOTATION),
        generation=_generation(annotations.get(naming.GENERATION_ANNOTATION)),
        suspended=bool((job.get("spec") or {}).get("suspend")),
    )
    if _is_true(conditions.get("Complete")):
        return _succeeded(base, status, pods, previous)
    if _is_true(conditions.get("Failed")):
        failed = conditions["Failed"]
        reason = str(failed.get("reason") or "JobFailed")
        message = str(failed.get("message") or "the Job failed")
        detail = pod_failure_detail(pods)
        return replace(
            base,
            phase="Failed",
            completion_time=failed.get("lastTransitionTime"),
            reason=reason,
            message=f"{message}; {detail}" if detail else message,
        )
    if _is_true(conditions.get("Suspended")) or base.suspended:
        return replace(
            base, reason="Suspended", message="the run's Job is suspended (spec.suspend)"
        )
    blocked = pod_blocking_reason(pods)
    if blocked is not None:
        return replace(base, reason=blocked[0], message=blocked[1])
    if any((p.get("status") or {}).get("phase") == "Running" for p in pods):
        return replace(base, phase="Running", reason="Running", message="training is running")
    return replace(base, reason="Pending", message="waiting for the training pods to start")


def _succeeded(
    base: RunRow, status: Mapping[str, Any], pods: Sequence[Obj], previous: RunRow | None
) -> RunRow:
    done = replace(base, phase="Succeeded", completion_time=status.get("completionTime"))
    if (
        previous is not None
        and previous.phase == "Succeeded"
        and previous.reason
        not in (
            None,
            AWAITING_REGISTRATION,
        )
    ):
        # A final verdict was recorded (registered, invalid, below thresholds): keep it,
        # even after the pods are gone or the spec's thresholds change.
        return replace(
            done,
            metrics=previous.metrics,
            artifact_uri=previous.artifact_uri,
            sha256=previous.sha256,
            baseline=previous.baseline,
            model_version=previous.model_version,
            reason=previous.reason,
            message=previous.message,
        )
    message = result_message(pods)
    # The Job's lineage records the run's own output URI; a pvc is mounted in the pod.
    output_uri = str(base.lineage.get("output", ""))
    output_dir = f"{OUTPUT_MOUNT}/{base.name}" if output_uri.startswith("pvc://") else None
    try:
        if message is None and not pods:
            raise InvalidResult(
                "the run's pods are gone, so its result (termination message) cannot be read"
            )
        result = parse_result(message, output_uri, output_dir)
    except InvalidResult as error:
        return replace(done, reason=INVALID_RESULT, message=f"invalid result: {error}")
    return with_result(done, result)


def with_result(row: RunRow, result: RunResult) -> RunRow:
    return replace(
        row,
        metrics=result.metrics,
        artifact_uri=result.artifact_uri,
        sha256=result.sha256,
        baseline=result.baseline_uri,
        reason=AWAITING_REGISTRATION,
        message="the run succeeded; registration pending",
    )


def result_message(pods: Sequence[Obj]) -> str | None:
    """The termination message of the trainer in the pod that reports the result.

    That is the succeeded pod with completion index 0 for a distributed run, else the
    most recently finished succeeded pod.
    """
    succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    if not succeeded:
        return None

    def order(pod: Obj) -> tuple[int, str]:
        index = (pod["metadata"].get("labels") or {}).get(
            "batch.kubernetes.io/job-completion-index", "0"
        )
        finished = _trainer_state(pod).get("terminated", {}).get("finishedAt") or ""
        rank = 0 if index == "0" else 1
        # Index 0 first; among equals, the latest finished first.
        return (rank, "".join(chr(255 - ord(c)) for c in finished))

    state = _trainer_state(sorted(succeeded, key=order)[0])
    message = state.get("terminated", {}).get("message")
    return str(message) if message is not None else None


def pod_failure_detail(pods: Sequence[Obj]) -> str:
    """How the most recent failed pod's trainer ended, e.g. ``exit code 137 (OOMKilled)``."""
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    if not failed:
        return ""
    latest = max(
        failed, key=lambda p: _trainer_state(p).get("terminated", {}).get("finishedAt") or ""
    )
    terminated = _trainer_state(latest).get("terminated") or {}
    if not terminated:
        reason = (latest.get("status") or {}).get("reason")
        return f"pod {latest['metadata']['name']} failed" + (f" ({reason})" if reason else "")
    text = (
        f"pod {latest['metadata']['name']}: container {naming.TRAINER_CONTAINER} exited with "
        f"code {terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
    )
    message = str(terminated.get("message") or "").strip()
    if message:
        text += f": {message[-512:]}"
    return text


def pod_blocking_reason(pods: Sequence[Obj]) -> tuple[str, str] | None:
    """A reason and message when a pod cannot start (image pull, config, scheduling)."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in BLOCKING_WAIT_REASONS:
                detail = waiting.get("message") or waiting["reason"]
                return str(waiting["reason"]), f"pod {pod['metadata']['name']}: {detail}"
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                detail = condition.get("message") or "no node fits the pod"
                return "Unschedulable", f"pod {pod['metadata']['name']}: {detail}"
    return None


def latest_run(rows: Iterable[RunRow]) -> RunRow | None:
    ordered = list(rows)
    return ordered[-1] if ordered else None


def _without_job(row: RunRow) -> RunRow:
    if row.active:
        return replace(
            row,
            phase="Failed",
            reason=JOB_DELETED,
            message=f"the run's Job {row.job or row.name} was deleted before it finished",
        )
    return row


def job_run_number(job: Obj) -> int:
    """The run number a Job carries; 0 (unknown) when it has none or someone edited it
    into nonsense."""
    annotations = job["metadata"].get("annotations") or {}
    try:
        return max(int(annotations.get(naming.RUN_NUMBER_ANNOTATION) or 0), 0)
    except ValueError:
        return 0


def _trigger(annotation: str | None) -> str:
    """The trigger a Job carries, if it is one status can hold; else a spec run."""
    return annotation if annotation is not None and annotation in get_args(RunTrigger) else "spec"


def _lineage(annotations: Mapping[str, str]) -> dict[str, Any]:
    try:
        lineage = json.loads(annotations.get(naming.LINEAGE_ANNOTATION, "{}"))
    except ValueError:
        return {}
    return lineage if isinstance(lineage, dict) else {}


def _hyperparameters(lineage: Mapping[str, Any]) -> dict[str, str] | None:
    """The run's hyperparameters from its lineage; None when the annotation was edited into
    something status could not hold."""
    recorded = lineage.get("hyperparameters")
    if not isinstance(recorded, dict) or len(recorded) > MAX_HYPERPARAMETERS:
        return None
    if not all(
        isinstance(v, str) and len(v) <= MAX_HYPERPARAMETER_VALUE for v in recorded.values()
    ):
        return None
    return {str(key): value for key, value in recorded.items()}


def _trainer_state(pod: Obj) -> dict[str, Any]:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == naming.TRAINER_CONTAINER:
            return dict(container.get("state") or {})
    return {}


def _is_true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def replaced(row: RunRow, replacement: str) -> RunRow:
    """An active run's row once ``replacement`` stopped it (concurrencyPolicy Replace)."""
    return replace(
        row,
        phase="Failed",
        reason="Replaced",
        message=f"stopped for scheduled run {replacement} (concurrencyPolicy Replace)",
    )

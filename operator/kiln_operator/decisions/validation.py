"""What a ModelVersion's validation says, from its Job and pods: pure decisions.

A ModelVersion is validated by one Job named by a digest of what it checks (the artifact,
the baseline and the credentials used to fetch them). The Job's pod runs
``kiln-server validate`` and writes its report to its termination message (the shape is in
``kiln_server.contract``). Phases:

- ``Pending``: no Job yet, or its pod has not started (waiting for a node, pulling);
- ``Validating``: the pod runs;
- ``Ready``: the report is good (its digest is the registered one);
- ``Failed``: the report names a reason (``DigestMismatch``, ``NotOnnx``, ``LoadFailed``,
  ``InferenceFailed``, ``FetchFailed``, ``BaselineInvalid``), or the Job failed without
  one (``ValidationTimedOut`` past its deadline, ``ValidationCrashed`` otherwise).

Once Ready or Failed is recorded for the Job the spec asks for, that verdict stands: the
artifact is never validated again, even after the Job is gone. A ModelVersion whose Job
disappears before a verdict was recorded gets a new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from kiln_operator import naming
from kiln_operator.api.modelversion import ModelVersionSpec
from kiln_operator.conditions import Verdict
from kiln_operator.decisions.runs import pod_blocking_reason
from kiln_server.contract import VALIDATION_REASONS

Obj = dict[str, Any]
Phase = Literal["Pending", "Validating", "Ready", "Failed"]

VALIDATED: Final = "Validated"
FINAL_PHASES: Final = frozenset({"Ready", "Failed"})
#: Reasons of a Job that ended without a report.
TIMED_OUT: Final = "ValidationTimedOut"
CRASHED: Final = "ValidationCrashed"
NO_REPORT: Final = "NoReport"


@dataclass(frozen=True)
class Outcome:
    """Where validation stands: the phase, the ``Validated`` verdict and, when Ready, the
    report (signature, size, opset, baseline)."""

    phase: Phase
    verdict: Verdict
    report: Mapping[str, Any] | None = None
    finished_at: str | None = None

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES


def validation_key(spec: ModelVersionSpec) -> str:
    """Eight hex digits naming what a validation checks; equal keys need no new Job."""
    subject = {
        "artifact": spec.artifact.model_dump(by_alias=True, exclude_none=True),
        "baseline": spec.baseline.model_dump(by_alias=True, exclude_none=True)
        if spec.baseline
        else None,
        "credentials": spec.credentials.name if spec.credentials else None,
    }
    return naming.digest(json.dumps(subject, sort_keys=True, separators=(",", ":")))


def recorded_outcome(status: Mapping[str, Any], job_name: str) -> bool:
    """Whether ``status`` already holds the final verdict of validation ``job_name``."""
    return status.get("validationJob") == job_name and status.get("phase") in FINAL_PHASES


def pending(message: str, reason: str = "Pending") -> Outcome:
    return Outcome("Pending", Verdict(VALIDATED, "Unknown", reason, message))


def observe_validation(job: Obj, pods: Sequence[Obj], sha256: str) -> Outcome:
    """The outcome of validation ``job`` (pods: the Job's own) for an artifact ``sha256``."""
    name = job["metadata"]["name"]
    for pod in sorted(pods, key=_finished_at, reverse=True):
        terminated = _validator_state(pod).get("terminated")
        if terminated:
            report = _report(terminated.get("message"))
            if report is not None:
                return _judged(report, sha256, str(terminated.get("finishedAt") or ""))
    condition = _finished_condition(job)
    if condition is not None:
        kind, reason, message = condition
        if kind == "Complete":
            return _failed(NO_REPORT, f"validation Job {name} completed without a report")
        why = TIMED_OUT if reason == "DeadlineExceeded" else CRASHED
        return _failed(why, f"validation Job {name} failed ({reason}): {message}".rstrip(": "))
    if any(_validator_state(pod).get("running") for pod in pods):
        return Outcome(
            "Validating",
            Verdict(VALIDATED, "Unknown", "Validating", f"validation pod of Job {name} runs"),
        )
    blocked = pod_blocking_reason(pods)
    if blocked is not None:
        reason, message = blocked
        return pending(f"validation Job {name} cannot start: {message}", reason)
    return pending(f"validation Job {name} waits for its pod")


def _judged(report: Mapping[str, Any], sha256: str, finished_at: str) -> Outcome:
    if report.get("ok") is True:
        if str(report.get("sha256", "")).lower() != sha256.lower():
            message = f"the validated file's sha256 is {report.get('sha256')}, not {sha256}"
            return _failed("DigestMismatch", message, finished_at)
        verdict = Verdict(VALIDATED, "True", VALIDATED, _signature_summary(report))
        return Outcome("Ready", verdict, report, finished_at)
    reason = str(report.get("reason") or "")
    if reason not in VALIDATION_REASONS:
        reason = "ValidationFailed"
    return _failed(reason, str(report.get("error") or "validation failed"), finished_at)


def _failed(reason: str, message: str, finished_at: str | None = None) -> Outcome:
    return Outcome("Failed", Verdict(VALIDATED, "False", reason, message), None, finished_at)


def _report(message: Any) -> Mapping[str, Any] | None:
    """The validate report in a termination message, or None when there is none."""
    if not isinstance(message, str) or not message.strip():
        return None
    try:
        document = json.loads(message)
    except ValueError:
        return None
    return document if isinstance(document, dict) and "ok" in document else None


def _tensor_text(tensor: Mapping[str, Any]) -> str:
    shape = ",".join(str(dim) for dim in tensor.get("shape") or [])
    return f"{tensor.get('name')} {tensor.get('datatype')}[{shape}]"


def _signature_summary(report: Mapping[str, Any]) -> str:
    inputs = ", ".join(_tensor_text(t) for t in report.get("inputs") or [])
    outputs = ", ".join(_tensor_text(t) for t in report.get("outputs") or [])
    return f"loaded and ran once: {inputs} -> {outputs}"


def _validator_state(pod: Obj) -> Obj:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == naming.VALIDATOR_CONTAINER:
            return dict(container.get("state") or {})
    return {}


def _finished_at(pod: Obj) -> str:
    return str((_validator_state(pod).get("terminated") or {}).get("finishedAt") or "")


def _finished_condition(job: Obj) -> tuple[str, str, str] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return (
                str(condition["type"]),
                str(condition.get("reason") or ""),
                str(condition.get("message") or ""),
            )
    return None


def validated_fields(outcome: Outcome) -> dict[str, Any]:
    """The status fields a Ready report fills (signature, size, opset, baseline)."""
    report = outcome.report
    if report is None:
        return {}
    fields: dict[str, Any] = {
        "signature": {
            "inputs": list(report.get("inputs") or []),
            "outputs": list(report.get("outputs") or []),
        },
        "sizeBytes": report.get("sizeBytes"),
    }
    if report.get("opset") is not None:
        fields["opset"] = report["opset"]
    baseline = report.get("baseline")
    if isinstance(baseline, Mapping) and baseline.get("features") is not None:
        fields["baselineFeatures"] = baseline["features"]
    return {key: value for key, value in fields.items() if value is not None}

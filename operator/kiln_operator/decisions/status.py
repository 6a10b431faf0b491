"""A TrainingJob's desired status, and the events its transitions deserve.

Conditions, each a small pure check:
- ``Running``: a run is training now (False with the reason when one is stuck or pending);
- ``Succeeded``: the latest finished run's Job outcome (BackoffLimitExceeded...);
- ``Registered``: whether the latest succeeded run became a ModelVersion, and if not why
  (InvalidResult, BelowMinMetrics...);
- ``Ready``: derived from the others and the configuration checks.
Status holds no clock reading except condition transition times, so an unchanged world
gives an identical status and no write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln_operator.api.trainingjob import MAX_RUNS
from kiln_operator.conditions import EventType, Verdict, find_condition, set_conditions
from kiln_operator.decisions.runs import (
    AWAITING_REGISTRATION,
    BLOCKING_WAIT_REASONS,
    NOT_REGISTERED,
    REGISTERED,
    RunRow,
)

#: Reasons of an active run that will not progress without a human.
STUCK_REASONS = BLOCKING_WAIT_REASONS | {"Unschedulable"}


@dataclass(frozen=True)
class Notice:
    """An event to post about the TrainingJob."""

    type: EventType
    reason: str
    message: str


def running_verdict(rows: Sequence[RunRow], suspended: bool) -> Verdict:
    active = [row for row in rows if row.active]
    running = [row for row in active if row.phase == "Running"]
    if running:
        names = ", ".join(row.name for row in running)
        return Verdict("Running", "True", "Running", f"training: {names}")
    if active:
        row = active[-1]
        return Verdict(
            "Running", "False", row.reason or "Pending", f"run {row.name}: {row.message or ''}"
        )
    if suspended:
        return Verdict("Running", "False", "Suspended", "spec.suspend is true: no new runs start")
    return Verdict("Running", "False", "NoActiveRun", "no run is active")


def succeeded_verdict(rows: Sequence[RunRow]) -> Verdict:
    finished = [row for row in rows if not row.active]
    if not finished:
        return Verdict("Succeeded", "Unknown", "NoFinishedRun", "no run has finished yet")
    row = finished[-1]
    if row.phase == "Succeeded":
        return Verdict("Succeeded", "True", "JobComplete", f"run {row.name} succeeded")
    return Verdict(
        "Succeeded", "False", row.reason or "JobFailed", f"run {row.name}: {row.message or ''}"
    )


def registered_verdict(rows: Sequence[RunRow]) -> Verdict:
    succeeded = [row for row in rows if row.phase == "Succeeded"]
    if not succeeded:
        return Verdict("Registered", "Unknown", "NoSuccessfulRun", "no run has succeeded yet")
    row = succeeded[-1]
    if row.reason == REGISTERED:
        return Verdict(
            "Registered", "True", REGISTERED, f"run {row.name} registered {row.model_version}"
        )
    if row.reason == AWAITING_REGISTRATION:
        return Verdict("Registered", "Unknown", AWAITING_REGISTRATION, f"run {row.name}")
    return Verdict(
        "Registered",
        "False",
        row.reason or "NotRegistered",
        f"run {row.name}: {row.message or 'not registered'}",
    )


def ready_verdict(rows: Sequence[RunRow], suspended: bool, blocked: Verdict | None) -> Verdict:
    """Ready: the configuration is usable and the latest finished run delivered."""
    if blocked is not None:
        return Verdict("Ready", "False", blocked.reason, blocked.message)
    stuck = [row for row in rows if row.active and row.reason in STUCK_REASONS]
    if stuck:
        # A run that cannot start needs a human now, whatever earlier runs delivered.
        row = stuck[-1]
        return Verdict("Ready", "False", row.reason or "", f"run {row.name}: {row.message or ''}")
    finished = [row for row in rows if not row.active]
    if not finished:
        if suspended:
            return Verdict("Ready", "False", "Suspended", "suspended before any run finished")
        return Verdict("Ready", "False", "NoRunFinished", "waiting for the first run to finish")
    row = finished[-1]
    if row.phase == "Succeeded" and row.reason in (REGISTERED, NOT_REGISTERED):
        what = f"registered {row.model_version}" if row.reason == REGISTERED else "succeeded"
        return Verdict("Ready", "True", row.reason, f"latest run {row.name} {what}")
    return Verdict(
        "Ready", "False", row.reason or row.phase, f"latest run {row.name}: {row.message or ''}"
    )


def desired_status(
    *,
    previous: Mapping[str, Any],
    generation: int,
    rows: Sequence[RunRow],
    suspended: bool,
    blocked: Verdict | None,
    last_schedule_time: str | None,
    next_schedule_time: str | None,
    handled_run_request: str | None,
    now: str,
    handled_run_requests: Sequence[str] = (),
    spec_generation: int | None = None,
) -> dict[str, Any]:
    verdicts = [
        ready_verdict(rows, suspended, blocked),
        running_verdict(rows, suspended),
        succeeded_verdict(rows),
        registered_verdict(rows),
    ]
    conditions = set_conditions(previous.get("conditions") or [], verdicts, generation, now)
    latest = rows[-1] if rows else None
    registered = [row.model_version for row in rows if row.model_version]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "phase": latest.phase if latest else None,
        "latestRun": latest.name if latest else previous.get("latestRun"),
        "latestModelVersion": registered[-1] if registered else previous.get("latestModelVersion"),
        # More than the schema allows only when that many runs are active at once (Allow).
        "runs": [row.to_status() for row in rows[-MAX_RUNS:]],
        "lastScheduleTime": last_schedule_time,
        "nextScheduleTime": None if suspended else next_schedule_time,
        "handledRunRequest": handled_run_request,
        "handledRunRequests": list(handled_run_requests) or None,
        "observedSpecGeneration": spec_generation,
    }
    return {key: value for key, value in status.items() if value is not None}


def blocked_status(
    previous: Mapping[str, Any], generation: int, blocked: Verdict, now: str
) -> dict[str, Any]:
    """Status when the operator cannot even read the spec: ``previous`` (runs and all) with
    ``Ready`` set to the problem, for this generation."""
    conditions = set_conditions(previous.get("conditions") or [], [blocked], generation, now)
    return {**previous, "observedGeneration": generation, "conditions": conditions}


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``current`` into ``desired`` (empty when they are equal).

    Top-level fields are replaced whole (lists are atomic in a merge patch anyway); a field
    that disappears is set to null.
    """
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if current.get(key) != value:
            patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


def transition_notices(
    previous_rows: Sequence[Mapping[str, Any]],
    rows: Sequence[RunRow],
    previous_conditions: Sequence[Mapping[str, Any]],
    blocked: Verdict | None,
) -> list[Notice]:
    """Events for what changed: runs started, moved phase or reason; a new blocking problem."""
    before = {str(row.get("name")): row for row in previous_rows}
    notices: list[Notice] = []
    for row in rows:
        old = before.get(row.name)
        if old is None:
            notices.append(
                Notice("Normal", "RunStarted", f"run {row.name} started (trigger: {row.trigger})")
            )
            old = {}
        if old.get("phase") != row.phase and row.phase != "Pending":
            notices.append(_phase_notice(row))
        if old.get("reason") != row.reason and row.reason in _REASON_EVENTS:
            kind = _REASON_EVENTS[row.reason]
            text = f"run {row.name}: {row.message or row.reason}"
            if row.reason == REGISTERED:
                text = f"run {row.name} registered {row.model_version}"
            notices.append(Notice(kind, row.reason, text))
    if blocked is not None:
        ready = find_condition(previous_conditions, "Ready")
        if ready is None or ready.get("reason") != blocked.reason:
            notices.append(Notice("Warning", blocked.reason, blocked.message))
    return notices


def _phase_notice(row: RunRow) -> Notice:
    if row.phase == "Running":
        return Notice("Normal", "RunRunning", f"run {row.name} is running")
    if row.phase == "Succeeded":
        return Notice("Normal", "RunSucceeded", f"run {row.name} succeeded")
    return Notice(
        "Warning", row.reason or "RunFailed", f"run {row.name} failed: {row.message or ''}"
    )


#: Row reasons that deserve an event when a run reaches them (failures have phase events).
_REASON_EVENTS: dict[str, EventType] = {
    REGISTERED: "Normal",
    "InvalidResult": "Warning",
    "BelowMinMetrics": "Warning",
    "AboveMaxMetrics": "Warning",
    "RegistrationFailed": "Warning",
    "ErrImagePull": "Warning",
    "ImagePullBackOff": "Warning",
    "InvalidImageName": "Warning",
    "ErrImageNeverPull": "Warning",
    "CreateContainerConfigError": "Warning",
    "CreateContainerError": "Warning",
    "RunContainerError": "Warning",
    "Unschedulable": "Warning",
    "Suspended": "Normal",
}

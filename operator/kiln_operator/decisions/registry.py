"""A ModelVersion's registry status: validation phase, approval, key metric; pure decisions.

Approval is the human gate. Who set ``spec.approved`` is read from the object itself: the
``kiln.dev/approved-by`` annotation written with the approval when present (a person or a
CI system names itself), else the field manager that owns ``spec.approved`` in
``metadata.managedFields`` (``kubectl-patch``, ``argocd-controller``...), with that write's
time. The record is kept while the version stays approved and dropped when it is revoked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kiln_operator import naming
from kiln_operator.api.modelversion import ModelVersionSpec
from kiln_operator.conditions import Verdict, find_condition, set_conditions
from kiln_operator.decisions.status import Notice
from kiln_operator.decisions.validation import VALIDATED, Outcome, validated_fields

Obj = dict[str, Any]


def approval_record(
    model_version: Mapping[str, Any], spec: ModelVersionSpec, previous: Any, now: str
) -> Obj | None:
    """``status.approval`` for ``model_version``: None unless approved; the previous record
    while it stays approved."""
    if not spec.approved:
        return None
    if isinstance(previous, Mapping) and previous.get("approvedBy"):
        return dict(previous)
    meta = model_version["metadata"]
    manager, at = _approving_write(meta.get("managedFields") or [])
    annotated = (meta.get("annotations") or {}).get(naming.APPROVED_BY_ANNOTATION)
    record: Obj = {"approvedBy": annotated or manager or "unknown", "approvedAt": at or now}
    if manager:
        record["fieldManager"] = manager
    return record


def _approving_write(entries: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """The manager owning ``spec.approved`` and the time of its write (the newest owner's)."""
    owners = [
        entry
        for entry in entries
        if not entry.get("subresource")
        and "f:approved" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    if not owners:
        return None, None
    newest = max(owners, key=lambda entry: str(entry.get("time") or ""))
    return newest.get("manager"), newest.get("time")


def key_metric(spec: ModelVersionSpec) -> str | None:
    """``<name>=<value>`` of the key metric (``spec.keyMetric``, else the first by name)."""
    metrics = spec.metrics or {}
    name = spec.key_metric or (min(metrics) if metrics else None)
    if name is None or name not in metrics:
        return None
    return f"{name}={metrics[name]:g}"


def ready_verdict(outcome: Outcome) -> Verdict:
    """``Ready`` follows validation: True once validated, else False with its reason."""
    if outcome.phase == "Ready":
        return Verdict("Ready", "True", VALIDATED, "validated; ready to serve")
    return Verdict("Ready", "False", outcome.verdict.reason, outcome.verdict.message)


def desired_status(
    previous: Mapping[str, Any],
    generation: int,
    outcome: Outcome | None,
    validation_job: str,
    approval: Obj | None,
    metric: str | None,
    now: str,
) -> Obj:
    """The whole status; ``outcome`` None keeps the recorded verdict of ``validation_job``."""
    status: Obj = {"observedGeneration": generation, "validationJob": validation_job}
    conditions = list(previous.get("conditions") or [])
    if outcome is None:
        for key in ("phase", "signature", "sizeBytes", "opset", "baselineFeatures"):
            if previous.get(key) is not None:
                status[key] = previous[key]
        if previous.get("validatedAt"):
            status["validatedAt"] = previous["validatedAt"]
        conditions = [
            {**c, "observedGeneration": generation}
            if c.get("type") in (VALIDATED, "Ready")
            else dict(c)
            for c in conditions
        ]
    else:
        status["phase"] = outcome.phase
        status.update(validated_fields(outcome))
        if outcome.final:
            status["validatedAt"] = outcome.finished_at or now
        conditions = set_conditions(
            conditions, [outcome.verdict, ready_verdict(outcome)], generation, now
        )
    status["conditions"] = conditions
    if approval is not None:
        status["approval"] = approval
    if metric is not None:
        status["keyMetric"] = metric
    return status


def registry_notices(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> list[Notice]:
    """Events for what changed: validation started or ended, approval given or revoked."""
    notices: list[Notice] = []
    before = find_condition(previous.get("conditions") or [], VALIDATED) or {}
    after = find_condition(desired.get("conditions") or [], VALIDATED) or {}
    changed = (before.get("status"), before.get("reason")) != (
        after.get("status"),
        after.get("reason"),
    )
    if changed and after:
        if after.get("status") == "True":
            notices.append(Notice("Normal", VALIDATED, str(after.get("message"))))
        elif after.get("status") == "False":
            notices.append(Notice("Warning", str(after.get("reason")), str(after.get("message"))))
        elif after.get("reason") == "Validating":
            notices.append(Notice("Normal", "Validating", str(after.get("message"))))
    approval, was = desired.get("approval"), previous.get("approval")
    if approval and not was:
        notices.append(Notice("Normal", "Approved", f"approved by {approval['approvedBy']}"))
    elif was and not approval:
        notices.append(Notice("Normal", "ApprovalRevoked", "spec.approved is no longer true"))
    return notices

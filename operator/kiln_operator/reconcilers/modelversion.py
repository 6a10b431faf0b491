"""Reconcile one ModelVersion: validate its artifact once, keep its registry status.

gather: the ModelVersion; unless its status already holds the verdict for the artifact it
names, its validation Job (by name) and that Job's pods (by label). decide: pure functions
(:mod:`kiln_operator.decisions.validation`, :mod:`kiln_operator.decisions.registry`) say
where validation stands, who approved the version and what status should be. write: create
the validation Job when there is none, then patch status once if it changed (guarded by the
resourceVersion that was read), and post events only after that write succeeded. A
validated ModelVersion costs one GET per resync and no write.
"""

from __future__ import annotations

from typing import Any

import pydantic

from kiln_operator import kube, naming
from kiln_operator.api.modelversion import ModelVersionSpec
from kiln_operator.builders.validation import desired_validation_job
from kiln_operator.conditions import Verdict
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.queue import Key
from kiln_operator.controller.runner import Recheck
from kiln_operator.decisions.ownership import owned_by
from kiln_operator.decisions.problems import refused_request, unreadable_spec
from kiln_operator.decisions.registry import (
    approval_record,
    desired_status,
    key_metric,
    registry_notices,
)
from kiln_operator.decisions.status import status_patch
from kiln_operator.decisions.timing import RACE_RECHECK_SECONDS
from kiln_operator.decisions.triggers import format_time
from kiln_operator.decisions.validation import (
    VALIDATED,
    Outcome,
    observe_validation,
    pending,
    recorded_outcome,
    validation_key,
)
from kiln_operator.objectlog import ObjectLog, object_log

Obj = dict[str, Any]
JOB_REJECTED = "ValidationJobRejected"


async def reconcile(ctx: OperatorContext, key: Key) -> float | Recheck | None:
    """Bring one ModelVersion's validation and status up to date; say when to look again."""
    namespace, name = key
    model_version = await ctx.client.get_or_none(kube.MODEL_VERSIONS, name, namespace)
    if model_version is None or model_version["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = ModelVersionSpec.model_validate(model_version.get("spec") or {})
    except pydantic.ValidationError as error:
        verdict = unreadable_spec(error.errors())
        unreadable = Outcome("Failed", Verdict(VALIDATED, "False", verdict.reason, verdict.message))
        await _write_status(ctx, model_version, None, unreadable, "")
        return None
    status: Obj = dict(model_version.get("status") or {})
    job_name = naming.validation_job_name(name, validation_key(spec))
    refusal: kube.ApiError | None = None
    outcome: Outcome | None = None
    if not recorded_outcome(status, job_name):
        try:
            outcome = await _validation(ctx, model_version, spec, job_name)
        except kube.ApiError as error:
            if kube.is_transient(error):
                raise
            if isinstance(error, kube.AlreadyExists):
                return RACE_RECHECK_SECONDS  # another writer's Job: read it next time
            refusal = error
            outcome = _refused(error, job_name)
    await _write_status(ctx, model_version, spec, outcome, job_name)
    if refusal is not None and outcome is not None and outcome.phase != "Failed":
        raise refusal  # Forbidden, a quota, a webhook...: back off and try again
    if outcome is not None and not outcome.final:
        return Recheck(ctx.settings.resync_seconds)  # the Job's and pods' events come first
    return None


async def _validation(
    ctx: OperatorContext, model_version: Obj, spec: ModelVersionSpec, job_name: str
) -> Outcome:
    """Where validation ``job_name`` stands, creating its Job when there is none."""
    meta = model_version["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    job = await ctx.client.get_or_none(kube.JOBS, job_name, namespace)
    if job is None:
        body = desired_validation_job(
            model_version,
            spec,
            job_name,
            ctx.settings.model_server_image,
            ctx.settings.validation_deadline_seconds,
            ctx.settings.model_server_pull_secrets,
        )
        await ctx.client.create(kube.JOBS, body, namespace)
        _log(namespace, name).info("validating %s with Job %s", spec.artifact.uri, job_name)
        return pending(f"validation Job {job_name} created; waiting for its pod")
    if not owned_by(job, meta["uid"]):
        _log(namespace, name).warning("Job %s exists but is not this ModelVersion's", job_name)
        return pending(
            f"a Job named {job_name} exists that this ModelVersion does not own; delete it",
            "ValidationJobNameTaken",
        )
    selector = f"{naming.MODEL_VERSION_OWNER_LABEL}={naming.label_value(name)}"
    pods = [
        pod
        for pod in await ctx.client.list(kube.PODS, namespace, selector)
        if owned_by(pod, job["metadata"]["uid"])
    ]
    return observe_validation(job, pods, spec.artifact.sha256)


def _refused(error: kube.ApiError, job_name: str) -> Outcome:
    """A refused validation Job: a 422 is final for this spec, others may pass."""
    if isinstance(error, kube.Invalid):
        message = f"the validation Job {job_name} was refused: {error.message}"
        return Outcome("Failed", Verdict(VALIDATED, "False", JOB_REJECTED, message))
    verdict = refused_request(error.verb, error.path, error.status, error.message)
    return pending(verdict.message, verdict.reason)


async def _write_status(
    ctx: OperatorContext,
    model_version: Obj,
    spec: ModelVersionSpec | None,
    outcome: Outcome | None,
    job_name: str,
) -> None:
    meta = model_version["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: Obj = dict(model_version.get("status") or {})
    now = format_time(ctx.clock())
    approval = approval_record(model_version, spec, status.get("approval"), now) if spec else None
    desired = desired_status(
        previous=status,
        generation=int(meta.get("generation") or 0),
        outcome=outcome,
        validation_job=job_name or status.get("validationJob") or "",
        approval=approval,
        metric=key_metric(spec) if spec else None,
        now=now,
    )
    if not desired["validationJob"]:
        del desired["validationJob"]
    patch = status_patch(status, desired)
    if not patch:
        return
    # A compare-and-swap on the resourceVersion read: a 409 means another writer changed
    # the ModelVersion since, and the controller decides again.
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
    await ctx.client.merge_patch(kube.MODEL_VERSIONS, name, namespace, body, "status")
    if outcome is not None and outcome.phase != (status.get("phase") or ""):
        _log(namespace, name).info("%s: %s", outcome.phase, outcome.verdict.message)
    for notice in registry_notices(status, desired):
        await ctx.events.post(model_version, notice.type, notice.reason, notice.message, now)


def _log(namespace: str, name: str) -> ObjectLog:
    return object_log("ModelVersion", namespace, name)

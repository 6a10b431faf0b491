"""Reconcile one TrainingJob: gather its world, decide, write.

gather: the TrainingJob, its Jobs and their pods, read once by label selector. decide: pure
functions (:mod:`kiln_operator.decisions`) say which run starts, what each run's row is,
what registers, what is pruned and what status should be. write: create children, register
versions, delete pruned Jobs, then patch status once if it changed (guarded by the
resourceVersion that was read, so of two replicas the one that read stale data loses with a
409 and decides again), and post events only after that write succeeded. In steady state
nothing is written.

What the API server refuses becomes status too (see :mod:`kiln_operator.decisions.problems`):
an unreadable spec, a refused Job or a forbidden request is a ``Ready`` condition and a
Warning event; a refused Job waits for the spec to change, other refusals back off.

Other controllers ask for runs through the API (:mod:`kiln_operator.decisions.requests`),
never by calling in here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import pydantic

from kiln_operator import kube, naming
from kiln_operator.api.trainingjob import TrainingJobSpec
from kiln_operator.builders.job import desired_headless_service, desired_job
from kiln_operator.builders.modelversion import Registration, desired_model_version
from kiln_operator.conditions import Verdict
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.queue import Key
from kiln_operator.controller.runner import Recheck
from kiln_operator.decisions.intent import intent_hash
from kiln_operator.decisions.ownership import is_run_of, model_selector, owned_by, run_selector
from kiln_operator.decisions.problems import (
    configuration_problem,
    prevailing_problem,
    refused_request,
    rejected_run,
    remembered_rejection,
    run_name_taken,
    unreadable_spec,
)
from kiln_operator.decisions.registration import (
    next_version,
    registered_version_of,
    registration_step,
)
from kiln_operator.decisions.requests import (
    ApiRunRequest,
    handled_requests,
    pending_requests,
    settled_request_annotations,
)
from kiln_operator.decisions.runs import (
    REGISTERED,
    REGISTRATION_FAILED,
    RunRow,
    job_run_number,
    observe_runs,
    replaced,
    run_from_job,
)
from kiln_operator.decisions.status import (
    Notice,
    blocked_status,
    desired_status,
    status_patch,
    transition_notices,
)
from kiln_operator.decisions.timing import RACE_RECHECK_SECONDS, next_look
from kiln_operator.decisions.triggers import StartDecision, decide_start, format_time
from kiln_operator.objectlog import ObjectLog, object_log

#: Attempts at allocating a version number before giving up for this reconcile.
ALLOCATION_ATTEMPTS: Final = 20
#: Reason of the Warning event for a run request that cannot be honoured.
INVALID_RUN_REQUEST: Final = "InvalidRunRequest"


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile reads, read once."""

    training_job: dict[str, Any]
    spec: TrainingJobSpec
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    foreign_run_numbers: frozenset[int] = frozenset()
    """Run numbers of Jobs labelled with the TrainingJob's name that it does not own."""


async def reconcile(ctx: OperatorContext, key: Key) -> float | Recheck | None:
    """Bring one TrainingJob's world in line with its spec; say when to look again."""
    namespace, name = key
    try:
        observed = await gather(ctx.client, namespace, name)
    except UnreadableSpec as problem:
        # Permanent until the object changes, and a change brings its own event.
        await _report_unreadable_spec(ctx, problem.training_job, problem.verdict)
        return None
    if observed is None:
        return None
    return await _decide_and_write(ctx, observed)


# -- gather --------------------------------------------------------------------------------


class UnreadableSpec(Exception):
    """The TrainingJob's spec does not parse; ``verdict`` says why, for its status."""

    def __init__(self, training_job: dict[str, Any], verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.training_job = training_job
        self.verdict = verdict


class RunRejected(Exception):
    """A run's Job cannot be created: the API server refused it (422, permanent for this
    spec), or a Job the TrainingJob does not own holds its name."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


async def gather(client: kube.Kube, namespace: str, name: str) -> Observed | None:
    """Read the TrainingJob and its runs once; None when it is gone or going.

    Raises :class:`UnreadableSpec` when the spec does not parse.
    """
    training_job = await client.get_or_none(kube.TRAINING_JOBS, name, namespace)
    if training_job is None or training_job["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = TrainingJobSpec.model_validate(training_job.get("spec") or {})
    except pydantic.ValidationError as error:
        raise UnreadableSpec(training_job, unreadable_spec(error.errors())) from None
    uid = training_job["metadata"]["uid"]
    selector = run_selector(name)
    labelled = await client.list(kube.JOBS, namespace, selector)
    jobs = [job for job in labelled if owned_by(job, uid)]
    foreign = frozenset(job_run_number(job) for job in labelled if not owned_by(job, uid))
    run_names = {job["metadata"]["name"] for job in jobs}
    pods = [
        pod
        for pod in await client.list(kube.PODS, namespace, selector)
        if (pod["metadata"].get("labels") or {}).get(naming.RUN_LABEL) in run_names
    ]
    return Observed(training_job, spec, jobs, pods, foreign)


def _key_of(training_job: Mapping[str, Any]) -> Key:
    return training_job["metadata"]["namespace"], training_job["metadata"]["name"]


# -- decide and write ------------------------------------------------------------------------


async def _decide_and_write(ctx: OperatorContext, observed: Observed) -> float | Recheck | None:
    tj = observed.training_job
    meta = tj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = observed.spec
    status: dict[str, Any] = dict(tj.get("status") or {})
    annotations: dict[str, str] = meta.get("annotations") or {}
    generation = int(meta.get("generation") or 0)
    now = ctx.clock()
    rows = observe_runs(observed.jobs, observed.pods, status.get("runs") or [])
    configuration = configuration_problem(spec, ctx.accelerators)
    remembered = remembered_rejection(status.get("conditions") or [], generation)
    previously_handled = status.get("handledRunRequests") or []
    requests = pending_requests(annotations, previously_handled, (r.request_id for r in rows))
    invalid = [request for request in requests if request.problem is not None]
    request = next((request for request in requests if request.problem is None), None)
    decision = decide_start(
        training_job=name,
        spec=spec,
        spec_digest=intent_hash(spec),
        wire_digest=naming.spec_hash(tj.get("spec") or {}),
        rows=rows,
        run_annotation=annotations.get(naming.RUN_REQUEST_ANNOTATION),
        handled_run_request=status.get("handledRunRequest"),
        last_schedule_time=status.get("lastScheduleTime"),
        created=meta.get("creationTimestamp"),
        now=now,
        generation=generation,
        spec_generation=status.get("observedSpecGeneration"),
        blocked=configuration is not None or remembered is not None,
        request=request,
        numbers_taken=observed.foreign_run_numbers,
    )
    notices = [Notice("Normal", *decision.notice)] if decision.notice is not None else []
    notices += [_invalid_request_notice(request) for request in invalid]

    progress = _Progress(rows)
    refused: kube.ApiError | None = None
    try:
        if not await _write_children(ctx, observed, decision, progress):
            return RACE_RECHECK_SECONDS
    except kube.ApiError as error:
        if kube.is_transient(error):
            raise
        if isinstance(error, kube.NotFound) and error.verb != "create":
            # A child vanished between the read and the write: read the world again. (A
            # create's 404 is a missing kind or namespace: refused, like the cases below.)
            _log(namespace, name).info("%s; re-reading", error)
            return RACE_RECHECK_SECONDS
        # Forbidden, a quota, a webhook...: say so in status, then retry with backoff.
        refused = error
    blocked = prevailing_problem(
        configuration=configuration,
        remembered=remembered,
        schedule_error=decision.schedule_error,
        refusal=refused_request(refused.verb, refused.path, refused.status, refused.message)
        if refused is not None
        else None,
        rejection=progress.rejection,
    )
    rows = progress.rows
    started = decision.start is None or progress.started is not None
    handled = handled_requests(
        previously_handled,
        [
            *(row.request_id for row in rows if row.request_id),
            *(request.id for request in invalid),
        ],
    )

    desired = desired_status(
        previous=status,
        generation=generation,
        rows=rows,
        suspended=spec.suspend,
        blocked=blocked,
        last_schedule_time=decision.last_schedule_time,
        next_schedule_time=decision.next_schedule_time,
        handled_run_request=decision.handled_run_request,
        handled_run_requests=handled,
        spec_generation=decision.spec_generation
        if started
        else status.get("observedSpecGeneration"),
        now=format_time(now),
    )
    patch = status_patch(status, desired)
    if patch:
        # The resourceVersion read makes this a compare-and-swap: a 409 means another
        # writer changed the TrainingJob since, and the controller decides again.
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        await ctx.client.merge_patch(kube.TRAINING_JOBS, name, namespace, body, "status")
        notices += transition_notices(
            status.get("runs") or [], rows, status.get("conditions") or [], blocked
        )
    await _settle_requests(ctx.client, tj, handled)
    for notice in notices:
        await ctx.events.post(tj, notice.type, notice.reason, notice.message, format_time(now))
    if refused is not None:
        raise refused
    look = next_look(ctx.settings.resync_seconds, rows, decision.next_schedule_time, now)
    return look.seconds if look.due else Recheck(look.seconds)


def _invalid_request_notice(request: ApiRunRequest) -> Notice:
    return Notice(
        "Warning",
        INVALID_RUN_REQUEST,
        f"run request {request.id} ({request.annotation}) ignored: {request.problem}",
    )


async def _settle_requests(client: kube.Kube, tj: dict[str, Any], handled: Sequence[str]) -> None:
    """Remove the request annotations status now records (a second writer's copy of the
    same request finds its id recorded and starts nothing)."""
    meta = tj["metadata"]
    settled = settled_request_annotations(meta.get("annotations") or {}, handled)
    if settled:
        patch = {"metadata": {"annotations": dict.fromkeys(settled)}}
        with contextlib.suppress(kube.NotFound):
            await client.merge_patch(kube.TRAINING_JOBS, meta["name"], meta["namespace"], patch)


@dataclass
class _Progress:
    """What the writes of one reconcile achieved so far (kept when a later write fails)."""

    rows: list[RunRow]
    started: str | None = None
    rejection: Verdict | None = None


async def _write_children(
    ctx: OperatorContext, observed: Observed, decision: StartDecision, progress: _Progress
) -> bool:
    """Start the decided run, suspend or resume, register, prune; False when another
    writer took the run's name (decide again on a fresh read)."""
    client, spec = ctx.client, observed.spec
    namespace, name = _key_of(observed.training_job)
    if decision.start is not None:
        try:
            if not await _start(ctx, observed, decision, progress):
                return False
        except RunRejected as rejection:
            _log(namespace, name).warning(
                "run %s refused: %s", decision.start.name, rejection.verdict.message
            )
            progress.rejection = rejection.verdict
    await _apply_suspension(client, namespace, progress.rows, spec.suspend)
    progress.rows = await _register(ctx, observed, progress.rows)
    progress.rows = await _prune(client, namespace, progress.rows, spec.runs_history_limit)
    return True


async def _start(
    ctx: OperatorContext, observed: Observed, decision: StartDecision, progress: _Progress
) -> bool:
    assert decision.start is not None
    namespace, name = _key_of(observed.training_job)
    if decision.replace_active:
        progress.rows = await _stop_active_runs(
            ctx.client, namespace, progress.rows, decision.start.name
        )
    created = await _create_run(ctx, observed, decision)
    if created is None:
        _log(namespace, name).info(
            "run %s was created by another writer; re-reading", decision.start.name
        )
        return False
    progress.rows = [*progress.rows, run_from_job(created, [], None)]
    progress.started = decision.start.name
    _log(namespace, name).info("started run %s", progress.started)
    return True


async def _report_unreadable_spec(
    ctx: OperatorContext, training_job: dict[str, Any], verdict: Verdict
) -> None:
    meta = training_job["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: dict[str, Any] = dict(training_job.get("status") or {})
    now = format_time(ctx.clock())
    desired = blocked_status(status, int(meta.get("generation") or 0), verdict, now)
    patch = status_patch(status, desired)
    if not patch:
        return
    _log(namespace, name).warning("%s", verdict.message)
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
    await ctx.client.merge_patch(kube.TRAINING_JOBS, name, namespace, body, "status")
    for notice in transition_notices([], [], status.get("conditions") or [], verdict):
        await ctx.events.post(training_job, notice.type, notice.reason, notice.message, now)


async def _create_run(
    ctx: OperatorContext, observed: Observed, decision: StartDecision
) -> dict[str, Any] | None:
    assert decision.start is not None
    tj, spec, run = observed.training_job, observed.spec, decision.start
    namespace = tj["metadata"]["namespace"]
    selector = None
    if spec.accelerator is not None:
        selector = ctx.accelerators.node_selector(spec.accelerator.type)
    try:
        if spec.workers > 1:
            # AlreadyExists: made by an attempt that crashed before its Job (same run).
            with contextlib.suppress(kube.AlreadyExists):
                await ctx.client.create(kube.SERVICES, desired_headless_service(tj, run), namespace)
        return await ctx.client.create(kube.JOBS, desired_job(tj, spec, run, selector), namespace)
    except kube.AlreadyExists:
        namesake = await ctx.client.get_or_none(kube.JOBS, run.name, namespace)
        if namesake is None or is_run_of(namesake, tj):
            return None  # another writer's run: the next read sees it
        # Re-reading would not see this Job either and decide the same name: a loop.
        owned = owned_by(namesake, tj["metadata"]["uid"])
        raise RunRejected(run_name_taken(run.name, owned)) from None
    except kube.Invalid as error:
        raise RunRejected(rejected_run(run.name, error.message)) from error


async def _stop_active_runs(
    client: kube.Kube, namespace: str, rows: Sequence[RunRow], replacement: str
) -> list[RunRow]:
    stopped = []
    for row in rows:
        if row.active and row.job:
            await _delete_job(client, namespace, row)
            row = replaced(row, replacement)
        stopped.append(row)
    return stopped


async def _apply_suspension(
    client: kube.Kube, namespace: str, rows: Sequence[RunRow], suspend: bool
) -> None:
    """Suspend (or resume) the active runs' Jobs; touch only the ones that differ."""
    for row in rows:
        if row.active and row.job and row.suspended != suspend:
            await client.merge_patch(kube.JOBS, row.job, namespace, {"spec": {"suspend": suspend}})


async def _register(
    ctx: OperatorContext, observed: Observed, rows: Sequence[RunRow]
) -> list[RunRow]:
    """Register the succeeded runs that await it. The model's versions are read (by label)
    only when some run does."""
    if not any(row.awaiting_registration for row in rows):
        return list(rows)
    tj = observed.training_job
    namespace, uid = tj["metadata"]["namespace"], tj["metadata"]["uid"]
    selector = model_selector(observed.spec.model)
    model_versions = await ctx.client.list(kube.MODEL_VERSIONS, namespace, selector)
    registered: list[RunRow] = []
    for row in rows:
        if row.awaiting_registration:
            existing = registered_version_of(row.name, uid, model_versions)
            verdict = registration_step(row, observed.spec.registration, existing)
            if verdict is None:
                verdict, model_versions = await _create_model_version(
                    ctx, observed, row, model_versions
                )
            row = verdict
        registered.append(row)
    return registered


async def _create_model_version(
    ctx: OperatorContext,
    observed: Observed,
    row: RunRow,
    model_versions: list[dict[str, Any]],
) -> tuple[RunRow, list[dict[str, Any]]]:
    """Create ``<model>-v<next>``; on AlreadyExists re-read and either adopt a version made
    for this run meanwhile or try the next number. No retry ever skips a number.

    The first attempt knows the model's versions by label; a name taken by an object
    without that label (made by hand, or for another model) is only found by reading the
    namespace's ModelVersions, which happens on that rare path alone.
    """
    tj, model = observed.training_job, observed.spec.model
    namespace, uid = tj["metadata"]["namespace"], tj["metadata"]["uid"]
    registration = Registration(
        run=row.name,
        artifact_uri=row.artifact_uri or "",
        sha256=row.sha256 or "",
        metrics=dict(row.metrics or {}),
        baseline_uri=row.baseline,
        lineage=row.lineage,
    )
    for _ in range(ALLOCATION_ATTEMPTS):
        version = next_version(model, model_versions)
        body = desired_model_version(tj, model, version, registration)
        try:
            created = await ctx.client.create(kube.MODEL_VERSIONS, body, namespace)
        except kube.AlreadyExists:
            _log(namespace, tj["metadata"]["name"]).info(
                "ModelVersion %s is taken; re-reading", body["metadata"]["name"]
            )
            model_versions = await ctx.client.list(kube.MODEL_VERSIONS, namespace)
            existing = registered_version_of(row.name, uid, model_versions)
            if existing is not None:
                return _registered(row, existing), model_versions
            continue
        except kube.Invalid as error:
            message = f"the ModelVersion was refused: {error.message}"
            return replace(row, reason=REGISTRATION_FAILED, message=message), model_versions
        _log(namespace, tj["metadata"]["name"]).info(
            "run %s registered %s", row.name, created["metadata"]["name"]
        )
        return _registered(row, created["metadata"]["name"]), [*model_versions, created]
    raise kube.Unavailable(
        "create", f"modelversions/{model}", 409, {"message": "version numbers kept being taken"}
    )


def _registered(row: RunRow, model_version: str) -> RunRow:
    return replace(
        row, model_version=model_version, reason=REGISTERED, message=f"registered {model_version}"
    )


async def _prune(
    client: kube.Kube, namespace: str, rows: Sequence[RunRow], limit: int
) -> list[RunRow]:
    """Keep the newest ``limit`` runs, plus any older run still active; delete the rest's
    Jobs (and Services)."""
    keep_from = max(len(rows) - limit, 0)
    kept = []
    for index, row in enumerate(rows):
        if index >= keep_from or row.active or row.awaiting_registration:
            kept.append(row)
        elif row.job_uid is not None:
            await _delete_job(client, namespace, row)
    return kept


async def _delete_job(client: kube.Kube, namespace: str, row: RunRow) -> None:
    assert row.job is not None
    with contextlib.suppress(kube.NotFound):
        await client.delete(kube.JOBS, row.job, namespace, uid=row.job_uid)
    with contextlib.suppress(kube.NotFound):
        await client.delete(kube.SERVICES, naming.service_name(row.job), namespace)


def _log(namespace: str, name: str) -> ObjectLog:
    return object_log("TrainingJob", namespace, name)

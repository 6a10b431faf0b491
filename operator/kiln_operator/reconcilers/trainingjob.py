"""Reconcile one TrainingJob: gather its world, decide, write.

gather: the TrainingJob, its Jobs and their pods, and the namespace's ModelVersions, read
once. decide: pure functions (:mod:`kiln_operator.decisions`) say which run starts, what
each run's row is, what registers, what is pruned and what status should be. write: create
children, register versions, delete pruned Jobs, then patch status once if it changed, and
post events only after that write succeeded. In steady state nothing is written.

What the API server refuses becomes status too (see :mod:`kiln_operator.decisions.problems`):
an unreadable spec, a refused Job or a forbidden request is a ``Ready`` condition and a
Warning event; a refused Job waits for the spec to change, other refusals back off.

:func:`start_run` is the entry point other reconcilers use to ask for a run (drift).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import pydantic

from kiln_operator import kube, naming
from kiln_operator.accelerators import AcceleratorMap
from kiln_operator.api.trainingjob import RunTrigger, TrainingJobSpec
from kiln_operator.builders.event import desired_event
from kiln_operator.builders.job import desired_headless_service, desired_job
from kiln_operator.builders.modelversion import Registration, desired_model_version
from kiln_operator.conditions import Verdict
from kiln_operator.decisions.problems import (
    INVALID_SCHEDULE,
    configuration_problem,
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
from kiln_operator.decisions.runs import (
    REGISTERED,
    REGISTRATION_FAILED,
    RunRow,
    job_run_number,
    observe_runs,
    run_from_job,
)
from kiln_operator.decisions.status import (
    Notice,
    blocked_status,
    desired_status,
    status_patch,
    transition_notices,
)
from kiln_operator.decisions.triggers import (
    RunRequest,
    StartDecision,
    decide_start,
    format_time,
    parse_time,
)
from kiln_operator.objectlog import OPERATOR_LOGGER, ObjectLog, object_log
from kiln_operator.workqueue import Key, WorkQueue

log = logging.getLogger(OPERATOR_LOGGER)

#: Fault injection for the crash tests only: the operator SIGKILLs itself right after
#: creating a run's Job ("job-created") or a ModelVersion ("modelversion-created"),
#: before status records it. Unset in every real deployment.
CRASH_POINT_ENV: Final = "KILN_OPERATOR_CRASH_AFTER"

#: How soon to look again while a run is active (Job and pod events usually come first).
ACTIVE_RECHECK_SECONDS: Final = 30.0
#: How soon to decide again after losing a race (another writer, a child that vanished).
RACE_RECHECK_SECONDS: Final = 0.5
#: Attempts at allocating a version number before giving up for this reconcile.
ALLOCATION_ATTEMPTS: Final = 20


@dataclass
class TrainingJobContext:
    """What reconciles of TrainingJobs share in one operator process.

    ``client`` is connected once kopf runs the event loop (its startup handler).
    """

    client: kube.Kube | None = None
    accelerators: AcceleratorMap = field(default_factory=AcceleratorMap)
    resync_seconds: float = 60.0
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    crash_point: str | None = None
    queue: WorkQueue | None = None

    @property
    def kube(self) -> kube.Kube:
        if self.client is None:
            raise RuntimeError("the TrainingJob reconciler's API client is not connected yet")
        return self.client


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile reads, read once."""

    training_job: dict[str, Any]
    spec: TrainingJobSpec
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    model_versions: list[dict[str, Any]]
    foreign_run_numbers: frozenset[int] = frozenset()
    """Run numbers of Jobs labelled with the TrainingJob's name that it does not own."""


async def reconcile(
    ctx: TrainingJobContext, key: Key, request: RunRequest | None = None
) -> ReconcileOutcome:
    """Bring one TrainingJob's world in line with its spec; say when to look again."""
    namespace, name = key
    try:
        observed = await gather(ctx.kube, namespace, name)
    except UnreadableSpec as problem:
        # Permanent until the object changes, and a change brings its own event.
        await _report_unreadable_spec(ctx, problem.training_job, problem.verdict)
        return ReconcileOutcome(requeue_after=None)
    if observed is None:
        return ReconcileOutcome(requeue_after=None)
    return await _decide_and_write(ctx, observed, request)


@dataclass(frozen=True)
class ReconcileOutcome:
    requeue_after: float | None
    started_run: str | None = None


async def start_run(
    ctx: TrainingJobContext, namespace: str, name: str, trigger: RunTrigger, message: str
) -> str | None:
    """Start a run of TrainingJob ``namespace/name`` now, with ``trigger`` (e.g. "drift").

    Returns the run's name, or None when the TrainingJob is gone, suspended or cannot start
    runs (its conditions say why). Raises :class:`kube.ApiError` when the API server fails
    or refuses a write (a refusal is also in the TrainingJob's conditions). Serialised with
    the TrainingJob's other reconciles.
    """
    key = (namespace, name)

    async def work() -> ReconcileOutcome:
        return await reconcile(ctx, key, RunRequest(trigger, message))

    outcome = await (ctx.queue.exclusive(key, work) if ctx.queue else work())
    if ctx.queue is not None and outcome.requeue_after is not None:
        ctx.queue.requeue(key, outcome.requeue_after)
    return outcome.started_run


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
    """Read the TrainingJob and its world once; None when it is gone or going.

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
    selector = f"{naming.TRAINING_JOB_LABEL}={naming.label_value(name)}"
    labelled = await client.list(kube.JOBS, namespace, selector)
    jobs = [job for job in labelled if _owned_by(job, uid)]
    foreign = frozenset(job_run_number(job) for job in labelled if not _owned_by(job, uid))
    run_names = {job["metadata"]["name"] for job in jobs}
    pods = [
        pod
        for pod in await client.list(kube.PODS, namespace, selector)
        if (pod["metadata"].get("labels") or {}).get(naming.RUN_LABEL) in run_names
    ]
    model_versions = await client.list(kube.MODEL_VERSIONS, namespace)
    return Observed(training_job, spec, jobs, pods, model_versions, foreign)


def _key_of(training_job: Mapping[str, Any]) -> Key:
    return training_job["metadata"]["namespace"], training_job["metadata"]["name"]


def _is_run_of(job: Mapping[str, Any], training_job: Mapping[str, Any]) -> bool:
    """Whether ``gather`` finds ``job`` among the TrainingJob's runs (labelled and owned)."""
    labels = job["metadata"].get("labels") or {}
    meta = training_job["metadata"]
    return labels.get(naming.TRAINING_JOB_LABEL) == naming.label_value(meta["name"]) and _owned_by(
        job, meta["uid"]
    )


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


# -- decide and write ------------------------------------------------------------------------


async def _decide_and_write(
    ctx: TrainingJobContext, observed: Observed, request: RunRequest | None
) -> ReconcileOutcome:
    client = ctx.kube
    tj = observed.training_job
    meta = tj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = observed.spec
    status: dict[str, Any] = dict(tj.get("status") or {})
    generation = int(meta.get("generation") or 0)
    now = ctx.clock()
    rows = observe_runs(observed.jobs, observed.pods, status.get("runs") or [])
    blocked = configuration_problem(spec, ctx.accelerators) or remembered_rejection(
        status.get("conditions") or [], generation
    )
    decision = decide_start(
        training_job=name,
        spec=spec,
        spec_digest=naming.spec_hash(tj.get("spec") or {}),
        rows=rows,
        run_annotation=(meta.get("annotations") or {}).get(naming.RUN_REQUEST_ANNOTATION),
        handled_run_request=status.get("handledRunRequest"),
        last_schedule_time=status.get("lastScheduleTime"),
        created=meta.get("creationTimestamp"),
        now=now,
        blocked=blocked is not None,
        request=request,
        numbers_taken=observed.foreign_run_numbers,
    )
    notices: list[Notice] = []
    if decision.schedule_error and blocked is None:
        blocked = Verdict("Ready", "False", INVALID_SCHEDULE, decision.schedule_error)
    if decision.notice is not None:
        notices.append(Notice("Normal", *decision.notice))

    progress = _Progress(rows)
    refused: kube.ApiError | None = None
    try:
        if not await _write_children(ctx, observed, decision, progress):
            return ReconcileOutcome(requeue_after=RACE_RECHECK_SECONDS)
    except kube.ApiError as error:
        if kube.is_transient(error):
            raise
        if isinstance(error, kube.NotFound) and error.verb != "create":
            # A child vanished between the read and the write: read the world again. (A
            # create's 404 is a missing kind or namespace: refused, like the cases below.)
            _log(namespace, name).info("%s; re-reading", error)
            return ReconcileOutcome(requeue_after=RACE_RECHECK_SECONDS)
        # Forbidden, a quota, a webhook...: say so in status, then retry with backoff.
        refused = error
        blocked = refused_request(error.verb, error.path, error.status, error.message)
    if progress.rejection is not None:
        blocked = progress.rejection
    rows = progress.rows

    desired = desired_status(
        previous=status,
        generation=generation,
        rows=rows,
        suspended=spec.suspend,
        blocked=blocked,
        last_schedule_time=decision.last_schedule_time,
        next_schedule_time=decision.next_schedule_time,
        handled_run_request=decision.handled_run_request,
        now=format_time(now),
    )
    patch = status_patch(status, desired)
    if patch:
        await client.merge_patch(kube.TRAINING_JOBS, name, namespace, {"status": patch}, "status")
        notices += transition_notices(
            status.get("runs") or [], rows, status.get("conditions") or [], blocked
        )
    await _post(client, tj, notices, format_time(now))
    if refused is not None:
        raise refused
    return ReconcileOutcome(_requeue_after(ctx, rows, decision, now), progress.started)


@dataclass
class _Progress:
    """What the writes of one reconcile achieved so far (kept when a later write fails)."""

    rows: list[RunRow]
    started: str | None = None
    rejection: Verdict | None = None


async def _write_children(
    ctx: TrainingJobContext, observed: Observed, decision: StartDecision, progress: _Progress
) -> bool:
    """Start the decided run, suspend or resume, register, prune; False when another
    writer took the run's name (decide again on a fresh read)."""
    client, spec = ctx.kube, observed.spec
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
    ctx: TrainingJobContext, observed: Observed, decision: StartDecision, progress: _Progress
) -> bool:
    assert decision.start is not None
    namespace, name = _key_of(observed.training_job)
    if decision.replace_active:
        progress.rows = await _stop_active_runs(
            ctx.kube, namespace, progress.rows, decision.start.name
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
    _maybe_crash(ctx, "job-created")
    return True


async def _report_unreadable_spec(
    ctx: TrainingJobContext, training_job: dict[str, Any], verdict: Verdict
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
    await ctx.kube.merge_patch(kube.TRAINING_JOBS, name, namespace, {"status": patch}, "status")
    await _post(
        ctx.kube,
        training_job,
        transition_notices([], [], status.get("conditions") or [], verdict),
        now,
    )


async def _create_run(
    ctx: TrainingJobContext, observed: Observed, decision: StartDecision
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
                await ctx.kube.create(kube.SERVICES, desired_headless_service(tj, run), namespace)
        return await ctx.kube.create(kube.JOBS, desired_job(tj, spec, run, selector), namespace)
    except kube.AlreadyExists:
        namesake = await ctx.kube.get_or_none(kube.JOBS, run.name, namespace)
        if namesake is None or _is_run_of(namesake, tj):
            return None  # another writer's run: the next read sees it
        # Re-reading would not see this Job either and decide the same name: a loop.
        owned = _owned_by(namesake, tj["metadata"]["uid"])
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
            row = replace(
                row,
                phase="Failed",
                reason="Replaced",
                message=f"stopped for scheduled run {replacement} (concurrencyPolicy Replace)",
            )
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
    ctx: TrainingJobContext, observed: Observed, rows: Sequence[RunRow]
) -> list[RunRow]:
    registered: list[RunRow] = []
    model_versions = list(observed.model_versions)
    uid = observed.training_job["metadata"]["uid"]
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
    ctx: TrainingJobContext,
    observed: Observed,
    row: RunRow,
    model_versions: list[dict[str, Any]],
) -> tuple[RunRow, list[dict[str, Any]]]:
    """Create ``<model>-v<next>``; on AlreadyExists re-read and either adopt a version made
    for this run meanwhile or try the next number. No retry ever skips a number."""
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
            created = await ctx.kube.create(kube.MODEL_VERSIONS, body, namespace)
        except kube.AlreadyExists:
            _log(namespace, tj["metadata"]["name"]).info(
                "ModelVersion %s is taken; re-reading", body["metadata"]["name"]
            )
            model_versions = await ctx.kube.list(kube.MODEL_VERSIONS, namespace)
            existing = registered_version_of(row.name, uid, model_versions)
            if existing is not None:
                return _registered(row, existing), model_versions
            continue
        except kube.Invalid as error:
            message = f"the ModelVersion was refused: {error.message}"
            return replace(row, reason=REGISTRATION_FAILED, message=message), model_versions
        _maybe_crash(ctx, "modelversion-created")
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


async def _post(
    client: kube.Kube, training_job: dict[str, Any], notices: Sequence[Notice], now: str
) -> None:
    """Post events; an event that cannot be posted is logged, never fatal."""
    namespace = training_job["metadata"]["namespace"]
    for notice in notices:
        event = desired_event(training_job, notice.type, notice.reason, notice.message, now)
        try:
            await client.create(kube.EVENTS, event, namespace)
        except kube.ApiError as error:
            _log(namespace, training_job["metadata"]["name"]).warning(
                "could not post event %s: %s", notice.reason, error
            )


def _requeue_after(
    ctx: TrainingJobContext, rows: Sequence[RunRow], decision: StartDecision, now: dt.datetime
) -> float:
    delay = ctx.resync_seconds
    if any(row.active for row in rows):
        delay = min(delay, ACTIVE_RECHECK_SECONDS)
    next_time = parse_time(decision.next_schedule_time)
    if next_time is not None:
        # Wake just after the scheduled second so the decision sees it as due.
        delay = min(delay, max((next_time - now).total_seconds(), 0.0) + 0.5)
    return delay


def _log(namespace: str, name: str) -> ObjectLog:
    return object_log("TrainingJob", namespace, name)


def _maybe_crash(ctx: TrainingJobContext, point: str) -> None:
    if ctx.crash_point == point:
        log.warning("crash point %s reached: SIGKILL (%s is set)", point, CRASH_POINT_ENV)
        os.kill(os.getpid(), signal.SIGKILL)


def crash_point_from_environment() -> str | None:
    return os.environ.get(CRASH_POINT_ENV) or None

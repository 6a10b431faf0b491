"""Which run to start now, if any: spec change, on demand, schedule or an external request.

Every trigger is judged against the runs that exist (Jobs, including one created just before
a crash) as well as against status, so a restarted operator never starts the same run twice:
- spec: there is no run yet, or the user changed the spec (``metadata.generation`` moved
  past the latest run's) and its intent hash now differs from the latest run's (with or
  without a schedule: a schedule adds runs, it never holds back a spec change). A CRD
  default added or changed by a release moves neither, so it re-runs nothing;
- manual: the ``kiln.dev/run`` annotation holds a value neither recorded as handled nor
  carried by the latest manual run;
- schedule: a scheduled time passed since the last one acted on (see ``schedule``);
- manual or drift, through the API: a request annotation (:mod:`.requests`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from kiln_operator import naming
from kiln_operator.api.trainingjob import MAX_RUN_REQUEST, RunTrigger, TrainingJobSpec
from kiln_operator.decisions.requests import ApiRunRequest
from kiln_operator.decisions.runs import RunRow
from kiln_operator.decisions.schedule import ScheduleError, schedule_decision, scheduled_action
from kiln_operator.runinfo import RunStart

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class StartRun(Protocol):
    """Makes the :class:`RunStart` of the next run for a trigger."""

    def __call__(
        self,
        trigger: RunTrigger,
        message: str,
        *,
        scheduled_time: str | None = None,
        request_value: str | None = None,
        request_id: str | None = None,
    ) -> RunStart: ...


@dataclass(frozen=True)
class StartDecision:
    """What the triggers ask for in this reconcile."""

    start: RunStart | None = None
    replace_active: bool = False
    """Stop the active runs first (schedule with concurrencyPolicy Replace)."""
    last_schedule_time: str | None = None
    next_schedule_time: str | None = None
    handled_run_request: str | None = None
    answered_request: str | None = None
    """The id of the API run request this decision answers (its run starts now)."""
    spec_generation: int | None = None
    """The newest ``metadata.generation`` whose run-relevant spec is covered by a run once
    this decision's run (if any) has started (``status.observedSpecGeneration``)."""
    notice: tuple[str, str] | None = None
    """A reason and message worth an event although nothing starts (a skipped schedule)."""
    schedule_error: str | None = None


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(TIME_FORMAT)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def recorded_request(value: str) -> str:
    """How status records an annotation value it acted on: the value itself, or when it is
    too long for ``status.handledRunRequest`` a prefix and a digest of the whole."""
    if len(value) <= MAX_RUN_REQUEST:
        return value
    mark = f"...sha256:{naming.digest(value, 16)}"
    return value[: MAX_RUN_REQUEST - len(mark)] + mark


def decide_start(
    *,
    training_job: str,
    spec: TrainingJobSpec,
    spec_digest: str,
    rows: Sequence[RunRow],
    run_annotation: str | None,
    handled_run_request: str | None,
    last_schedule_time: str | None,
    created: str | None,
    now: dt.datetime,
    generation: int = 0,
    spec_generation: int | None = None,
    wire_digest: str | None = None,
    blocked: bool = False,
    request: ApiRunRequest | None = None,
    numbers_taken: Collection[int] = (),
) -> StartDecision:
    """Decide at ``now``. ``blocked`` (a configuration problem) starts nothing.

    ``spec_digest`` is the hash of the user's intent (:mod:`.intent`); ``spec_generation``
    the generation status says runs already cover; ``wire_digest`` the hash of the stored
    spec as earlier releases computed it, which runs they started still carry.

    ``numbers_taken`` are run numbers of Jobs labelled with this TrainingJob's name that it
    does not own (left behind by a namesake deleted with ``--cascade=orphan``): a new run
    numbers past them, so its name never collides with theirs.
    """
    number = max((*(row.number for row in rows), *numbers_taken), default=0) + 1
    latest = rows[-1] if rows else None
    handled = _handled_request(rows, run_annotation, handled_run_request)
    last_scheduled = _last_scheduled(rows, last_schedule_time)

    def start(
        trigger: RunTrigger,
        message: str,
        *,
        scheduled_time: str | None = None,
        request_value: str | None = None,
        request_id: str | None = None,
    ) -> RunStart:
        return RunStart(
            name=naming.run_name(training_job, number, spec_digest),
            number=number,
            trigger=trigger,
            spec_hash=spec_digest,
            message=message,
            scheduled_time=scheduled_time,
            request_value=request_value,
            request_id=request_id,
            generation=generation,
        )

    if spec.suspend or blocked:
        return StartDecision(
            handled_run_request=handled,
            last_schedule_time=last_scheduled,
            spec_generation=spec_generation,
        )

    if request is not None and request.problem is None:
        message = request.message or f"requested through the API (request {request.id})"
        return StartDecision(
            start=start(request.trigger, message, request_id=request.id),
            handled_run_request=handled,
            last_schedule_time=last_scheduled,
            answered_request=request.id,
            spec_generation=generation,
        )

    if run_annotation and recorded_request(run_annotation) != handled:
        return StartDecision(
            start=start(
                "manual",
                f"requested by annotation {naming.RUN_REQUEST_ANNOTATION}={run_annotation}",
                request_value=run_annotation,
            ),
            handled_run_request=recorded_request(run_annotation),
            last_schedule_time=last_scheduled,
            spec_generation=generation,
        )

    run_generation = latest.generation if latest else None
    covered = max((g for g in (spec_generation, run_generation) if g is not None), default=None)
    spec_run = _spec_change(latest, spec_digest, wire_digest, generation, covered)
    if spec.schedule:
        decision = _scheduled(spec, rows, last_scheduled, created, now, handled, start, spec_run)
    elif spec_run is not None:
        decision = StartDecision(start=start("spec", spec_run), handled_run_request=handled)
    else:
        decision = StartDecision(handled_run_request=handled)
    covers_spec = spec_run is None or decision.start is not None
    return replace(decision, spec_generation=generation if covers_spec else spec_generation)


def _spec_change(
    latest: RunRow | None,
    spec_digest: str,
    wire_digest: str | None,
    generation: int,
    covered: int | None,
) -> str | None:
    """Why the spec asks for a run (the trigger message), or None when it does not.

    Only a spec the user changed counts: at a generation runs already cover, nothing is
    due whatever the hash says (a hash can move without a user's edit when a release
    changes a CRD default, and with it the stored object's form).
    """
    if latest is None:
        return "first run"
    if covered is not None and generation <= covered:
        return None
    if latest.spec_hash not in (spec_digest, wire_digest):
        return f"spec changed ({latest.spec_hash} -> {spec_digest})"
    return None


def _scheduled(
    spec: TrainingJobSpec,
    rows: Sequence[RunRow],
    last_scheduled: str | None,
    created: str | None,
    now: dt.datetime,
    handled: str | None,
    start: StartRun,
    spec_run: str | None,
) -> StartDecision:
    """The schedule's part; a pending spec run goes first and leaves the schedule's
    bookkeeping as it was, so a scheduled time that is due now is judged next reconcile
    (against the spec run, by the concurrency policy)."""
    assert spec.schedule is not None
    since = parse_time(last_scheduled) or parse_time(created) or now
    try:
        decision = schedule_decision(
            spec.schedule, spec.time_zone, since, now, spec.starting_deadline_seconds
        )
    except ScheduleError as error:
        return StartDecision(
            handled_run_request=handled,
            last_schedule_time=last_scheduled,
            schedule_error=str(error),
        )
    next_time = format_time(decision.next_time)
    if spec_run is not None:
        return StartDecision(
            start=start("spec", spec_run),
            handled_run_request=handled,
            last_schedule_time=last_scheduled,
            next_schedule_time=next_time,
        )
    if decision.due is None:
        return StartDecision(
            handled_run_request=handled,
            last_schedule_time=last_scheduled,
            next_schedule_time=next_time,
        )
    due = format_time(decision.due)
    if decision.too_late:
        return StartDecision(
            handled_run_request=handled,
            last_schedule_time=due,
            next_schedule_time=next_time,
            notice=(
                "MissedSchedule",
                f"skipped the run scheduled for {due}: more than "
                f"{spec.starting_deadline_seconds}s late (startingDeadlineSeconds)",
            ),
        )
    active = sum(1 for row in rows if row.active)
    action = scheduled_action(spec.concurrency_policy, active)
    if action == "skip":
        return StartDecision(
            handled_run_request=handled,
            last_schedule_time=due,
            next_schedule_time=next_time,
            notice=(
                "ScheduleSkipped",
                f"skipped the run scheduled for {due}: {active} run(s) still active "
                "(concurrencyPolicy Forbid)",
            ),
        )
    return StartDecision(
        start=start("schedule", f"scheduled for {due}", scheduled_time=due),
        replace_active=action == "replace",
        handled_run_request=handled,
        last_schedule_time=due,
        next_schedule_time=next_time,
    )


def _handled_request(
    rows: Sequence[RunRow], annotation: str | None, recorded: str | None
) -> str | None:
    """The request value already acted on: status, or the newest manual run's Job (which
    survives a crash between creating the Job and writing status)."""
    manual = [row for row in rows if row.trigger == "manual" and row.request_value is not None]
    if manual and annotation is not None and manual[-1].request_value == annotation:
        return recorded_request(annotation)
    return recorded


def _last_scheduled(rows: Sequence[RunRow], recorded: str | None) -> str | None:
    times = [t for t in (recorded, *(row.scheduled_time for row in rows)) if t]
    return (
        max(times, key=lambda t: parse_time(t) or dt.datetime.min.replace(tzinfo=dt.UTC))
        if (times)
        else None
    )

"""Which run starts: spec changes, the run annotation, the schedule and explicit requests,
judged against the Jobs that exist so a restart never starts a run twice."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from kiln_operator.decisions.requests import ApiRunRequest
from kiln_operator.decisions.runs import RunRow
from kiln_operator.decisions.triggers import StartDecision, decide_start
from tests.unit.trainingjob.factories import spec_of, training_job

NOW = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)


def row(number: int, spec_hash: str = "aaaaaaaa", trigger: str = "spec", **extra: Any) -> RunRow:
    return RunRow(
        name=f"iris-r{number}-{spec_hash}",
        number=number,
        trigger=trigger,
        phase=extra.pop("phase", "Succeeded"),
        spec_hash=spec_hash,
        **extra,
    )


def decide(
    rows: list[RunRow], digest: str = "aaaaaaaa", spec: dict[str, Any] | None = None, **kw: Any
) -> StartDecision:
    return decide_start(
        training_job="iris",
        spec=spec_of(training_job(**(spec or {}))),
        spec_digest=digest,
        rows=rows,
        run_annotation=kw.pop("annotation", None),
        handled_run_request=kw.pop("handled", None),
        last_schedule_time=kw.pop("last_schedule_time", None),
        created="2026-03-02T08:00:00Z",
        now=NOW,
        **kw,
    )


def test_a_new_training_job_starts_its_first_run() -> None:
    decision = decide([])
    assert decision.start is not None
    assert (decision.start.name, decision.start.trigger) == ("iris-r1-aaaaaaaa", "spec")


def test_the_same_spec_starts_nothing() -> None:
    assert decide([row(1)]).start is None


def test_a_spec_edit_starts_the_next_run_named_by_the_new_hash() -> None:
    decision = decide([row(1)], digest="bbbbbbbb")
    assert decision.start is not None
    assert decision.start.name == "iris-r2-bbbbbbbb"


def test_reverting_the_spec_starts_a_new_run_under_a_new_name() -> None:
    decision = decide([row(1, "aaaaaaaa"), row(2, "bbbbbbbb")], digest="aaaaaaaa")
    assert decision.start is not None
    assert decision.start.name == "iris-r3-aaaaaaaa"


def test_a_new_annotation_value_starts_a_manual_run_once() -> None:
    decision = decide([row(1)], annotation="2026-03-02")
    assert decision.start is not None
    assert decision.start.trigger == "manual"
    assert decision.handled_run_request == "2026-03-02"
    handled = decide([row(1)], annotation="2026-03-02", handled="2026-03-02")
    assert handled.start is None


def test_a_manual_run_created_before_a_crash_counts_as_handled() -> None:
    manual = row(2, trigger="manual", request_value="again")
    decision = decide([row(1), manual], annotation="again", handled=None)
    assert decision.start is None
    assert decision.handled_run_request == "again"


def test_suspend_starts_nothing_even_when_asked() -> None:
    decision = decide([], spec={"suspend": True}, annotation="x")
    assert decision.start is None


def test_a_blocked_configuration_starts_nothing() -> None:
    assert decide([], blocked=True).start is None


def test_an_api_request_starts_a_run_with_its_trigger_and_id() -> None:
    request = ApiRunRequest("drift-7", "drift", "psi 0.4 on petal_width")
    decision = decide([row(1)], request=request)
    assert decision.start is not None
    assert (decision.start.trigger, decision.start.number) == ("drift", 2)
    assert (decision.start.request_id, decision.answered_request) == ("drift-7", "drift-7")
    assert decision.start.message == "psi 0.4 on petal_width"


def test_an_api_request_with_a_problem_starts_nothing() -> None:
    request = ApiRunRequest("x", problem="trigger 'spec' is not one of manual, drift")
    assert decide([row(1)], request=request).start is None


def test_a_hash_that_moved_without_a_new_generation_starts_nothing() -> None:
    """A release that changes a CRD default changes the stored spec, not its generation."""
    decision = decide([row(1, generation=3)], digest="bbbbbbbb", generation=3)
    assert decision.start is None
    assert decision.spec_generation == 3


def test_a_generation_status_already_covers_starts_nothing_whatever_the_hash() -> None:
    decision = decide([row(1, generation=3)], digest="bbbbbbbb", generation=5, spec_generation=5)
    assert decision.start is None


def test_an_edit_after_the_covered_generation_is_judged_by_its_hash() -> None:
    changed = decide([row(1, generation=3)], digest="bbbbbbbb", generation=4, spec_generation=3)
    assert changed.start is not None
    assert (changed.start.generation, changed.spec_generation) == (4, 4)
    unchanged = decide([row(1, generation=3)], generation=4, spec_generation=3)
    assert unchanged.start is None
    assert unchanged.spec_generation == 4, "an edit that changes no run-relevant field is covered"


def test_a_blocked_decision_covers_no_new_generation() -> None:
    decision = decide(
        [row(1, generation=3)], digest="bbbbbbbb", generation=4, blocked=True, spec_generation=3
    )
    assert decision.start is None
    assert decision.spec_generation == 3


def test_a_run_started_by_an_earlier_release_is_matched_by_its_wire_hash() -> None:
    legacy = row(1, spec_hash="0ld0ld00")
    assert decide([legacy], digest="bbbbbbbb", generation=2, wire_digest="0ld0ld00").start is None
    assert decide([legacy], digest="bbbbbbbb", generation=2).start is not None


SCHEDULED = {"schedule": "0 * * * *"}


def test_a_scheduled_training_job_starts_its_first_run_on_creation() -> None:
    decision = decide([], spec=SCHEDULED)
    assert decision.start is not None
    assert (decision.start.trigger, decision.start.message) == ("spec", "first run")
    assert decision.start.scheduled_time is None
    assert decision.next_schedule_time == "2026-03-02T11:00:00Z"


def test_a_scheduled_training_job_with_an_unchanged_spec_waits_for_its_schedule() -> None:
    decision = decide([row(1)], spec=SCHEDULED, last_schedule_time="2026-03-02T10:00:00Z")
    assert decision.start is None
    assert decision.next_schedule_time == "2026-03-02T11:00:00Z"


def test_a_spec_edit_of_a_scheduled_training_job_starts_a_spec_run() -> None:
    decision = decide(
        [row(1, trigger="schedule")],
        digest="bbbbbbbb",
        spec=SCHEDULED,
        last_schedule_time="2026-03-02T10:00:00Z",
    )
    assert decision.start is not None
    assert (decision.start.name, decision.start.trigger) == ("iris-r2-bbbbbbbb", "spec")
    assert decision.last_schedule_time == "2026-03-02T10:00:00Z"
    assert decision.next_schedule_time == "2026-03-02T11:00:00Z"


def test_a_spec_edit_goes_before_a_due_scheduled_time_which_stays_due() -> None:
    decision = decide(
        [row(1)], digest="bbbbbbbb", spec=SCHEDULED, last_schedule_time="2026-03-02T09:00:00Z"
    )
    assert decision.start is not None
    assert decision.start.trigger == "spec"
    assert decision.last_schedule_time == "2026-03-02T09:00:00Z"


def test_a_suspended_scheduled_training_job_does_not_run_on_a_spec_edit() -> None:
    decision = decide([row(1)], digest="bbbbbbbb", spec={**SCHEDULED, "suspend": True})
    assert decision.start is None


def test_a_missed_scheduled_time_starts_a_run_after_a_restart() -> None:
    decision = decide([row(1)], spec=SCHEDULED, last_schedule_time="2026-03-02T07:00:00Z")
    assert decision.start is not None
    assert decision.start.trigger == "schedule"
    assert decision.start.scheduled_time == "2026-03-02T10:00:00Z"
    assert decision.last_schedule_time == "2026-03-02T10:00:00Z"


def test_a_scheduled_run_created_before_a_crash_is_not_started_again() -> None:
    started = row(1, trigger="schedule", scheduled_time="2026-03-02T10:00:00Z")
    decision = decide([started], spec=SCHEDULED, last_schedule_time="2026-03-02T09:00:00Z")
    assert decision.start is None
    assert decision.last_schedule_time == "2026-03-02T10:00:00Z"


@pytest.mark.parametrize(
    ("policy", "starts", "replaces", "notice"),
    [
        pytest.param("Forbid", False, False, "ScheduleSkipped", id="forbid"),
        pytest.param("Allow", True, False, None, id="allow"),
        pytest.param("Replace", True, True, None, id="replace"),
    ],
)
def test_concurrency_with_an_active_run(
    policy: str, starts: bool, replaces: bool, notice: str | None
) -> None:
    active = replace(row(1), phase="Running")
    decision = decide(
        [active],
        spec={**SCHEDULED, "concurrencyPolicy": policy},
        last_schedule_time="2026-03-02T09:00:00Z",
    )
    assert (decision.start is not None) is starts
    assert decision.replace_active is replaces
    assert (decision.notice[0] if decision.notice else None) == notice
    assert decision.last_schedule_time == "2026-03-02T10:00:00Z"


def test_a_run_later_than_the_starting_deadline_is_skipped_with_a_notice() -> None:
    decision = decide(
        [row(1)],
        spec={**SCHEDULED, "startingDeadlineSeconds": 60},
        last_schedule_time="2026-03-02T09:00:00Z",
    )
    assert decision.start is None
    assert decision.notice is not None
    assert decision.notice[0] == "MissedSchedule"

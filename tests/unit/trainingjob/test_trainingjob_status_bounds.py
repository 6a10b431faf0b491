"""Status stays writable whatever runs report: every status the operator computes fits the
bounds the CRD declares (the API models below generate that schema), so an over-long pod
message, a huge annotation value or an edited Job never makes the status patch a 422."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.api.trainingjob import (
    MAX_LOCATION,
    MAX_RUN_MESSAGE,
    MAX_RUN_REQUEST,
    MAX_RUNS,
    TrainingJobStatus,
)
from kiln_operator.builders.event import desired_event
from kiln_operator.decisions.result import MAX_METRICS, InvalidResult, parse_result
from kiln_operator.decisions.runs import RunRow, observe_runs
from kiln_operator.decisions.status import desired_status
from kiln_operator.decisions.triggers import decide_start, recorded_request
from tests.unit.trainingjob.factories import pod, run_job, spec_of, training_job

Obj = dict[str, Any]
NOW = dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)
LONG = "x" * 20_000


def status_of(rows: list[RunRow], handled: str | None = None) -> Obj:
    return desired_status(
        previous={},
        generation=1,
        rows=rows,
        suspended=False,
        blocked=None,
        last_schedule_time=None,
        next_schedule_time=None,
        handled_run_request=handled,
        now="2026-03-02T10:30:00Z",
    )


def failed_with_long_messages() -> list[RunRow]:
    job = run_job(outcome="Failed", reason="BackoffLimitExceeded")
    job["status"]["conditions"][0]["message"] = LONG
    return observe_runs([job], [pod(job, "Failed", message=LONG, exit_code=1)], [])


def stuck_with_a_long_waiting_message() -> list[RunRow]:
    job = run_job()
    waiting = pod(job, "Pending", waiting="ErrImagePull")
    waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = LONG
    return observe_runs([job], [waiting], [])


def failed_with_a_long_reason() -> list[RunRow]:
    return observe_runs([run_job(outcome="Failed", reason="R" * 500)], [], [])


def job_with_edited_annotations() -> list[RunRow]:
    job = run_job()
    job["metadata"]["annotations"]["kiln.dev/run-number"] = "seven"
    job["metadata"]["annotations"]["kiln.dev/trigger"] = "cron"
    job["metadata"]["annotations"]["kiln.dev/lineage"] = json.dumps(
        {"image": "train:1", "hyperparameters": {"lr": 0.1, "depth": ["4"]}}
    )
    return observe_runs([job], [], [])


def more_active_runs_than_status_holds() -> list[RunRow]:
    return [
        RunRow(name=f"iris-r{n}-x", number=n, trigger="schedule", phase="Running")
        for n in range(1, MAX_RUNS + 6)
    ]


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(failed_with_long_messages, id="long-job-and-termination-messages"),
        pytest.param(stuck_with_a_long_waiting_message, id="long-pod-waiting-message"),
        pytest.param(failed_with_a_long_reason, id="long-job-failure-reason"),
        pytest.param(job_with_edited_annotations, id="job-annotations-edited-into-nonsense"),
        pytest.param(more_active_runs_than_status_holds, id="more-active-runs-than-the-limit"),
    ],
)
def test_the_status_of_extreme_runs_fits_the_schema(rows: Any) -> None:
    status = status_of(rows())
    TrainingJobStatus.model_validate(status)
    assert all(len(run.get("message", "")) <= MAX_RUN_MESSAGE for run in status["runs"])


def test_a_cut_message_keeps_its_beginning_and_says_it_was_cut() -> None:
    (row,) = failed_with_long_messages()
    message = row.to_status()["message"]
    assert message.startswith("xxx")
    assert message.endswith("\u2026")
    assert len(message) == MAX_RUN_MESSAGE


def test_a_run_number_that_cannot_be_read_is_left_out_not_written_as_zero() -> None:
    (row,) = job_with_edited_annotations()
    assert "number" not in row.to_status()
    assert row.trigger == "spec"


def test_the_newest_runs_are_the_ones_status_keeps() -> None:
    status = status_of(more_active_runs_than_status_holds())
    assert len(status["runs"]) == MAX_RUNS
    assert status["runs"][-1]["name"] == f"iris-r{MAX_RUNS + 5}-x"


def decide_manual(annotation: str, handled: str | None, rows: list[RunRow]) -> Any:
    return decide_start(
        training_job="iris",
        spec=spec_of(training_job()),
        spec_digest="aaaaaaaa",
        rows=rows,
        run_annotation=annotation,
        handled_run_request=handled,
        last_schedule_time=None,
        created="2026-03-02T08:00:00Z",
        now=NOW,
    )


def test_a_huge_run_annotation_is_recorded_within_bounds_and_starts_one_run_only() -> None:
    value = "retrain-" + "y" * 5000
    first_run = RunRow(
        name="iris-r1-aaaaaaaa", number=1, trigger="spec", phase="Succeeded", spec_hash="aaaaaaaa"
    )
    decision = decide_manual(value, None, [first_run])
    assert decision.start is not None
    recorded = decision.handled_run_request
    assert recorded is not None
    assert len(recorded) <= MAX_RUN_REQUEST
    TrainingJobStatus.model_validate(status_of([first_run], handled=recorded))
    assert decide_manual(value, recorded, [first_run]).start is None
    assert decide_manual(value + "!", recorded, [first_run]).start is not None


def test_annotation_values_that_fit_are_recorded_as_they_are() -> None:
    assert recorded_request("2026-03-02") == "2026-03-02"


def test_an_artifact_path_that_resolves_beyond_the_location_bound_is_an_invalid_result() -> None:
    output = "s3://bucket/" + "p" * (MAX_LOCATION - 20)
    message = json.dumps({"artifact": "m" * 100, "sha256": "ab" * 32})
    with pytest.raises(InvalidResult, match="longer than 2048 characters"):
        parse_result(message, output, None)


def test_an_event_about_a_long_reason_stays_within_the_event_limits() -> None:
    event = desired_event(training_job(), "Warning", "R" * 500, LONG, "2026-03-02T10:30:00Z")
    assert len(event["reason"]) == 128
    assert len(event["message"]) == 1024


def test_a_result_holds_no_more_metrics_than_the_crds_run_and_model_version_schemas() -> None:
    crds = Path(__file__).resolve().parents[3] / "crds"

    def schema_of(kind: str) -> Any:
        crd = yaml.safe_load((crds / f"kiln.dev_{kind}.yaml").read_text())
        return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    runs = schema_of("trainingjobs")["properties"]["status"]["properties"]["runs"]
    assert runs["items"]["properties"]["metrics"]["maxProperties"] == MAX_METRICS
    model_version = schema_of("modelversions")["properties"]["spec"]["properties"]
    assert model_version["metrics"]["maxProperties"] == MAX_METRICS

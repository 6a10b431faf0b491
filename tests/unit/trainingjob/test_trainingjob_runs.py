"""Each run's row, read from its Job and pods: phases, the Job controller's failure reasons
with the pod's story, blocked pods, results, and rows whose Jobs are gone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kiln_operator.decisions.runs import observe_runs, row_from_status, run_from_job
from tests.unit.trainingjob.factories import SHA, pod, result, run_job, training_job


def test_a_completed_run_with_a_result_awaits_registration() -> None:
    job = run_job(outcome="Complete")
    row = run_from_job(job, [pod(job, "Succeeded", result())], None)
    assert row.phase == "Succeeded"
    assert row.reason == "AwaitingRegistration"
    assert row.metrics == {"accuracy": 0.97}
    assert row.artifact_uri == "pvc://models/iris/iris-r1-0123abcd/model.onnx"
    assert row.sha256 == SHA
    assert (row.start_time, row.completion_time) == ("2026-01-01T00:00:05Z", "2026-01-01T00:10:00Z")


def test_a_completed_run_with_a_malformed_result_is_succeeded_but_invalid() -> None:
    job = run_job(outcome="Complete")
    row = run_from_job(job, [pod(job, "Succeeded", "not json")], None)
    assert (row.phase, row.reason) == ("Succeeded", "InvalidResult")
    assert row.message is not None
    assert "not valid JSON" in row.message


@pytest.mark.parametrize(
    ("reason", "exit_code", "expected_detail"),
    [
        pytest.param("BackoffLimitExceeded", 1, "exited with code 1 (Error): boom", id="backoff"),
        pytest.param("DeadlineExceeded", 137, "exited with code 137", id="deadline"),
    ],
)
def test_a_failed_run_keeps_the_job_reason_and_tells_the_pods_story(
    reason: str, exit_code: int, expected_detail: str
) -> None:
    job = run_job(outcome="Failed", reason=reason)
    row = run_from_job(job, [pod(job, "Failed", "boom", exit_code=exit_code)], None)
    assert (row.phase, row.reason) == ("Failed", reason)
    assert row.message is not None
    assert expected_detail in row.message
    assert row.completion_time == "2026-01-01T00:09:00Z"


@pytest.mark.parametrize("waiting", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_a_pod_that_cannot_start_names_the_reason(waiting: str) -> None:
    job = run_job()
    row = run_from_job(job, [pod(job, "Pending", waiting=waiting)], None)
    assert (row.phase, row.reason) == ("Pending", waiting)
    assert row.message is not None
    assert "image train:1" in row.message


def test_a_running_pod_makes_the_run_running() -> None:
    job = run_job()
    assert run_from_job(job, [pod(job, "Running")], None).phase == "Running"


def test_a_distributed_run_reads_the_result_of_index_zero() -> None:
    job = run_job(training_job(workers=2), outcome="Complete")
    pods = [
        pod(job, "Succeeded", result(metrics={"rank": 1}), index=1, finished="2026-01-01T00:11Z"),
        pod(job, "Succeeded", result(metrics={"rank": 0}), index=0),
    ]
    assert run_from_job(job, pods, None).metrics == {"rank": 0.0}


def test_a_final_verdict_survives_the_pods_being_gone() -> None:
    job = run_job(outcome="Complete")
    first = run_from_job(job, [pod(job, "Succeeded", result())], None)
    registered = replace(first, reason="Registered", model_version="iris-v1", message="ok")
    again = run_from_job(job, [], registered)
    assert (again.reason, again.model_version, again.metrics) == (
        "Registered",
        "iris-v1",
        {"accuracy": 0.97},
    )


def test_runs_are_ordered_by_number_and_keep_rows_of_deleted_jobs() -> None:
    recorded = [
        {"name": "iris-r1-old", "number": 1, "trigger": "spec", "phase": "Succeeded"},
        {"name": "iris-r2-gone", "number": 2, "trigger": "spec", "phase": "Running"},
    ]
    job = run_job(number=3)
    rows = observe_runs([job], [], recorded)
    assert [r.name for r in rows] == ["iris-r1-old", "iris-r2-gone", "iris-r3-0123abcd"]
    assert rows[0].phase == "Succeeded"
    assert (rows[1].phase, rows[1].reason) == ("Failed", "JobDeleted")


def test_a_status_row_round_trips() -> None:
    job = run_job(outcome="Complete")
    row = run_from_job(job, [pod(job, "Succeeded", result(baseline="b.json"))], None)
    assert row_from_status(row.to_status(), 0) == row

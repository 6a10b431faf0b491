"""Status and conditions: Ready derived from the parts, transition times kept, a patch only
for what changed, and an event for every transition."""

from __future__ import annotations

from typing import Any

import pytest

from kiln_operator.conditions import Verdict, set_condition
from kiln_operator.decisions.runs import RunRow
from kiln_operator.decisions.status import desired_status, status_patch, transition_notices

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"


def row(number: int, phase: str, reason: str | None = None, **extra: Any) -> RunRow:
    return RunRow(
        name=f"iris-r{number}-x", number=number, trigger="spec", phase=phase, reason=reason, **extra
    )


def status(rows: list[RunRow], previous: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return desired_status(
        previous=previous or {},
        generation=kw.pop("generation", 3),
        rows=rows,
        suspended=kw.pop("suspended", False),
        blocked=kw.pop("blocked", None),
        last_schedule_time=None,
        next_schedule_time=kw.pop("next_schedule_time", None),
        handled_run_request=None,
        now=kw.pop("now", T0),
    )


def conditions(value: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in value["conditions"]}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [],
            {"Ready": ("False", "NoRunFinished"), "Running": ("False", "NoActiveRun")},
            id="no-runs",
        ),
        pytest.param(
            [row(1, "Running", "Running")],
            {"Ready": ("False", "NoRunFinished"), "Running": ("True", "Running")},
            id="first-run-training",
        ),
        pytest.param(
            [row(1, "Pending", "ImagePullBackOff")],
            {"Running": ("False", "ImagePullBackOff"), "Ready": ("False", "ImagePullBackOff")},
            id="stuck-pulling",
        ),
        pytest.param(
            [
                row(1, "Succeeded", "Registered", model_version="iris-v1"),
                row(2, "Pending", "Unschedulable"),
            ],
            {"Ready": ("False", "Unschedulable"), "Succeeded": ("True", "JobComplete")},
            id="stuck-after-a-success",
        ),
        pytest.param(
            [row(1, "Succeeded", "Registered", model_version="iris-v1")],
            {
                "Ready": ("True", "Registered"),
                "Succeeded": ("True", "JobComplete"),
                "Registered": ("True", "Registered"),
            },
            id="registered",
        ),
        pytest.param(
            [row(1, "Succeeded", "BelowMinMetrics")],
            {
                "Ready": ("False", "BelowMinMetrics"),
                "Succeeded": ("True", "JobComplete"),
                "Registered": ("False", "BelowMinMetrics"),
            },
            id="below-min-metrics",
        ),
        pytest.param(
            [row(1, "Failed", "DeadlineExceeded")],
            {"Ready": ("False", "DeadlineExceeded"), "Succeeded": ("False", "DeadlineExceeded")},
            id="deadline",
        ),
        pytest.param(
            [
                row(1, "Succeeded", "Registered", model_version="iris-v1"),
                row(2, "Running", "Running"),
            ],
            {"Ready": ("True", "Registered"), "Running": ("True", "Running")},
            id="ready-stays-while-the-next-run-trains",
        ),
    ],
)
def test_conditions(rows: list[RunRow], expected: dict[str, tuple[str, str]]) -> None:
    found = conditions(status(rows))
    for type_, verdict in expected.items():
        assert found[type_] == verdict


def test_a_configuration_problem_makes_ready_false_with_its_reason() -> None:
    blocked = Verdict("Ready", "False", "UnknownAccelerator", "accelerator type 'tpu' is unknown")
    found = status([], blocked=blocked)
    ready = next(c for c in found["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("UnknownAccelerator", blocked.message)


def test_conditions_carry_the_observed_generation() -> None:
    found = status([], generation=7)
    assert found["observedGeneration"] == 7
    assert {c["observedGeneration"] for c in found["conditions"]} == {7}


def test_printer_column_fields_follow_the_latest_run() -> None:
    rows = [row(1, "Succeeded", "Registered", model_version="iris-v1"), row(2, "Running")]
    found = status(rows)
    assert (found["phase"], found["latestRun"], found["latestModelVersion"]) == (
        "Running",
        "iris-r2-x",
        "iris-v1",
    )


def test_an_unchanged_world_gives_an_empty_patch() -> None:
    rows = [row(1, "Succeeded", "Registered", model_version="iris-v1")]
    first = status(rows, now=T0)
    again = status(rows, previous=first, now=T1)
    assert status_patch(first, again) == {}


def test_transition_time_changes_only_when_the_status_flips() -> None:
    first = set_condition([], Verdict("Ready", "False", "A", "a"), 1, T0)
    reworded = set_condition(first, Verdict("Ready", "False", "B", "b"), 1, T1)
    flipped = set_condition(reworded, Verdict("Ready", "True", "C", "c"), 1, T1)
    assert reworded[0]["lastTransitionTime"] == T0
    assert flipped[0]["lastTransitionTime"] == T1


def test_a_removed_field_is_nulled_in_the_patch() -> None:
    assert status_patch({"phase": "Running", "x": 1}, {"phase": "Running"}) == {"x": None}


def test_every_run_transition_gets_an_event() -> None:
    before = [row(1, "Running", "Running").to_status()]
    after = [
        row(1, "Succeeded", "Registered", model_version="iris-v1"),
        row(2, "Pending", "Pending"),
    ]
    notices = transition_notices(before, after, [], None)
    assert [(n.type, n.reason) for n in notices] == [
        ("Normal", "RunSucceeded"),
        ("Normal", "Registered"),
        ("Normal", "RunStarted"),
    ]


def test_a_failed_run_is_a_warning_with_the_job_reason() -> None:
    before = [row(1, "Running", "Running").to_status()]
    notices = transition_notices(before, [row(1, "Failed", "BackoffLimitExceeded")], [], None)
    assert [(n.type, n.reason) for n in notices] == [("Warning", "BackoffLimitExceeded")]


def test_nothing_new_means_no_events() -> None:
    rows = [row(1, "Succeeded", "Registered", model_version="iris-v1")]
    assert transition_notices([r.to_status() for r in rows], rows, [], None) == []

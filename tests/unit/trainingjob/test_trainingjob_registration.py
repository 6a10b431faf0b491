"""The registration gate and version allocation: thresholds, adoption after a crash, and
the next version number whoever made the existing ones."""

from __future__ import annotations

from typing import Any

import pytest

from kiln_operator.api.trainingjob import Registration
from kiln_operator.decisions.registration import (
    next_version,
    registered_version_of,
    registration_gate,
    registration_step,
)
from kiln_operator.decisions.runs import AWAITING_REGISTRATION, RunRow


def gate(**spec: Any) -> Registration:
    return Registration.model_validate(spec)


@pytest.mark.parametrize(
    ("registration", "metrics", "passed", "reason", "message"),
    [
        pytest.param(gate(), {}, True, "", "", id="no-thresholds"),
        pytest.param(gate(minMetrics={"acc": 0.9}), {"acc": 0.9}, True, "", "", id="min-equal"),
        pytest.param(
            gate(minMetrics={"acc": 0.9}),
            {"acc": 0.71},
            False,
            "BelowMinMetrics",
            "acc 0.71 < minimum 0.9",
            id="below-min",
        ),
        pytest.param(
            gate(minMetrics={"f1": 0.5}),
            {"acc": 0.99},
            False,
            "BelowMinMetrics",
            "f1 is missing from the result",
            id="missing-metric",
        ),
        pytest.param(
            gate(maxMetrics={"loss": 0.3}),
            {"loss": 0.5},
            False,
            "AboveMaxMetrics",
            "loss 0.5 > maximum 0.3",
            id="above-max",
        ),
    ],
)
def test_registration_gate(
    registration: Registration, metrics: dict[str, float], passed: bool, reason: str, message: str
) -> None:
    verdict = registration_gate(registration, metrics)
    assert verdict.passed is passed
    assert verdict.reason == reason
    assert message in verdict.message


def test_every_failing_metric_is_named() -> None:
    verdict = registration_gate(gate(minMetrics={"a": 1, "b": 1}), {"a": 0.5, "b": 0.2})
    assert "a 0.5 < minimum 1" in verdict.message
    assert "b 0.2 < minimum 1" in verdict.message


def mv(name: str, model: str, version: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"model": model, "version": version},
    }


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        pytest.param([], 1, id="first-version"),
        pytest.param([mv("iris-v1", "iris", 1), mv("iris-v2", "iris", 2)], 3, id="after-two"),
        pytest.param([mv("hand-made", "iris", 7)], 8, id="hand-made-counts"),
        pytest.param([mv("other-v9", "other", 9)], 1, id="other-models-ignored"),
        pytest.param(
            [mv("iris-v1", "iris", 1), mv("iris-v2", "iris-legacy", 1)],
            3,
            id="name-held-by-another-models-version-is-skipped",
        ),
        pytest.param(
            [mv("iris-v1", "other", 1), mv("iris-v2", "other", 2)],
            3,
            id="several-foreign-names-in-a-row",
        ),
    ],
)
def test_next_version(existing: list[dict[str, Any]], expected: int) -> None:
    assert next_version("iris", existing) == expected


def awaiting(**metrics: float) -> RunRow:
    return RunRow(
        name="iris-r1-x",
        number=1,
        trigger="spec",
        phase="Succeeded",
        metrics=metrics,
        reason=AWAITING_REGISTRATION,
    )


def test_a_version_labelled_with_the_run_is_adopted_not_created_again() -> None:
    labels = {"kiln.dev/run": "iris-r1-x", "kiln.dev/trainingjob-uid": "u1"}
    found = registered_version_of("iris-r1-x", "u1", [mv("iris-v4", "iris", 4, labels)])
    assert found == "iris-v4"
    row = registration_step(awaiting(), gate(), found)
    assert row is not None
    assert (row.reason, row.model_version) == ("Registered", "iris-v4")


def test_a_namesake_run_of_a_recreated_training_job_is_not_adopted() -> None:
    labels = {"kiln.dev/run": "iris-r1-x", "kiln.dev/trainingjob-uid": "old-uid"}
    assert registered_version_of("iris-r1-x", "new-uid", [mv("iris-v1", "iris", 1, labels)]) is None


def test_disabled_registration_records_why() -> None:
    row = registration_step(awaiting(), gate(enabled=False), None)
    assert row is not None
    assert row.reason == "RegistrationDisabled"


def test_a_failing_gate_records_the_metric() -> None:
    row = registration_step(awaiting(acc=0.5), gate(minMetrics={"acc": 0.9}), None)
    assert row is not None
    assert (row.reason, row.message) == ("BelowMinMetrics", "not registered: acc 0.5 < minimum 0.9")


def test_a_passing_gate_asks_for_a_new_version() -> None:
    assert registration_step(awaiting(acc=0.95), gate(minMetrics={"acc": 0.9}), None) is None

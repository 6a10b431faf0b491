"""Problems that stop runs: each is a Ready verdict saying what is wrong and what to do, and
a refused Job is remembered for exactly the spec generation it was refused for."""

from __future__ import annotations

from typing import Any

import pytest

from kiln_operator.accelerators import AcceleratorMap
from kiln_operator.decisions.problems import (
    configuration_problem,
    hyperparameter_name_problem,
    refused_request,
    rejected_run,
    remembered_rejection,
    unreadable_spec,
)
from tests.unit.trainingjob.factories import spec_of, training_job


def ready(reason: str, generation: int) -> list[dict[str, Any]]:
    return [
        {"type": "Running", "status": "False", "reason": "NoActiveRun", "observedGeneration": 4},
        {
            "type": "Ready",
            "status": "False",
            "reason": reason,
            "message": "the API server refused the Job of run iris-r1-x: bad env",
            "observedGeneration": generation,
        },
    ]


@pytest.mark.parametrize(
    ("conditions", "remembered"),
    [
        pytest.param([], False, id="no-conditions"),
        pytest.param(ready("RunRejected", 4), True, id="rejected-this-generation"),
        pytest.param(ready("RunRejected", 3), False, id="rejected-an-older-spec"),
        pytest.param(ready("UnknownAccelerator", 4), False, id="another-problem"),
    ],
)
def test_a_rejection_is_remembered_for_its_generation_only(
    conditions: list[dict[str, Any]], remembered: bool
) -> None:
    verdict = remembered_rejection(conditions, generation=4)
    assert (verdict is not None) is remembered
    if verdict is not None:
        assert verdict.message.endswith("bad env")


def test_a_rejected_run_names_the_run_and_the_api_servers_words() -> None:
    verdict = rejected_run("iris-r2-abc", "spec.template.spec.containers[0].env[0]: Invalid")
    assert (verdict.type, verdict.status, verdict.reason) == ("Ready", "False", "RunRejected")
    assert "iris-r2-abc" in verdict.message
    assert "containers[0].env[0]: Invalid" in verdict.message


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        pytest.param(403, "grant the operator's service account", id="forbidden"),
        pytest.param(400, "retries with backoff", id="bad-request"),
    ],
)
def test_a_refused_request_says_what_was_refused_and_what_to_do(status: int, hint: str) -> None:
    verdict = refused_request("create", "/apis/batch/v1/namespaces/ml/jobs", status, "no")
    assert verdict.reason == "ApiRequestRefused"
    assert "create /apis/batch/v1/namespaces/ml/jobs" in verdict.message
    assert hint in verdict.message


def test_an_unreadable_spec_lists_the_first_errors_by_field() -> None:
    errors = [{"loc": ("field", index), "msg": "bad"} for index in range(8)]
    verdict = unreadable_spec(errors)
    assert verdict.reason == "InvalidSpec"
    assert "spec.field.0: bad" in verdict.message
    assert "spec.field.5" not in verdict.message
    assert "(and 3 more)" in verdict.message


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        pytest.param(["learning_rate", "C", "max-depth"], None, id="usable"),
        pytest.param(["élan", "n.estimators"], None, id="accents-and-dots-become-underscores"),
        pytest.param(["learning-rate", "learning_rate"], "KILN_HP_LEARNING_RATE", id="dash-vs-us"),
        pytest.param(["lr", "LR"], "KILN_HP_LR", id="case-only"),
        pytest.param(["--"], "no letter or digit", id="punctuation-only"),
        pytest.param([""], "no letter or digit", id="empty"),
    ],
)
def test_hyperparameter_names_must_become_distinct_variables(
    names: list[str], problem: str | None
) -> None:
    found = hyperparameter_name_problem(dict.fromkeys(names, "1"))
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_clashing_hyperparameters_block_runs_with_a_clear_reason() -> None:
    spec = spec_of(training_job(hyperparameters={"lr": "0.1", "LR": "0.2"}))
    verdict = configuration_problem(spec, AcceleratorMap())
    assert verdict is not None
    assert (verdict.status, verdict.reason) == ("False", "InvalidHyperparameters")
    assert "['LR', 'lr'] -> KILN_HP_LR" in verdict.message


H100 = AcceleratorMap({"nvidia-h100": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}})


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        pytest.param({}, None, id="plain"),
        pytest.param({"accelerator": {"type": "nvidia-h100", "count": 1}}, None, id="known-gpu"),
        pytest.param(
            {"accelerator": {"type": "tpu-v5", "count": 1}}, "UnknownAccelerator", id="unknown-gpu"
        ),
        pytest.param({"schedule": "0 3 * * *", "timeZone": "Europe/Berlin"}, None, id="schedule"),
        pytest.param(
            {"schedule": "0 3 * * *", "timeZone": "Mars/Olympus"}, "InvalidSchedule", id="bad-zone"
        ),
        pytest.param({"schedule": "99 * * * *"}, "InvalidSchedule", id="bad-minute"),
    ],
)
def test_configuration_problems(spec: dict[str, Any], reason: str | None) -> None:
    verdict = configuration_problem(spec_of(training_job(**spec)), H100)
    assert (verdict.reason if verdict else None) == reason

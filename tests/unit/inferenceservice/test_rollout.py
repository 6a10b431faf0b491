"""The rollout state machine: first deploy, canary steps, analysis verdicts, abort, promote,
pause, Immediate, the replica-ratio split and the drain, each from a status as the operator
would have written it (so a restarted operator decides the same)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kiln_operator.api.inferenceservice import InferenceServiceSpec
from kiln_operator.decisions.analysis import Judgement, PodSample
from kiln_operator.decisions.rollout import (
    DRAIN_SECONDS,
    DeploymentState,
    Observation,
    Plan,
    analysis_due,
    plan_rollout,
)
from kiln_operator.decisions.serving import Resolution, Target
from kiln_operator.decisions.triggers import format_time

NOW = dt.datetime(2026, 12, 7, 10, 0, 0, tzinfo=dt.UTC)
V1 = Target(1, "iris-v1")
V2 = Target(2, "iris-v2")
V3 = Target(3, "iris-v3")
BUCKETS = 17


def spec(**rollout: Any) -> InferenceServiceSpec:
    body: dict[str, Any] = {
        "model": {"name": "iris", "select": {}},
        "rollout": {
            "steps": [{"weight": 10, "duration": "1m"}, {"weight": 50, "duration": "1m"}],
            "analysis": {"interval": "30s", "minRequests": 20},
            **rollout,
        },
    }
    return InferenceServiceSpec.model_validate(body)


def at(seconds: float) -> str:
    return format_time(NOW + dt.timedelta(seconds=seconds))


def serving(target: Target = V1) -> dict[str, Any]:
    return {"version": target.version, "modelVersion": target.model_version, "since": at(-3600)}


def up(*versions: int) -> dict[int, DeploymentState]:
    return {v: DeploymentState(v, available=True, replicas=1) for v in versions}


def passed(requests: int = 100) -> Observation:
    return observation("Passed", requests)


def observation(verdict: str, requests: int = 100) -> Observation:
    sample = PodSample(requests, 0, (requests,) * BUCKETS)
    message = f"{requests} requests: {verdict.lower()}"
    return Observation(Judgement(verdict, message), requests, 0.0, 0.004, {"pod-a": sample})  # type: ignore[arg-type]


def plan(
    status: dict[str, Any],
    desired: Target | None,
    deployments: dict[int, DeploymentState],
    observed: Observation | None = None,
    the_spec: InferenceServiceSpec | None = None,
    generation: int = 1,
    now: dt.datetime = NOW,
) -> Plan:
    return plan_rollout(
        the_spec or spec(),
        generation,
        status,
        Resolution(desired),
        deployments,
        observed,
        now,
    )


def condition(result: Plan, type_: str) -> tuple[str, str]:
    (verdict,) = [v for v in result.conditions if v.type == type_]
    return verdict.status, verdict.reason


def tracks(result: Plan) -> list[tuple[int, str, int | None]]:
    return [(t.target.version, t.track, t.replicas) for t in result.tracks]


def test_the_first_version_is_deployed_as_stable_and_serves_once_available() -> None:
    waiting = plan({}, V1, {})
    assert tracks(waiting) == [(1, "stable", 1)]
    assert "serving" not in waiting.status
    assert condition(waiting, "Ready") == ("False", "Deploying")
    served = plan({}, V1, up(1))
    assert served.status["serving"]["version"] == 1
    assert served.status["history"][-1]["event"] == "Deployed"
    assert condition(served, "Ready") == ("True", "Serving")
    assert [n.reason for n in served.notices] == ["Deployed"]


def test_a_steady_service_plans_the_same_status_again() -> None:
    status = {"serving": serving()}
    result = plan(status, V1, up(1))
    assert result.status == status
    assert tracks(result) == [(1, "stable", 1)]
    assert result.notices == ()
    assert result.requeue_after is None


def test_a_new_version_starts_a_canary_at_step_one_but_takes_no_traffic_until_available() -> None:
    result = plan({"serving": serving()}, V2, up(1))
    canary = result.status["canary"]
    assert (canary["version"], canary["step"], canary["weight"]) == (2, 0, 0)
    assert "stepStartedAt" not in canary
    assert tracks(result) == [(1, "stable", 1), (2, "canary", 1)]
    assert condition(result, "Progressing") == ("True", "WaitingForCanary")


def test_the_step_begins_when_the_canary_is_available_with_the_replica_ratio_weight() -> None:
    status = {
        "serving": serving(),
        "canary": {"version": 2, "modelVersion": "iris-v2", "weight": 0, "step": 0},
    }
    result = plan(status, V2, up(1, 2))
    canary = result.status["canary"]
    # One stable and one canary replica: the replica ratio is 50%, whatever the step asks.
    assert (canary["stepStartedAt"], canary["weight"]) == (at(0), 50)
    assert result.weights == (50, 50)
    assert result.requeue_after == pytest.approx(30.2)


@pytest.mark.parametrize(
    ("replicas", "weight", "canary_replicas", "effective"),
    [
        pytest.param(9, 10, 1, 10, id="nine-stable-one-canary-is-10%"),
        pytest.param(4, 50, 4, 50, id="equal-halves"),
        pytest.param(3, 10, 1, 25, id="at-least-one-canary-pod"),
    ],
)
def test_the_service_router_sizes_the_canary_for_the_step_weight(
    replicas: int, weight: int, canary_replicas: int, effective: int
) -> None:
    the_spec = spec(steps=[{"weight": weight}])
    the_spec = the_spec.model_copy(update={"replicas": replicas})
    status = {
        "serving": serving(),
        "canary": {"version": 2, "modelVersion": "iris-v2", "weight": 0, "step": 0},
    }
    result = plan(status, V2, up(1, 2), the_spec=the_spec)
    assert tracks(result) == [(1, "stable", replicas), (2, "canary", canary_replicas)]
    assert result.status["canary"]["weight"] == effective


def test_gateway_api_weights_are_exact() -> None:
    the_spec = spec(trafficRouter="gatewayAPI", gateway={"name": "web"})
    status = {
        "serving": serving(),
        "canary": {"version": 2, "modelVersion": "iris-v2", "weight": 0, "step": 0},
    }
    result = plan(status, V2, up(1, 2), the_spec=the_spec)
    assert result.weights == (90, 10)
    assert result.status["canary"]["weight"] == 10


def in_step(
    step: int, started: float, analyses: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    canary: dict[str, Any] = {
        "version": 2,
        "modelVersion": "iris-v2",
        "weight": 50,
        "step": step,
        "stepStartedAt": at(started),
    }
    if analyses:
        canary["analysis"] = analyses
    return {"serving": serving(), "canary": canary}


def run(verdict: str, step: int, seconds: float) -> dict[str, Any]:
    return {"time": at(seconds), "step": step, "verdict": verdict, "requests": 100}


def test_an_analysis_is_due_one_interval_after_the_step_began_or_the_last_analysis() -> None:
    assert not analysis_due(in_step(0, -29), spec(), NOW)
    assert analysis_due(in_step(0, -30), spec(), NOW)
    assert not analysis_due(in_step(0, -50, [run("Passed", 0, -20)]), spec(), NOW)
    assert not analysis_due({"serving": serving()}, spec(), NOW)
    assert not analysis_due(in_step(0, -60), spec(strategy="Immediate"), NOW)


def test_a_passed_analysis_is_recorded_with_its_values_and_the_pod_counters() -> None:
    result = plan(in_step(0, -30), V2, up(1, 2), passed(100))
    (recorded,) = result.status["canary"]["analysis"]
    assert recorded["verdict"] == "Passed"
    assert (recorded["requests"], recorded["latencyP99Ms"]) == (100, 4.0)
    assert result.status["canary"]["samples"]["pod-a"]["requests"] == 100
    assert result.status["canary"]["step"] == 0, "the step's minute is not over"


def test_after_the_step_duration_a_passed_analysis_advances_the_step() -> None:
    result = plan(in_step(0, -60, [run("Passed", 0, -30)]), V2, up(1, 2), passed())
    canary = result.status["canary"]
    assert (canary["step"], canary["stepStartedAt"]) == (1, at(0))
    assert "StepAdvanced" in [n.reason for n in result.notices]


def test_an_inconclusive_analysis_holds_the_step_and_says_so() -> None:
    result = plan(
        in_step(0, -60, [run("Passed", 0, -30)]), V2, up(1, 2), observation("Inconclusive", 3)
    )
    assert result.status["canary"]["step"] == 0
    assert condition(result, "Progressing") == ("True", "AnalysisInconclusive")
    assert condition(result, "Degraded") == ("False", "AsExpected")
    assert "abortedVersion" not in result.status


def test_a_failed_analysis_aborts_at_once_and_keeps_stable() -> None:
    result = plan(in_step(0, -30), V2, up(1, 2), observation("Failed"), generation=4)
    assert "canary" not in result.status
    assert (result.status["abortedVersion"], result.status["abortedGeneration"]) == (2, 4)
    assert result.status["serving"]["version"] == 1
    assert tracks(result) == [(1, "stable", 1)]
    assert result.retire == (2,), "the canary's pods go at once"
    assert result.weights == (100, 0)
    assert result.status["history"][-1]["event"] == "Aborted"
    assert condition(result, "Degraded") == ("True", "RolloutAborted")
    assert ("Warning", "RolloutAborted") in [(n.type, n.reason) for n in result.notices]


def test_failure_limit_counts_consecutive_failures_only() -> None:
    the_spec = spec(analysis={"interval": "30s", "failureLimit": 2})
    once = plan(in_step(0, -30), V2, up(1, 2), observation("Failed"), the_spec=the_spec)
    assert "canary" in once.status
    after_pass = in_step(0, -90, [run("Failed", 0, -60), run("Passed", 0, -30)])
    assert (
        "canary" in plan(after_pass, V2, up(1, 2), observation("Failed"), the_spec=the_spec).status
    )
    twice = in_step(0, -60, [run("Failed", 0, -30)])
    assert (
        "canary" not in plan(twice, V2, up(1, 2), observation("Failed"), the_spec=the_spec).status
    )


def test_an_aborted_version_is_not_retried_until_the_spec_changes_or_another_is_desired() -> None:
    aborted = {"serving": serving(), "abortedVersion": 2, "abortedGeneration": 4}
    held = plan(aborted, V2, up(1), generation=4)
    assert "canary" not in held.status
    assert held.status["abortedVersion"] == 2
    assert condition(held, "Degraded") == ("True", "RolloutAborted")
    edited = plan(aborted, V2, up(1), generation=5)
    assert edited.status["canary"]["version"] == 2
    assert "abortedVersion" not in edited.status
    newer = plan(aborted, V3, up(1), generation=4)
    assert newer.status["canary"]["version"] == 3


def test_the_last_step_passed_promotes_by_relabelling_and_drains_the_old_version() -> None:
    result = plan(in_step(1, -60, [run("Passed", 1, -30)]), V2, up(1, 2), passed())
    assert result.status["serving"]["version"] == 2
    assert "canary" not in result.status
    assert tracks(result) == [(2, "stable", 1)]
    assert result.retire == (), "the old version drains first"
    assert result.requeue_after == pytest.approx(DRAIN_SECONDS + 0.1)
    assert result.status["history"][-1]["event"] == "Promoted"
    later = plan(result.status, V2, up(1, 2), now=NOW + dt.timedelta(seconds=DRAIN_SECONDS))
    assert later.retire == (1,)


def test_paused_holds_the_step_but_a_failing_canary_is_still_aborted() -> None:
    paused = spec(paused=True)
    held = plan(in_step(0, -120, [run("Passed", 0, -30)]), V2, up(1, 2), passed(), the_spec=paused)
    assert held.status["canary"]["step"] == 0
    assert condition(held, "Paused") == ("True", "PausedBySpec")
    failing = plan(in_step(0, -30), V2, up(1, 2), observation("Failed"), the_spec=paused)
    assert "canary" not in failing.status


def test_immediate_switches_once_the_new_version_is_available() -> None:
    immediate = spec(strategy="Immediate")
    waiting = plan({"serving": serving()}, V2, up(1), the_spec=immediate)
    assert tracks(waiting) == [(1, "stable", 1), (2, "canary", 1)]
    switched = plan(waiting.status, V2, up(1, 2), the_spec=immediate)
    assert switched.status["serving"]["version"] == 2
    assert tracks(switched) == [(2, "stable", 1)]


def test_a_newer_version_supersedes_the_canary() -> None:
    result = plan(in_step(0, -30), V3, up(1, 2))
    assert result.status["canary"]["version"] == 3
    assert result.status["history"][-1]["event"] == "RolledBack"
    assert 2 in result.retire


def test_a_canary_that_never_becomes_available_is_aborted() -> None:
    status = {
        "serving": serving(),
        "canary": {"version": 2, "modelVersion": "iris-v2", "weight": 0, "step": 0},
    }
    stuck = {
        1: DeploymentState(1, True, 1),
        2: DeploymentState(2, False, 1, "ProgressDeadlineExceeded"),
    }
    result = plan(status, V2, stuck)
    assert result.status["abortedVersion"] == 2
    assert "never became available" in result.status["history"][-1]["reason"]


def test_nothing_desired_keeps_serving_and_reports_why() -> None:
    status = {"serving": serving()}
    result = plan_rollout(
        spec(), 1, status, Resolution(None, "VersionNotFound", "no version 7"), up(1), None, NOW
    )
    assert tracks(result) == [(1, "stable", 1)]
    assert condition(result, "Ready") == ("True", "Serving")
    assert condition(result, "Degraded") == ("True", "VersionNotFound")


def test_autoscaling_leaves_stable_replicas_to_an_hpa_and_sizes_the_canary_from_its_size() -> None:
    the_spec = spec(steps=[{"weight": 50}]).model_copy(
        update={
            "autoscaling": InferenceServiceSpec.model_validate(
                {
                    "model": {"name": "iris", "version": 1},
                    "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
                }
            ).autoscaling
        }
    )
    status = {
        "serving": serving(),
        "canary": {"version": 2, "modelVersion": "iris-v2", "weight": 0, "step": 0},
    }
    deployments = {1: DeploymentState(1, True, 3), 2: DeploymentState(2, True, 3)}
    result = plan(status, V2, deployments, the_spec=the_spec)
    (stable, canary) = result.tracks
    assert (stable.replicas, stable.autoscale) == (None, (2, 5))
    assert (canary.replicas, canary.autoscale) == (3, None)


def test_a_prometheus_url_is_not_read_and_a_warning_says_so() -> None:
    the_spec = spec(analysis={"interval": "30s", "prometheusUrl": "http://prometheus:9090"})
    result = plan({"serving": serving()}, V2, up(1), the_spec=the_spec)
    assert ("Warning", "PrometheusNotSupported") in [(n.type, n.reason) for n in result.notices]

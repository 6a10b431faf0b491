"""The closed loop at the API level: drift measured by real ``kiln-server`` processes on the
live inputs the test sends, a drift run requested of the TrainingJob exactly once, its
version registered, validated, canaried and promoted; a worse version skipped.

The test plays the kubelet: training pods "train" by writing a real ONNX model, its
baseline and the result document (the operator registers the version), validation pods run
``kiln-server validate`` here, serving pods run ``kiln-server serve`` on loopback addresses.

Covers: inputs from the training distribution give no drift, no run and no status writes;
shifted inputs give drift and one run request, with the request id linking the
InferenceService's status, the TrainingJob's run and the ModelVersion's lineage; a second
shift within the cooldown starts nothing; the better version promoted, a worse one skipped
with its reason; two operator replicas, one killed and restarted mid-drift, request one run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from kiln_server.baseline import compute_baseline
from tests.cluster.test_inferenceservice import (
    KILN,
    Rig,
    canary_rollout,
    history_events,
    inference_service,
)
from tests.cluster.test_inferenceservice import (
    rig as serving_rig,  # noqa: F401 - a fixture, registered under this name
)
from tests.cluster.test_modelversion import CLAIM, place, wait_for_validation_job
from tests.cluster.test_trainingjob import condition, jobs_of, wait_for_jobs, wait_until
from tests.server import models
from tests.support.kube import Obj
from tests.support.operator import OperatorProcess
from tests.support.serving import Traffic
from tests.support.validation import run_validation_job

FEATURES = 8


@pytest.fixture(name="rig")
def loop_rig(serving_rig: Rig) -> Rig:  # noqa: F811 - the imported fixture
    """The InferenceService tests' rig: an operator, real model servers, the kubelet."""
    return serving_rig


ROWS_PER_REQUEST = 20
DRIFT = {"threshold": 0.2, "window": 1000, "interval": "1s", "sustainedFor": "3s"}


def rows_from(mean: float, rng: np.random.Generator) -> Callable[[], Obj]:
    def body() -> Obj:
        data = rng.normal(mean, 1.0, (ROWS_PER_REQUEST, FEATURES)).astype(np.float32)
        return {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [ROWS_PER_REQUEST, FEATURES],
                    "data": data.ravel().tolist(),
                }
            ]
        }

    return body


def training_job() -> Obj:
    return {
        "apiVersion": KILN,
        "kind": "TrainingJob",
        "metadata": {"name": "iris"},
        "spec": {
            "model": "iris",
            "image": "ghcr.io/kiln/train:1",
            "output": {"uri": f"pvc://{CLAIM}/iris"},
        },
    }


def train(rig: Rig, job: Obj, accuracy: float, seed: int = 7) -> str:
    """Play the run's pod: write a real model and the training data's baseline into the
    run's output folder and report them; returns the ModelVersion's name once Ready."""
    run = job["metadata"]["name"]
    folder = rig.pvc_root / CLAIM / "iris" / run
    _, sha256 = place(rig.pvc_root, f"iris/{run}", lambda d: models.tabular(d, seed=seed))
    rows = np.random.default_rng(seed).normal(0.0, 1.0, (2000, FEATURES))
    (folder / "baseline.json").write_text(json.dumps(compute_baseline(rows)))
    message = json.dumps(
        {
            "metrics": {"accuracy": accuracy},
            "artifact": "model.onnx",
            "sha256": sha256,
            "baseline": "baseline.json",
        }
    )
    rig.workloads.complete_job(job, message=message)
    registered = wait_until(
        f"run {run} registered",
        lambda: next(
            (
                r
                for r in (
                    rig.kube.get(KILN, "TrainingJob", "iris", rig.namespace).get("status") or {}
                ).get("runs")
                or []
                if r["name"] == run and r.get("modelVersion")
            ),
            None,
        ),
    )
    name = str(registered["modelVersion"])
    validation = wait_for_validation_job(rig.kube, rig.namespace, name)
    run_validation_job(rig.kube, rig.workloads, validation, rig.pvc_root)
    wait_until(
        f"{name} Ready",
        lambda: (
            (rig.kube.get(KILN, "ModelVersion", name, rig.namespace).get("status") or {}).get(
                "phase"
            )
            == "Ready"
        ),
    )
    return name


def looping_service() -> Obj:
    return inference_service(
        model={
            "name": "iris",
            "select": {
                "minMetrics": {"accuracy": 0.9},
                "mustBeatServing": [{"metric": "accuracy", "better": "higher"}],
            },
        },
        rollout=canary_rollout(),
        monitoring={"drift": DRIFT, "retrain": {"trainingJob": "iris", "cooldown": "1h"}},
    )


def start_loop(rig: Rig) -> str:
    """TrainingJob and InferenceService applied, the first run trained and served."""
    rig.kube.apply_manifest([training_job(), looping_service()], rig.namespace)
    (first,) = wait_for_jobs(rig.kube, rig.namespace, 1)
    version = train(rig, first, accuracy=0.93)
    rig.serve_version(1)
    rig.wait_status("v1 serving", lambda s: (s.get("serving") or {}).get("version") == 1)
    return version


def drift_of(rig: Rig) -> Obj:
    return rig.status().get("drift") or {}


def test_in_distribution_traffic_is_no_drift_no_run_and_no_writes_then_a_shift_retrains_once(
    rig: Rig,
) -> None:
    start_loop(rig)
    rng = np.random.default_rng(11)
    steady = {1: rows_from(0.0, rng), 2: rows_from(0.0, rng)}
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", steady, rate=40) as traffic:
        reading = wait_until("a drift reading", lambda: drift_of(rig), timeout=60)
        assert reading["drifted"] is False, reading
        time.sleep(3.0)  # the servers' windows fill up: the PSI settles
        before = rig.writes()
        time.sleep(5.0)
        assert rig.writes() == before, f"steady drift {drift_of(rig)} was written"
    assert len(jobs_of(rig.kube, rig.namespace)) == 1, "in-distribution inputs started a run"
    assert set(traffic.codes[1]) == {200}

    shifted = {1: rows_from(3.0, rng), 2: rows_from(3.0, rng)}
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", shifted, rate=40):
        drifted = wait_until("drift", lambda: (d := drift_of(rig)).get("drifted") and d, timeout=60)
        assert drifted["psi"] > DRIFT["threshold"]
        assert drifted["since"]
        (_, retrain_job) = wait_for_jobs(rig.kube, rig.namespace, 2)
        time.sleep(3.0)  # still drifted: no second request
    assert len(jobs_of(rig.kube, rig.namespace)) == 2
    status = rig.status()
    request_id = status["drift"]["lastRetrainRequest"]
    assert condition(status, "Retraining")["reason"] == "Requested"
    runs = rig.kube.get(KILN, "TrainingJob", "iris", rig.namespace)["status"]["runs"]
    (drift_run,) = [r for r in runs if r["name"] == retrain_job["metadata"]["name"]]
    assert (drift_run["trigger"], drift_run["runRequest"]) == ("drift", request_id)

    # A second shift within the cooldown starts nothing.
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", steady, rate=40):
        wait_until("drift released", lambda: drift_of(rig).get("drifted") is False, timeout=60)
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", shifted, rate=40):
        wait_until("drift again", lambda: drift_of(rig).get("drifted"), timeout=60)
        time.sleep(5.0)
    assert len(jobs_of(rig.kube, rig.namespace)) == 2, "a drift within the cooldown retrained"

    # The drift run trains a better model: validated, canaried and promoted.
    better = train(rig, retrain_job, accuracy=0.97, seed=8)
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", steady, rate=60):
        rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
        rig.serve_version(2)
        promoted = rig.wait_status(
            "v2 promoted", lambda s: (s.get("serving") or {}).get("version") == 2, timeout=90
        )
    assert history_events(promoted)[-1] == (2, "Promoted")
    lineage = rig.kube.get(KILN, "ModelVersion", better, rig.namespace)["spec"]["lineage"]
    assert lineage["run"] == drift_run["name"]
    assert drift_run["name"] in promoted["history"][-1]["reason"], "history names the run"

    # A worse version is skipped, with the reason.
    rig.kube.patch(
        KILN,
        "TrainingJob",
        "iris",
        rig.namespace,
        {"metadata": {"annotations": {"kiln.dev/run": "worse"}}},
    )
    (*_, third) = wait_for_jobs(rig.kube, rig.namespace, 3)
    worse = train(rig, third, accuracy=0.95, seed=9)
    skipped = rig.wait_status(
        "v3 skipped for not beating v2",
        lambda s: "does not beat serving" in ((s.get("skipped") or [{}])[0].get("reason") or ""),
    )
    assert skipped["skipped"][0]["modelVersion"] == worse
    assert "does not beat serving" in skipped["skipped"][0]["reason"]
    assert skipped["serving"]["version"] == 2
    assert not skipped.get("canary")


@pytest.fixture
def second_replica(rig: Rig, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = rig.operator.replica(tmp_path / "kiln-operator-2.log")
    with process.running():
        yield process
    process.assert_no_unhandled_exceptions()


def test_two_replicas_one_restarted_mid_drift_request_one_run(
    rig: Rig, second_replica: OperatorProcess
) -> None:
    start_loop(rig)
    rng = np.random.default_rng(5)
    shifted = {1: rows_from(3.0, rng)}
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", shifted, rate=40):
        wait_until("drift", lambda: drift_of(rig).get("drifted"), timeout=60)
        rig.operator.kill()
        rig.operator.start()
        wait_for_jobs(rig.kube, rig.namespace, 2)
        time.sleep(5.0)
    assert len(jobs_of(rig.kube, rig.namespace)) == 2, "more than one drift run"
    handled = rig.kube.get(KILN, "TrainingJob", "iris", rig.namespace)["status"][
        "handledRunRequests"
    ]
    assert handled == [drift_of(rig)["lastRetrainRequest"]]


@pytest.mark.slow
def test_a_scheduled_run_feeds_the_same_path_into_serving(rig: Rig) -> None:
    scheduled = training_job()
    scheduled["spec"]["schedule"] = "* * * * *"
    rig.kube.apply_manifest([scheduled, looping_service()], rig.namespace)
    (first,) = wait_for_jobs(rig.kube, rig.namespace, 1)
    train(rig, first, accuracy=0.93)
    rig.serve_version(1)
    rig.wait_status("v1 serving", lambda s: (s.get("serving") or {}).get("version") == 1)
    # The next minute's run (the schedule's, not the spec's) ...
    jobs = wait_until(
        "the scheduled run",
        lambda: (j := jobs_of(rig.kube, rig.namespace)) and len(j) >= 2 and j,
        timeout=90,
    )
    second = jobs[1]
    assert second["metadata"]["annotations"]["kiln.dev/trigger"] == "schedule"
    # ... registers a better version, which is validated, canaried and promoted.
    rng = np.random.default_rng(3)
    train(rig, second, accuracy=0.97, seed=8)
    with Traffic(
        rig.servers,
        rig.kube,
        rig.namespace,
        "iris",
        {1: rows_from(0.0, rng), 2: rows_from(0.0, rng)},
        rate=60,
    ):
        rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
        rig.serve_version(2)
        promoted = rig.wait_status(
            "v2 promoted", lambda s: (s.get("serving") or {}).get("version") == 2, timeout=90
        )
    assert second["metadata"]["name"] in promoted["history"][-1]["reason"]

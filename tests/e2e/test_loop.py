"""The closed loop on a cluster with nodes, nothing played by hand after the first apply.

``examples/loop/``: the sensors TrainingJob's first run really trains (``train.py --dataset
sensors``) and registers version 1; the operator validates it in a real pod and serves it
with model-server pods the cluster runs. The test then sends live inputs: from the
training distribution first (no drift, no run), then shifted; the model servers measure the
drift, the operator reads it, asks the TrainingJob for a drift run, the run really trains
on more data, its better version is validated, canaried under the shifted traffic and
promoted. Then a schedule is set: the next minute's run feeds the same path (version 3
promoted). The test prints the chain (drift reading → request id → run → ModelVersion →
rollout) and its timings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import pytest

from tests.e2e.conftest import KUBECONFIG_VARIABLE, REPO_ROOT, SKIP_REASON, Images
from tests.e2e.test_quickstart import run_registered
from tests.e2e.test_serving import Serving, Traffic
from tests.support.backends import Cluster
from tests.support.kube import Obj, load_manifests
from tests.support.operator import OperatorProcess

if not os.environ.get(KUBECONFIG_VARIABLE):
    pytest.skip(SKIP_REASON, allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

KILN = "kiln.dev/v1alpha1"
LOOP = REPO_ROOT / "examples" / "loop"
ROWS = 20


def sensors_rows(mean: float, seed: int) -> Callable[[], Obj]:
    rng = np.random.default_rng(seed)

    def body() -> Obj:
        data = rng.normal(mean, 1.0, (ROWS, 8)).astype(np.float32)
        shape = [ROWS, 8]
        return {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": shape, "data": data.ravel().tolist()}
            ]
        }

    return body


def loop_manifests(image: str) -> tuple[Obj, Obj]:
    (training_job,) = load_manifests(LOOP / "trainingjob.yaml")
    training_job["spec"]["image"] = image
    (service,) = load_manifests(LOOP / "inferenceservice.yaml")
    spec = service["spec"]
    spec["rollout"]["steps"] = [{"weight": 20, "duration": "4s"}, {"weight": 50, "duration": "4s"}]
    spec["rollout"]["analysis"].update(interval="3s", minRequests=10, maxLatencyP99="500ms")
    spec["monitoring"]["drift"].update(interval="1s", sustainedFor="4s")
    return training_job, service


def test_drift_in_live_traffic_retrains_and_the_better_version_is_promoted(
    cluster: Cluster,
    e2e_namespace: str,
    images: Images,
    models_claim: str,
    e2e_operator: OperatorProcess,
) -> None:
    kube = cluster.client
    training_job, service = loop_manifests(images.training)
    began = time.monotonic()
    kube.create(training_job, e2e_namespace)
    kube.create(service, e2e_namespace)
    serving = Serving(kube, e2e_namespace, "sensors", "sensors")
    first = kube.wait_for(
        KILN,
        "TrainingJob",
        "sensors",
        e2e_namespace,
        run_registered,
        timeout=240,
        description="run 1 registered",
    )
    assert first is not None
    serving.wait(
        "version 1 serving", lambda s: (s.get("serving") or {}).get("version") == 1, timeout=240
    )
    served_at = time.monotonic() - began

    with Traffic(
        kube, e2e_namespace, "sensors", model="sensors", body=sensors_rows(0.0, 1)
    ) as steady:
        reading = serving.wait("a drift reading", lambda s: s.get("drift"), timeout=60)
        time.sleep(5.0)
    assert reading["drift"]["drifted"] is False, reading["drift"]
    assert serving.wait("still not drifted", lambda s: True)["drift"]["drifted"] is False
    runs = kube.get(KILN, "TrainingJob", "sensors", e2e_namespace)["status"]["runs"]
    assert len(runs) == 1, "in-distribution inputs started a run"
    assert set(steady.codes[1]) == {200}

    shift_began = time.monotonic()
    with Traffic(
        kube, e2e_namespace, "sensors", model="sensors", body=sensors_rows(3.0, 2)
    ) as shifted:
        drifted = serving.wait("drift", lambda s: (s.get("drift") or {}).get("drifted"), timeout=60)
        drifted_at = time.monotonic() - shift_began
        requested = serving.wait(
            "a retrain request",
            lambda s: (s.get("drift") or {}).get("lastRetrainRequest"),
            timeout=60,
        )
        request_id = requested["drift"]["lastRetrainRequest"]
        requested_at = time.monotonic() - shift_began
        canary = serving.wait(
            "a canary of version 2",
            lambda s: (s.get("canary") or {}).get("version") == 2,
            timeout=300,
        )
        canary_at = time.monotonic() - shift_began
        promoted = serving.wait(
            "version 2 promoted",
            lambda s: (s.get("serving") or {}).get("version") == 2,
            timeout=180,
        )
        promoted_at = time.monotonic() - shift_began
    training = kube.get(KILN, "TrainingJob", "sensors", e2e_namespace)["status"]["runs"]
    (drift_run,) = [r for r in training if r.get("runRequest") == request_id]
    version = kube.get(KILN, "ModelVersion", drift_run["modelVersion"], e2e_namespace)
    entry = promoted["history"][-1]
    print(
        "\nthe loop:\n"
        f"  served v1 {served_at:.1f}s after the apply\n"
        f"  drift: PSI {drifted['drift']['psi']} over {drifted['drift']['rows']} rows, drifted "
        f"{drifted_at:.1f}s after the shift began\n"
        f"  run request {request_id} at +{requested_at:.1f}s\n"
        f"  run {drift_run['name']} (trigger {drift_run['trigger']}), accuracy "
        f"{drift_run['metrics']['accuracy']} -> ModelVersion {version['metadata']['name']} "
        f"(lineage.run {version['spec']['lineage']['run']})\n"
        f"  canary at +{canary_at:.1f}s, {entry['event']} at +{promoted_at:.1f}s: "
        f"{entry['reason']}\n"
        f"  requests: { {v: len(c) for v, c in shifted.codes.items()} }"
    )
    assert drift_run["trigger"] == "drift"
    assert version["spec"]["lineage"]["run"] == drift_run["name"]
    assert (
        version["spec"]["metrics"]["accuracy"] > first["status"]["runs"][0]["metrics"]["accuracy"]
    )
    assert entry["event"] == "Promoted"
    assert drift_run["name"] in entry["reason"]
    assert canary["canary"]["version"] == 2
    assert set(shifted.codes[1]) == {200}, "a stable request failed"
    assert len(training) == 2, "more than one drift run"

    # Scheduled retraining feeds the same path: the next minute's run trains on more data.
    kube.patch(KILN, "TrainingJob", "sensors", e2e_namespace, {"spec": {"schedule": "* * * * *"}})
    schedule_began = time.monotonic()
    with Traffic(kube, e2e_namespace, "sensors", model="sensors", body=sensors_rows(0.0, 3)):
        scheduled = serving.wait(
            "version 3 promoted",
            lambda s: (s.get("serving") or {}).get("version") == 3,
            timeout=240,
        )
    runs = kube.get(KILN, "TrainingJob", "sensors", e2e_namespace)["status"]["runs"]
    (third,) = [r for r in runs if r.get("modelVersion") == scheduled["serving"]["modelVersion"]]
    print(
        f"  scheduled run {third['name']} (trigger {third['trigger']}), accuracy "
        f"{third['metrics']['accuracy']}, promoted {time.monotonic() - schedule_began:.1f}s "
        "after the schedule was set"
    )
    assert third["trigger"] == "schedule"
    assert third["name"] in scheduled["history"][-1]["reason"]

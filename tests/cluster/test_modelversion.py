"""ModelVersion end to end at the API level: the real ``kiln-operator`` validates each
artifact with a Job whose pod really runs ``kiln-server validate`` (the test plays the
kubelet by running the pod's command here, on real ONNX models it builds).

Covers: a good artifact becoming Ready with its signature; wrong digest, a non-ONNX file,
a model that fails at inference, an unreachable URI and a baseline that does not fit, each
Failed with its precise reason and a Warning event; credentials from a Secret; no artifact
validated twice (Job deleted after the verdict, operator restarted), a Job deleted before
the verdict replaced; approval recorded with who and when.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiln_server.baseline import compute_baseline
from tests.cluster.test_trainingjob import condition, wait_until
from tests.server import models
from tests.server.server_process import free_port
from tests.support.backends import Cluster
from tests.support.kube import KubeClient, Obj
from tests.support.kubelet import Workloads
from tests.support.operator import OperatorProcess
from tests.support.validation import run_validation_job

KILN = "kiln.dev/v1alpha1"
CLAIM = "models"
TOKEN = "Bearer kiln-test-token"


@pytest.fixture
def pvc_root(tmp_path: Path) -> Path:
    """The folder standing for the validation pod's ``/mnt/pvc``: claim ``models`` inside."""
    root = tmp_path / "pvc"
    (root / CLAIM).mkdir(parents=True)
    return root


@pytest.fixture
def validating_operator(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        cluster.kubeconfig,
        namespace,
        tmp_path / "kiln-operator.log",
        extra_args=[
            *("--model-server-image", "kiln-server:test", "--validation-deadline", "120"),
            *("--model-server-pull-secret", "registry-creds"),
        ],
    )
    with process.running():
        yield process


@pytest.fixture
def token_server(pvc_root: Path) -> Iterator[str]:
    """Serves the ``models`` claim's files over HTTP, only with the right Authorization."""
    directory = pvc_root / CLAIM

    class Guarded(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != TOKEN:
                self.send_error(403, "a token is required")
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Guarded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def place(pvc_root: Path, folder: str, build: Any = models.tabular) -> tuple[str, str]:
    """Build a model into the claim; its ``pvc://`` URI and digest."""
    path = Path(build(str(pvc_root / CLAIM / folder)))
    return f"pvc://{CLAIM}/{folder}/{path.name}", sha256_of(path)


def model_version(name: str, uri: str, sha256: str, version: int = 1, **spec: Any) -> Obj:
    body: Obj = {"model": "iris", "version": version, "artifact": {"uri": uri, "sha256": sha256}}
    body.update(spec)
    return {"apiVersion": KILN, "kind": "ModelVersion", "metadata": {"name": name}, "spec": body}


def validation_jobs(kube: KubeClient, namespace: str, name: str) -> list[Obj]:
    selector = f"kiln.dev/modelversion={name}"
    return list(kube.list("batch/v1", "Job", namespace, label_selector=selector)["items"])


def wait_for_validation_job(kube: KubeClient, namespace: str, name: str) -> Obj:
    jobs = wait_until(
        f"the validation Job of {name}", lambda: validation_jobs(kube, namespace, name)
    )
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]  # type: ignore[no-any-return]


def status_of(kube: KubeClient, namespace: str, name: str) -> Obj:
    return kube.get(KILN, "ModelVersion", name, namespace).get("status") or {}


def wait_for_phase(kube: KubeClient, namespace: str, name: str, phase: str) -> Obj:
    return wait_until(  # type: ignore[no-any-return]
        f"{name} {phase}",
        lambda: (s := status_of(kube, namespace, name)).get("phase") == phase and s,
    )


def event_reasons(kube: KubeClient, namespace: str, name: str) -> list[str]:
    return [
        e["reason"]
        for e in kube.list("v1", "Event", namespace)["items"]
        if e["involvedObject"].get("name") == name
    ]


def wait_for_event(kube: KubeClient, namespace: str, name: str, reason: str) -> None:
    """Events are written after the status they announce: wait for one."""
    wait_until(f"a {reason} event", lambda: reason in event_reasons(kube, namespace, name))


def warnings_of(kube: KubeClient, namespace: str, name: str) -> list[Obj]:
    return [
        e
        for e in kube.list("v1", "Event", namespace)["items"]
        if e["involvedObject"].get("name") == name and e["type"] == "Warning"
    ]


@dataclass(frozen=True)
class Rig:
    """What each test here works with: the cluster, its namespace, the stand-in kubelet,
    the running operator and the folder standing for the validation pods' ``/mnt/pvc``."""

    kube: KubeClient
    namespace: str
    workloads: Workloads
    operator: OperatorProcess
    pvc_root: Path


@pytest.fixture
def rig(
    kube: KubeClient,
    namespace: str,
    workloads: Workloads,
    validating_operator: OperatorProcess,
    pvc_root: Path,
) -> Rig:
    return Rig(kube, namespace, workloads, validating_operator, pvc_root)


def validate(rig: Rig, body: Obj) -> Obj:
    """Apply ``body``, run its validation Job's pod for real, return the final status."""
    name = body["metadata"]["name"]
    rig.kube.apply_manifest([body], rig.namespace)
    job = wait_for_validation_job(rig.kube, rig.namespace, name)
    run_validation_job(rig.kube, rig.workloads, job, rig.pvc_root)
    return wait_until(  # type: ignore[no-any-return]
        f"a verdict on {name}",
        lambda: (
            (s := status_of(rig.kube, rig.namespace, name)).get("phase") in ("Ready", "Failed")
            and s
        ),
    )


def test_a_good_artifact_becomes_ready_with_its_real_signature(
    rig: Rig,
) -> None:
    kube, namespace, workloads, pvc_root = rig.kube, rig.namespace, rig.workloads, rig.pvc_root
    uri, sha256 = place(pvc_root, "iris/v1")
    baseline = pvc_root / CLAIM / "iris" / "v1" / "baseline.json"
    rows = np.random.default_rng(3).standard_normal((100, 8))
    baseline.write_text(json.dumps(compute_baseline(rows)))
    body = model_version(
        "iris-v1",
        uri,
        sha256,
        baseline={"uri": f"pvc://{CLAIM}/iris/v1/baseline.json"},
        metrics={"accuracy": 0.94, "loss": 0.2},
    )
    kube.apply_manifest([body], namespace)
    job = wait_for_validation_job(kube, namespace, "iris-v1")
    pending = wait_until("a Pending phase", lambda: status_of(kube, namespace, "iris-v1"))
    assert pending["phase"] == "Pending"
    assert pending["validationJob"] == job["metadata"]["name"]
    pod_spec = job["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["image"] == "kiln-server:test"
    assert pod_spec["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert container["args"][:5] == ["validate", "--uri", uri, "--sha256", sha256]
    assert {"name": "claim-0", "mountPath": f"/mnt/pvc/{CLAIM}", "readOnly": True} in (
        container["volumeMounts"]
    )
    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelVersion"

    run_validation_job(kube, workloads, job, pvc_root)
    status = wait_for_phase(kube, namespace, "iris-v1", "Ready")
    assert status["signature"] == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert status["sizeBytes"] == (pvc_root / CLAIM / "iris" / "v1" / "model.onnx").stat().st_size
    assert (status["opset"], status["baselineFeatures"]) == (models.OPSET, 8)
    assert status["keyMetric"] == "accuracy=0.94"
    assert condition(status, "Validated")["status"] == "True"
    assert condition(status, "Ready")["status"] == "True"
    assert status["observedGeneration"] == 1
    wait_for_event(kube, namespace, "iris-v1", "Validated")
    assert warnings_of(kube, namespace, "iris-v1") == []


def not_onnx(directory: str) -> str:
    path = Path(directory) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    return str(path)


@pytest.mark.parametrize(
    ("case", "reason", "message"),
    [
        ("wrong-digest", "DigestMismatch", "sha256 mismatch for pvc://models/wrong-digest/"),
        ("not-onnx", "NotOnnx", "pvc://models/not-onnx/model.onnx is not an ONNX model"),
        ("fails", "InferenceFailed", "one inference on zeros failed"),
        ("unreachable", "FetchFailed", "(after 4 attempts)"),
        ("baseline", "BaselineInvalid", "baseline: unknown baseline format"),
    ],
)
def test_a_bad_artifact_fails_with_its_precise_reason_and_a_warning(
    rig: Rig,
    case: str,
    reason: str,
    message: str,
) -> None:
    kube, namespace, pvc_root = rig.kube, rig.namespace, rig.pvc_root
    build = {"not-onnx": not_onnx, "fails": models.fails_at_inference}.get(case, models.tabular)
    uri, sha256 = place(pvc_root, case, build)
    spec: Obj = {}
    if case == "wrong-digest":
        sha256 = "0" * 64
    elif case == "unreachable":
        uri = f"http://127.0.0.1:{free_port()}/model.onnx"
    elif case == "baseline":
        (pvc_root / CLAIM / case / "baseline.json").write_text('{"format": "other/v2"}')
        spec["baseline"] = {"uri": f"pvc://{CLAIM}/{case}/baseline.json"}
    status = validate(rig, model_version(case, uri, sha256, **spec))
    assert status["phase"] == "Failed"
    validated = condition(status, "Validated")
    assert (validated["status"], validated["reason"]) == ("False", reason)
    assert message in validated["message"]
    assert (condition(status, "Ready")["status"], condition(status, "Ready")["reason"]) == (
        "False",
        reason,
    )
    assert "signature" not in status
    (warning,) = wait_until("a Warning event", lambda: warnings_of(kube, namespace, case))
    assert warning["reason"] == reason
    assert message in warning["message"]


def test_credentials_from_the_referenced_secret_fetch_a_guarded_artifact(
    rig: Rig,
    token_server: str,
) -> None:
    kube, namespace, pvc_root = rig.kube, rig.namespace, rig.pvc_root
    _, sha256 = place(pvc_root, "guarded")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "model-store"},
        "data": {"KILN_FETCH_AUTHORIZATION": base64.b64encode(TOKEN.encode()).decode()},
    }
    kube.apply_manifest([secret], namespace)
    uri = f"{token_server}/guarded/model.onnx"
    body = model_version("guarded", uri, sha256, credentials={"name": "model-store"})
    status = validate(rig, body)
    assert status["phase"] == "Ready", condition(status, "Validated")
    job = validation_jobs(kube, namespace, "guarded")[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "model-store"}}]

    without = model_version("unguarded", uri, sha256, version=2)
    refused = validate(rig, without)
    assert condition(refused, "Validated")["reason"] == "FetchFailed"
    assert "answered HTTP 403" in condition(refused, "Validated")["message"]


def test_nothing_is_validated_twice_and_a_job_lost_before_its_verdict_is_replaced(
    rig: Rig,
) -> None:
    kube, namespace, pvc_root = rig.kube, rig.namespace, rig.pvc_root
    uri, sha256 = place(pvc_root, "once")
    kube.apply_manifest([model_version("lost", uri, sha256, version=2)], namespace)
    lost = wait_for_validation_job(kube, namespace, "lost")
    kube.delete(
        "batch/v1", "Job", lost["metadata"]["name"], namespace, propagation_policy="Background"
    )
    replacement = wait_until(
        "a new validation Job",
        lambda: [
            j
            for j in validation_jobs(kube, namespace, "lost")
            if j["metadata"]["uid"] != lost["metadata"]["uid"]
        ],
    )[0]
    assert replacement["metadata"]["name"] == lost["metadata"]["name"]

    status = validate(rig, model_version("once", uri, sha256))
    assert status["phase"] == "Ready"
    (job,) = validation_jobs(kube, namespace, "once")
    kube.delete(
        "batch/v1", "Job", job["metadata"]["name"], namespace, propagation_policy="Background"
    )
    wait_until("the Job gone", lambda: not validation_jobs(kube, namespace, "once"))
    kube.patch(KILN, "ModelVersion", "once", namespace, {"spec": {"description": "edited"}})
    rig.operator.restart()
    # The restarted operator lists every ModelVersion again; the edit and the restart are
    # reconciled against a verdict already recorded for this artifact: no new Job.
    wait_until(
        "the edit observed",
        lambda: status_of(kube, namespace, "once").get("observedGeneration") == 2,
    )
    assert validation_jobs(kube, namespace, "once") == []
    assert status_of(kube, namespace, "once")["phase"] == "Ready"
    rig.operator.assert_no_unhandled_exceptions()


def test_approval_records_who_approved_and_when(
    rig: Rig,
) -> None:
    kube, namespace, pvc_root = rig.kube, rig.namespace, rig.pvc_root
    uri, sha256 = place(pvc_root, "approved")
    status = validate(rig, model_version("approved", uri, sha256))
    assert "approval" not in status
    kube.patch(
        KILN,
        "ModelVersion",
        "approved",
        namespace,
        {
            "metadata": {"annotations": {"kiln.dev/approved-by": "alice@example.com"}},
            "spec": {"approved": True},
        },
        field_manager="release-bot",
    )
    approval = wait_until(
        "the approval recorded", lambda: status_of(kube, namespace, "approved").get("approval")
    )
    assert approval["approvedBy"] == "alice@example.com"
    assert approval["fieldManager"] == "release-bot"
    assert approval["approvedAt"].endswith("Z")
    wait_for_event(kube, namespace, "approved", "Approved")
    kube.patch(KILN, "ModelVersion", "approved", namespace, {"spec": {"approved": False}})
    wait_until(
        "the approval dropped",
        lambda: (
            "approval" not in status_of(kube, namespace, "approved")
            and status_of(kube, namespace, "approved")["observedGeneration"] == 3
        ),
    )
    assert status_of(kube, namespace, "approved")["phase"] == "Ready"

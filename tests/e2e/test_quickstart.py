"""The quick start on a cluster with nodes: a real training run becomes a ModelVersion whose
digest is the digest of the model file on the volume.

Covers, in the quick start's order: the CRDs from ``crds/`` (the session's ``cluster``
fixture) and the claim of ``examples/quickstart/manifests.yaml``; the TrainingJob of
``examples/training/trainingjob.yaml``, reconciled by the real ``kiln-operator``, run by the
cluster's Job controller, scheduler and a node executing ``train.py``; its registration as a
ModelVersion (artifact URI on the claim, sha256 digest, metrics); and ``kiln-server
validate`` in a pod on the same claim, which confirms that digest against the file and
refuses a wrong one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from kiln_operator.decisions.runs import BLOCKING_WAIT_REASONS
from kiln_server.contract import VALIDATION_FAILED_EXIT_CODE
from tests.e2e.conftest import (
    KUBECONFIG_VARIABLE,
    SKIP_REASON,
    Images,
    training_job_manifest,
    validate_pod,
)
from tests.support.backends import Cluster
from tests.support.kube import Obj
from tests.support.operator import OperatorProcess

if not os.environ.get(KUBECONFIG_VARIABLE):
    pytest.skip(SKIP_REASON, allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

KILN = "kiln.dev/v1alpha1"
#: train.py takes seconds; the rest is scheduling, image pulls and the operator's reconciles.
TRAINING_TIMEOUT = 180.0
VALIDATION_TIMEOUT = 120.0
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class QuickstartRun:
    """The quick start's first run, as the cluster shows it once it registered a model."""

    claim: str
    training_job: Obj
    model_version: Obj
    job: Obj
    pods: list[Obj]

    @property
    def run(self) -> Obj:
        """The TrainingJob's status entry of the run."""
        status = self.training_job["status"]
        (run,) = (row for row in status["runs"] if row["name"] == status["latestRun"])
        return dict(run)

    @property
    def artifact(self) -> Any:
        return self.model_version["spec"]["artifact"]


def run_registered(training_job: Obj | None) -> bool:
    """The latest run Succeeded and registered a ModelVersion.

    A run that failed, or whose pod cannot start (the operator records why in the run's
    reason), ends the wait at once with the TrainingJob's status.
    """
    status = (training_job or {}).get("status") or {}
    runs = [row for row in status.get("runs") or [] if row["name"] == status.get("latestRun")]
    if status.get("phase") == "Failed" or any(
        row.get("reason") in BLOCKING_WAIT_REASONS for row in runs
    ):
        raise AssertionError(
            "the training run failed or cannot start:\n" + yaml.safe_dump(status, sort_keys=False)
        )
    return status.get("phase") == "Succeeded" and bool(status.get("latestModelVersion"))


def terminated_state(pod: Obj) -> Any:
    """``state.terminated`` of the pod's only container."""
    (container,) = pod["status"]["containerStatuses"]
    return container["state"]["terminated"]


def another_digest(sha256: str) -> str:
    """A well-formed digest that differs from ``sha256`` in its first hex digit."""
    return ("1" if sha256[0] == "0" else "0") + sha256[1:]


@pytest.fixture(scope="module")
def quickstart(
    cluster: Cluster,
    e2e_namespace: str,
    images: Images,
    models_claim: str,
    e2e_operator: OperatorProcess,
) -> QuickstartRun:
    """Apply the example TrainingJob and wait until its first run registered a model."""
    kube = cluster.client
    created = kube.create(training_job_manifest(images.training), e2e_namespace)
    training_job = kube.wait_for(
        KILN,
        "TrainingJob",
        created["metadata"]["name"],
        e2e_namespace,
        run_registered,
        timeout=TRAINING_TIMEOUT,
        description="a Succeeded run and status.latestModelVersion",
    )
    assert training_job is not None
    status = training_job["status"]
    model_version = kube.get(KILN, "ModelVersion", status["latestModelVersion"], e2e_namespace)
    job = kube.get("batch/v1", "Job", status["latestRun"], e2e_namespace)
    pods = kube.list(
        "v1",
        "Pod",
        e2e_namespace,
        label_selector=f"batch.kubernetes.io/job-name={job['metadata']['name']}",
    )["items"]
    return QuickstartRun(models_claim, training_job, model_version, job, pods)


def test_the_run_is_a_job_whose_pod_a_node_ran_to_success(quickstart: QuickstartRun) -> None:
    assert quickstart.run["job"] == quickstart.job["metadata"]["name"]
    job_status = quickstart.job["status"]
    assert job_status.get("succeeded") == 1
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job_status["conditions"])
    succeeded = [p for p in quickstart.pods if p["status"]["phase"] == "Succeeded"]
    assert len(succeeded) == 1, [p["status"] for p in quickstart.pods]
    (pod,) = succeeded
    assert pod["spec"].get("nodeName"), "the scheduler bound the pod to a node"
    terminated = terminated_state(pod)
    assert terminated["exitCode"] == 0
    # train.py's result, as the node's kubelet reported it from the termination message.
    result = json.loads(terminated["message"])
    assert result["sha256"] == quickstart.artifact["sha256"]
    assert result["metrics"] == quickstart.run["metrics"]


def test_the_run_registers_a_model_version_of_its_artifact_on_the_claim(
    quickstart: QuickstartRun, images: Images
) -> None:
    run = quickstart.run
    status = quickstart.training_job["status"]
    name = quickstart.model_version["metadata"]["name"]
    assert run["phase"] == "Succeeded"
    assert run["modelVersion"] == status["latestModelVersion"] == name
    # What the quick start waits for (`kubectl wait --for=condition=Registered`).
    (registered,) = (c for c in status["conditions"] if c["type"] == "Registered")
    assert registered["status"] == "True", registered

    spec = quickstart.model_version["spec"]
    output = training_job_manifest(images.training)["spec"]["output"]["uri"]
    assert spec["artifact"]["uri"] == f"{output}/{run['name']}/model.onnx"
    assert spec["artifact"]["uri"].startswith(f"pvc://{quickstart.claim}/")
    assert SHA256.match(spec["artifact"]["sha256"]), spec["artifact"]
    assert spec["artifact"]["uri"] == run["artifact"]["uri"]
    assert spec["artifact"]["sha256"] == run["artifact"]["sha256"]
    assert spec["lineage"]["run"] == run["name"]
    assert spec["lineage"]["image"] == images.training
    # The example's registration gate (register.minMetrics.accuracy: 0.9) let it through.
    assert spec["metrics"]["accuracy"] >= 0.9


def test_validate_confirms_the_registered_digest_against_the_file_on_the_volume(
    quickstart: QuickstartRun, images: Images, run_pod: Callable[[Obj], Obj]
) -> None:
    artifact = quickstart.artifact
    pod = run_pod(
        validate_pod(
            "validate-registered",
            images.server,
            quickstart.claim,
            artifact["uri"],
            artifact["sha256"],
        )
    )

    terminated = terminated_state(pod)
    assert pod["status"]["phase"] == "Succeeded", terminated
    report = json.loads(terminated["message"])
    assert report["ok"] is True
    assert report["sha256"] == artifact["sha256"]
    assert report["sizeBytes"] > 0
    # The iris model: four float features in, a label and three class probabilities out.
    assert report["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert sorted(output["name"] for output in report["outputs"]) == ["label", "probabilities"]


def test_validate_fails_when_the_digest_is_not_the_file_s(
    quickstart: QuickstartRun, images: Images, run_pod: Callable[[Obj], Obj]
) -> None:
    artifact = quickstart.artifact
    wrong = another_digest(artifact["sha256"])
    pod = run_pod(
        validate_pod(
            "validate-wrong-digest", images.server, quickstart.claim, artifact["uri"], wrong
        )
    )

    terminated = terminated_state(pod)
    assert pod["status"]["phase"] == "Failed", terminated
    assert terminated["exitCode"] == VALIDATION_FAILED_EXIT_CODE
    report = json.loads(terminated["message"])
    assert (report["ok"], report["reason"]) == (False, "DigestMismatch")
    # The file's real digest in the error: the pod read and hashed the file on the volume.
    assert f"expected {wrong}, got {artifact['sha256']}" in report["error"]


def wait_for_verdict(cluster: Cluster, namespace: str, name: str) -> Obj:
    """The ModelVersion once the operator's validation reached Ready or Failed."""
    model_version = cluster.client.wait_for(
        KILN,
        "ModelVersion",
        name,
        namespace,
        lambda mv: ((mv or {}).get("status") or {}).get("phase") in ("Ready", "Failed"),
        timeout=VALIDATION_TIMEOUT,
        description="a validation verdict",
    )
    assert model_version is not None
    return model_version


def test_the_operator_validates_the_registered_version_in_a_real_pod(
    cluster: Cluster, e2e_namespace: str, images: Images, quickstart: QuickstartRun
) -> None:
    name = quickstart.model_version["metadata"]["name"]
    status = wait_for_verdict(cluster, e2e_namespace, name)["status"]
    assert status["phase"] == "Ready", status
    assert status["signature"]["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
    ]
    assert sorted(o["name"] for o in status["signature"]["outputs"]) == ["label", "probabilities"]
    assert status["sizeBytes"] > 0
    job = cluster.client.get("batch/v1", "Job", status["validationJob"], e2e_namespace)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == images.server
    (pod,) = cluster.client.list(
        "v1",
        "Pod",
        e2e_namespace,
        label_selector=f"batch.kubernetes.io/job-name={status['validationJob']}",
    )["items"]
    assert pod["spec"].get("nodeName"), "a node ran the validation pod"
    report = json.loads(terminated_state(pod)["message"])
    assert report["sha256"] == quickstart.artifact["sha256"]


def test_the_operator_fails_a_version_whose_digest_is_not_the_file_s(
    cluster: Cluster, e2e_namespace: str, quickstart: QuickstartRun
) -> None:
    artifact = quickstart.artifact
    wrong = another_digest(artifact["sha256"])
    spec = {**quickstart.model_version["spec"], "artifact": {**artifact, "sha256": wrong}}
    spec["version"] = 1000
    body = {
        "apiVersion": KILN,
        "kind": "ModelVersion",
        "metadata": {"name": "tampered"},
        "spec": spec,
    }
    cluster.client.create(body, e2e_namespace)
    status = wait_for_verdict(cluster, e2e_namespace, "tampered")["status"]
    assert status["phase"] == "Failed"
    (validated,) = (c for c in status["conditions"] if c["type"] == "Validated")
    assert validated["reason"] == "DigestMismatch"
    assert f"expected {wrong}, got {artifact['sha256']}" in validated["message"]
    # The verdict's exit code matches the Job's podFailurePolicy: it fails, with no retry.
    job = cluster.client.wait_for(
        "batch/v1",
        "Job",
        status["validationJob"],
        e2e_namespace,
        lambda j: any(
            c["type"] == "Failed" and c["status"] == "True"
            for c in ((j or {}).get("status") or {}).get("conditions") or []
        ),
        timeout=VALIDATION_TIMEOUT,
        description="the validation Job Failed",
    )
    assert job is not None
    (failed,) = (c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy", job["status"]
    assert job["status"].get("failed") == 1

"""Fixtures of the conformance suite: the reference Widget CRD and object builders.

The suite holds every backend to what a real kube-apiserver does, so it uses the same small
CRD (``reference/widget-crd.yaml``) the recorded answers in ``reference/`` were taken with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import Cluster, install_crds
from tests.support.kube import ApiError, Obj, load_manifests
from tests.support.kubelet import Workloads

REFERENCE = Path(__file__).parent / "reference"
WIDGET_API = "ref.example.dev/v1alpha1"
WIDGET = "Widget"
WIDGET_CRD_NAME = "widgets.ref.example.dev"


def widget(name: str, **spec: Any) -> Obj:
    """A Widget manifest; ``model`` defaults to a valid value."""
    spec.setdefault("model", "m")
    return {"apiVersion": WIDGET_API, "kind": WIDGET, "metadata": {"name": name}, "spec": spec}


def config_map(name: str, labels: dict[str, str] | None = None, **data: str) -> Obj:
    metadata: Obj = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def reference_answers() -> dict[str, Any]:
    answers: dict[str, Any] = json.loads((REFERENCE / "apiserver-answers.json").read_text())
    return answers


@pytest.fixture(scope="session")
def widget_crd(cluster: Cluster) -> Iterator[Obj]:
    """The reference Widget CRD, installed and Established for the whole session."""
    (document,) = load_manifests(REFERENCE / "widget-crd.yaml")
    install_crds(cluster.client, [document])
    yield document
    try:
        cluster.client.delete(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", WIDGET_CRD_NAME
        )
    except ApiError as error:
        if error.status != 404:
            raise


# -- Kiln's own kinds ----------------------------------------------------------------------

KILN_API = "kiln.dev/v1alpha1"


def training_job(name: str, model: str = "iris") -> Obj:
    """The smallest valid TrainingJob."""
    return {
        "apiVersion": KILN_API,
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "image": "python:3.11-slim",
            "output": {"uri": f"pvc://models/{model}"},
        },
    }


def model_version(name: str, model: str = "iris", version: int = 1) -> Obj:
    """The smallest valid ModelVersion."""
    return {
        "apiVersion": KILN_API,
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {"uri": f"pvc://models/{model}/v{version}/model.onnx", "sha256": "0" * 64},
        },
    }


def inference_service(name: str, model: str = "iris", version: int = 1) -> Obj:
    """The smallest valid InferenceService, pinned to one version."""
    return {
        "apiVersion": KILN_API,
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"model": {"name": model, "version": version}},
    }


@pytest.fixture
def kiln_crds(cluster: Cluster) -> list[str]:
    """Kiln's CRDs from ``crds/``; tests of Kiln's kinds need them generated first."""
    kiln = [name for name in cluster.crds if name.endswith(".kiln.dev")]
    if not kiln:
        pytest.fail("crds/ holds no kiln.dev CRDs: run `make crds`")
    return kiln


def unscheduled_pod(name: str) -> Obj:
    """A Pod that no scheduler places and so no kubelet runs, on any backend.

    The scheduling gate keeps a real cluster's kubelet from overwriting the status a test
    writes; the emulator and envtest run no kubelet anyway.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulingGates": [{"name": "kiln.dev/test-holds-this-pod"}],
            "containers": [{"name": "c", "image": "busybox:1"}],
        },
    }


@pytest.fixture
def stand_in_controllers(cluster: Cluster) -> None:
    """Tests of the stand-ins themselves: where the test plays the Job/Deployment controllers."""
    if cluster.runs_workload_controllers:
        pytest.skip(
            "the real Job and Deployment controllers run here, so their stand-ins (which this "
            "test checks) are not used; tests play only the kubelet on this backend"
        )


@pytest.fixture
def workloads(cluster: Cluster) -> Workloads:
    """The kubelet (always played by the test) and the Job controller (only where none runs)."""
    if not cluster.tests_play_kubelet:
        pytest.skip(
            "this cluster's nodes run real kubelets, which would race a test writing pod "
            "status; use envtest, a full control plane or KILN_TEST_FAKE_NODES=1 for these"
        )
    return Workloads(cluster.client, plays_job_controller=not cluster.runs_workload_controllers)

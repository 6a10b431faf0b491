"""Fixtures of the end-to-end tier: Kiln's quick start on a cluster whose nodes run pods.

The tier is opt-in (``make test-e2e``; ``make test`` never collects it). The cluster comes
from ``KILN_TEST_KUBECONFIG`` through the session's ``cluster`` fixture (``tests/conftest.py``,
which also installs ``crds/``); the tests know nothing else about it but the names of the
project's two images, which must be runnable there:

- ``KILN_E2E_TRAINING_IMAGE`` (default ``kiln-iris-train:dev``, ``examples/training``);
- ``KILN_E2E_SERVER_IMAGE`` (default ``kiln-server:dev``, ``model-server/Dockerfile``).

Module-scoped fixtures, so one quick start serves every check of a module:

- ``e2e_namespace``: a fresh namespace (its ``default`` service account exists), deleted
  with everything in it when the module ends;
- ``run_pod``: create a pod in it and wait until it has run to completion;
- ``models_claim``: the quick start's claim, bound to a hostPath volume pinned to one node
  with a live kubelet and writable by the training user;
- ``e2e_operator``: ``kiln-operator`` as a local process watching the namespace.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest

from kiln_operator.decisions.runs import BLOCKING_WAIT_REASONS
from tests.conftest import namespace_name_for
from tests.support.backends import REPO_ROOT, Cluster
from tests.support.kube import ApiError, KubeClient, Obj, load_manifests
from tests.support.operator import OperatorProcess

#: The environment variable that opts in to the tier (shared with the cluster tier).
KUBECONFIG_VARIABLE = "KILN_TEST_KUBECONFIG"
SKIP_REASON = (
    f"the e2e tier needs a cluster whose nodes run pods: set {KUBECONFIG_VARIABLE} "
    "(see tests/e2e/README.md)"
)

QUICKSTART_MANIFESTS = REPO_ROOT / "examples" / "quickstart" / "manifests.yaml"
TRAINING_JOB_MANIFEST = REPO_ROOT / "examples" / "training" / "trainingjob.yaml"
INFERENCE_SERVICE_MANIFEST = REPO_ROOT / "examples" / "training" / "inferenceservice.yaml"

#: Long enough for an image pull on kind; a pod that cannot start fails the wait with its state.
POD_TIMEOUT = 120.0
#: A kubelet renews its node Lease every 10 s; one silent for longer than this is not running.
LEASE_SILENCE = dt.timedelta(seconds=60)
#: Where validation pods mount claims: ``pvc://<claim>/<path>`` is ``<root>/<claim>/<path>``.
PVC_ROOT = "/mnt/pvc"
#: The user of the model-server image (``model-server/Dockerfile``).
SERVER_USER = 65532


@dataclass(frozen=True)
class Images:
    """The project's images as the cluster knows them."""

    training: str
    server: str


def images_from(environ: Mapping[str, str]) -> Images:
    """The image names the environment gives, else the names the quick start builds."""
    return Images(
        training=environ.get("KILN_E2E_TRAINING_IMAGE") or "kiln-iris-train:dev",
        server=environ.get("KILN_E2E_SERVER_IMAGE") or "kiln-server:dev",
    )


def has_finished(pod: Obj | None) -> bool:
    """The pod ran to its end (Succeeded or Failed); one that cannot start ends the wait.

    A container waiting for a reason no retry cures (an image the node cannot pull, a
    command it cannot run) fails the test at once, with the node's message.
    """
    if pod is None:
        return False
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in BLOCKING_WAIT_REASONS:
            raise AssertionError(
                f"pod {pod['metadata']['name']}: container {container['name']} cannot "
                f"start: {waiting['reason']}: {waiting.get('message', '')}"
            )
    return status.get("phase") in ("Succeeded", "Failed")


def quickstart_claim() -> Obj:
    """The PersistentVolumeClaim of ``examples/quickstart/manifests.yaml``."""
    (claim,) = (
        doc
        for doc in load_manifests(QUICKSTART_MANIFESTS)
        if doc["kind"] == "PersistentVolumeClaim"
    )
    return claim


def node_with_live_kubelet(kube: KubeClient, now: dt.datetime) -> str:
    """The first (by name) Ready, untainted, schedulable node whose kubelet renews its Lease.

    A node object alone proves nothing: one registered by hand is Ready but runs no pods.
    """
    nodes = kube.list("v1", "Node")["items"]
    leases = {
        lease["metadata"]["name"]: lease
        for lease in kube.list("coordination.k8s.io/v1", "Lease", "kube-node-lease")["items"]
    }
    candidates: list[str] = []
    for node in nodes:
        name = node["metadata"]["name"]
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        spec = node.get("spec") or {}
        tainted = any(
            t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []
        )
        renewed = ((leases.get(name) or {}).get("spec") or {}).get("renewTime")
        live = renewed is not None and now - dt.datetime.fromisoformat(renewed) < LEASE_SILENCE
        if ready and live and not tainted and not spec.get("unschedulable"):
            candidates.append(name)
    if not candidates:
        seen = ", ".join(n["metadata"]["name"] for n in nodes) or "none"
        pytest.fail(
            "no schedulable node with a live kubelet (a node Lease renewed in the last "
            f"{LEASE_SILENCE.seconds}s); nodes: {seen}"
        )
    return sorted(candidates)[0]


def host_path_volume(name: str, node: str, claim: Obj, namespace: str) -> Obj:
    """A hostPath PersistentVolume on ``node``, reserved (claimRef) for ``claim``."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": f"/tmp/kiln-e2e/{name}", "type": "DirectoryOrCreate"},
            # A hostPath volume is one node's folder: every pod of the claim must run there.
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": claim["metadata"]["name"],
            },
        },
    }


def training_job_manifest(image: str) -> Obj:
    """``examples/training/trainingjob.yaml`` with its image replaced by ``image``."""
    (training_job,) = load_manifests(TRAINING_JOB_MANIFEST)
    training_job["spec"]["image"] = image
    return training_job


def validate_pod(name: str, image: str, claim: str, uri: str, sha256: str) -> Obj:
    """A pod running ``kiln-server validate`` on ``uri`` with the claim mounted read-only."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": SERVER_USER,
                "runAsGroup": SERVER_USER,
            },
            "containers": [
                {
                    "name": "validate",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    # The image's entrypoint is kiln-server.
                    "args": [
                        "validate",
                        "--uri",
                        uri,
                        "--sha256",
                        sha256,
                        "--pvc-root",
                        PVC_ROOT,
                        "--termination-message-path",
                        "/dev/termination-log",
                    ],
                    "terminationMessagePath": "/dev/termination-log",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "models", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "models",
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
                }
            ],
        },
    }


def open_volume_pod(image: str, claim: str) -> Obj:
    """A pod that makes the root of ``claim`` writable by every user (as ``/tmp`` is)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "open-models-volume"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 0},
            "containers": [
                {
                    "name": "chmod",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["chmod", "0777", "/volume"],
                    "volumeMounts": [{"name": "models", "mountPath": "/volume"}],
                }
            ],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


@pytest.fixture(scope="session")
def images() -> Images:
    return images_from(os.environ)


@pytest.fixture(scope="module")
def e2e_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for the module, deleted afterwards (the cluster empties it)."""
    kube = cluster.client
    name = namespace_name_for(f"e2e-{request.module.__name__.rsplit('.', 1)[-1]}")
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        # Pods are refused until the service account controller has made this account.
        kube.wait_for(
            "v1",
            "ServiceAccount",
            "default",
            name,
            lambda account: account is not None,
            timeout=30.0,
            description="the namespace's default service account",
        )
        yield name
    finally:
        try:
            kube.delete("v1", "Namespace", name)
        except ApiError as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="module")
def run_pod(cluster: Cluster, e2e_namespace: str) -> Callable[[Obj], Obj]:
    """Create a pod (restartPolicy Never) in the module's namespace; return it once finished."""

    def run(pod: Obj) -> Obj:
        created = cluster.client.create(pod, e2e_namespace)
        finished = cluster.client.wait_for(
            "v1",
            "Pod",
            created["metadata"]["name"],
            e2e_namespace,
            has_finished,
            timeout=POD_TIMEOUT,
            description="phase Succeeded or Failed",
        )
        assert finished is not None
        return finished

    return run


@pytest.fixture(scope="module")
def models_claim(
    cluster: Cluster, e2e_namespace: str, images: Images, run_pod: Callable[[Obj], Obj]
) -> Iterator[str]:
    """The quick start's PersistentVolumeClaim, Bound, on a volume the training can write.

    Pre-bound both ways (claimRef and volumeName, no storage class) so that a cluster's
    default StorageClass (kind has one) does not provision another volume instead.
    """
    kube = cluster.client
    claim = quickstart_claim()
    node = node_with_live_kubelet(kube, dt.datetime.now(dt.UTC))
    volume = host_path_volume(e2e_namespace, node, claim, e2e_namespace)
    kube.create(volume)
    try:
        claim["spec"]["storageClassName"] = ""
        claim["spec"]["volumeName"] = volume["metadata"]["name"]
        name = kube.create(claim, e2e_namespace)["metadata"]["name"]
        kube.wait_for(
            "v1",
            "PersistentVolumeClaim",
            name,
            e2e_namespace,
            lambda pvc: pvc is not None and pvc.get("status", {}).get("phase") == "Bound",
            timeout=60.0,
            description="phase Bound",
        )
        # The kubelet makes a hostPath folder root's 0755; training runs as a non-root user.
        opened = run_pod(open_volume_pod(images.server, name))
        assert opened["status"]["phase"] == "Succeeded", opened["status"]
        yield name
    finally:
        # Held by its pv-protection finalizer until the namespace's deletion frees it.
        kube.delete("v1", "PersistentVolume", volume["metadata"]["name"])


@pytest.fixture(scope="module")
def e2e_operator(
    cluster: Cluster,
    e2e_namespace: str,
    images: Images,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """``kiln-operator --namespace <e2e_namespace>`` validating with the server image; the
    module fails if it logs an unhandled exception."""
    log_path = tmp_path_factory.mktemp("e2e-operator") / "kiln-operator.log"
    # The last --metrics-port wins: the tier opens no port of its own on the machine.
    process = OperatorProcess(
        cluster.kubeconfig,
        e2e_namespace,
        log_path,
        extra_args=["--metrics-port", "0", "--model-server-image", images.server],
    )
    with process.running():
        yield process

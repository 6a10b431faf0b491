"""The four Kubernetes API backends of the cluster tier, chosen by environment.

- ``KILN_TEST_KUBECONFIG=<path>``: an existing cluster (kind, a dev cluster), used as is;
  with ``KILN_TEST_FAKE_NODES=1`` its nodes have no kubelet (``../shared/realk8s`` without
  podlet), so tests play the kubelet there;
- ``KUBEBUILDER_ASSETS=<folder>``: a real etcd + kube-apiserver started on loopback;
  with ``KILN_TEST_CONTROL_PLANE=full`` also the real kube-controller-manager and
  kube-scheduler from the same folder, with kubelet-less fake nodes;
- neither: the in-process API emulator (what CI runs).

An explicit kubeconfig wins over envtest assets, so a developer with both set still reaches
the cluster they named. Every backend yields the same :class:`Cluster`: a kubeconfig file
for subprocesses and a :class:`KubeClient` for the test itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.envtest import EnvtestAssets, EnvtestControlPlane
from tests.support.kube import KubeClient, load_manifests
from tests.support.kubeconfig import write_kubeconfig

if TYPE_CHECKING:
    from tests.kubeemu import Emulator

EMULATOR = "emulator"
ENVTEST = "envtest"
FULL = "full"
KUBECONFIG = "kubeconfig"

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FOLDER = REPO_ROOT / "crds"


def select_backend(environ: Mapping[str, str]) -> str:
    """Which backend the environment asks for (empty values count as unset)."""
    if environ.get("KILN_TEST_KUBECONFIG"):
        return KUBECONFIG
    if environ.get("KUBEBUILDER_ASSETS"):
        return FULL if environ.get("KILN_TEST_CONTROL_PLANE") == "full" else ENVTEST
    return EMULATOR


def describe_backend(environ: Mapping[str, str]) -> str:
    """The backend as pytest's header shows it, e.g. ``envtest (kube-apiserver v1.30.0)``."""
    backend = select_backend(environ)
    if backend in (ENVTEST, FULL):
        label = "envtest" if backend == ENVTEST else "full control plane"
        try:
            assets = EnvtestAssets.from_folder(
                Path(environ["KUBEBUILDER_ASSETS"]), full=backend == FULL
            )
            return f"{label} (kube-apiserver {assets.apiserver_version()})"
        except Exception as error:  # the header must not crash collection
            return f"{label} (unusable: {error})"
    if backend == KUBECONFIG:
        nodes = ", kubelet-less nodes" if environ.get("KILN_TEST_FAKE_NODES") == "1" else ""
        return f"kubeconfig ({environ['KILN_TEST_KUBECONFIG']}{nodes})"
    return EMULATOR


@dataclass
class Cluster:
    """One running API server, as every cluster test sees it."""

    backend: str
    description: str
    kubeconfig: Path
    client: KubeClient
    #: The in-process emulator when ``backend == "emulator"`` (its request log), else None.
    emulator: Emulator | None = None
    #: Names of the CRDs installed from ``crds/`` for the session.
    crds: list[str] = field(default_factory=list)
    #: Whether a kubelet-less cluster leaves the kubelet's part to the tests (False only on
    #: an existing cluster whose nodes run real kubelets).
    tests_play_kubelet: bool = True

    @property
    def runs_workload_controllers(self) -> bool:
        """Whether the real Job and Deployment controllers run (tests must not play them)."""
        return self.backend in (FULL, KUBECONFIG)

    @property
    def runs_controllers(self) -> bool:
        """Whether something garbage-collects owned objects and finishes namespace deletion.

        envtest has no kube-controller-manager, so dependents survive their owner there;
        the emulator collects garbage itself and a real cluster runs the controllers.
        """
        return self.backend != ENVTEST


@contextlib.contextmanager
def open_cluster(environ: Mapping[str, str], workdir: Path) -> Iterator[Cluster]:
    """Start (or attach to) the selected backend; stop what was started on exit."""
    backend = select_backend(environ)
    description = describe_backend(environ)
    if backend == KUBECONFIG:
        kubeconfig = Path(environ["KILN_TEST_KUBECONFIG"]).expanduser().resolve()
        client = KubeClient(kubeconfig)
        fake_nodes = environ.get("KILN_TEST_FAKE_NODES") == "1"
        try:
            yield Cluster(backend, description, kubeconfig, client, tests_play_kubelet=fake_nodes)
        finally:
            client.close()
        return
    if backend in (ENVTEST, FULL):
        assets = EnvtestAssets.from_folder(
            Path(environ["KUBEBUILDER_ASSETS"]), full=backend == FULL
        )
        plane = EnvtestControlPlane(assets, workdir / "envtest")
        kubeconfig = plane.start()
        client = KubeClient(kubeconfig)
        try:
            yield Cluster(backend, description, kubeconfig, client)
        finally:
            client.close()
            plane.stop()
        return
    from tests.kubeemu import Emulator

    emulator = Emulator(host="127.0.0.1", port=0)
    url = emulator.start()
    try:
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", url)
        client = KubeClient(kubeconfig)
        try:
            yield Cluster(backend, description, kubeconfig, client, emulator)
        finally:
            client.close()
    finally:
        emulator.stop()


def crd_manifests(folder: Path = CRD_FOLDER) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document under ``folder`` (none if it is absent)."""
    if not folder.is_dir():
        return []
    documents: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.y*ml")):
        documents.extend(
            doc for doc in load_manifests(path) if doc.get("kind") == "CustomResourceDefinition"
        )
    return documents


def is_established(crd: dict[str, Any] | None) -> bool:
    """A CRD whose ``Established`` condition is True: its resources are being served."""
    if crd is None:
        return False
    # A new CRD's status.conditions is null on a real server until its controllers run.
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def open_schema_crd(
    group: str, kind: str, plural: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A namespaced CRD of ``group``/v1 whose schema accepts any object: a stand-in for a
    third-party kind (Gateway API, prometheus-operator) whose real CRD is not vendored; the
    server still checks the objects' metadata and kind."""
    metadata: dict[str, Any] = {"name": f"{plural}.{group}"}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def install_crds(
    client: KubeClient, documents: list[dict[str, Any]], timeout: float = 60.0
) -> list[str]:
    """Create or update each CRD and wait until it is Established; return their names."""
    names = []
    for document in documents:
        name = document["metadata"]["name"]
        existing = client.get_or_none("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        if existing is not None and existing["metadata"].get("deletionTimestamp"):
            # A CRD still being deleted (its objects are being removed) cannot be revived;
            # a real server finishes the deletion first.
            client.wait_for(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                name,
                None,
                lambda crd: crd is None,
                timeout=timeout,
                description="the previous CRD of that name to be deleted",
            )
        client.apply_manifest([document], namespace="default")
        client.wait_for(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            name,
            None,
            is_established,
            timeout=timeout,
            description="condition Established=True",
        )
        names.append(name)
    client.forget_discovery()
    return names


def environment() -> dict[str, str]:
    """The process environment as a plain dict (one place to read it)."""
    return dict(os.environ)

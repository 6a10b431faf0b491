"""The Kiln chart on a real kube-apiserver: rendered, installed, upgraded, uninstalled, and
the operator run with nothing but the chart's ServiceAccount.

These tests start a kube-apiserver of their own from ``KUBEBUILDER_ASSETS`` (the session's
cluster keeps its CRDs from crds/, which a Helm release must own), with the
ValidatingAdmissionPolicy API on as Kubernetes 1.28 offers it (v1beta1 behind a feature
gate) and an audit log of every request the operator's ServiceAccount makes. They skip on
the emulator and on a kubeconfig cluster: they install cluster-scoped objects and judge
RBAC and admission, which only a real API server of their own can.

Covers: ``helm template`` with a matrix of values (defaults, namespaced, cluster-wide with
two replicas, GPU, CRDs off, the approval policy, RBAC off) renders manifests the server
accepts (``kubectl apply --dry-run=server``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.backends import ENVTEST, FULL, Cluster, environment, select_backend
from tests.support.envtest import EnvtestAssets, EnvtestControlPlane
from tests.support.helm import NAMESPACE, render, run_helm
from tests.support.kube import KubeClient

OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:kiln-operator"
APPROVERS = "kiln:approvers"
POLICY_API = ("--api-versions", "admissionregistration.k8s.io/v1beta1/ValidatingAdmissionPolicy")
KILN = "kiln.dev/v1alpha1"
CRD_NAMES = ("trainingjobs.kiln.dev", "modelversions.kiln.dev", "inferenceservices.kiln.dev")

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


@dataclass
class ChartPlane:
    """A kube-apiserver of this module's own: its admin kubeconfig, client and audit log."""

    kubeconfig: Path
    client: KubeClient
    audit_log: Path
    workdir: Path

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.skip("kubectl is not installed: run `make helm`, which also installs it")
        result = subprocess.run(
            [binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_helm(*args, kubeconfig=self.kubeconfig, check=check)

    def namespace(self, name: str) -> str:
        if self.client.get_or_none("v1", "Namespace", name) is None:
            self.client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        return name

    def as_cluster(self) -> Cluster:
        """The plane as the cluster fixtures' :class:`Cluster` (for the serving helpers)."""
        return Cluster(ENVTEST, "chart envtest", self.kubeconfig, self.client)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartPlane]:
    env = environment()
    if select_backend(env) not in (ENVTEST, FULL):
        pytest.skip(
            "the chart's install tests start a kube-apiserver of their own: set "
            "KUBEBUILDER_ASSETS (CI does, with the real binaries in /tmp/k8s/bin)"
        )
    workdir = tmp_path_factory.mktemp("chart-plane")
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    audit_log = workdir / "audit.log"
    control_plane = EnvtestControlPlane(
        EnvtestAssets.from_folder(Path(env["KUBEBUILDER_ASSETS"])),
        workdir / "envtest",
        extra_apiserver_args=(
            "--feature-gates=ValidatingAdmissionPolicy=true",
            "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
        ),
    )
    kubeconfig = control_plane.start()
    client = KubeClient(kubeconfig)
    try:
        yield ChartPlane(kubeconfig, client, audit_log, workdir)
    finally:
        client.close()
        control_plane.stop()


# -- helm template | kubectl apply --dry-run=server ---------------------------------------

MATRIX: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "namespaced": ({"watchNamespaces": ["team-a", "team-b"]}, ()),
    "cluster-wide-two-replicas": ({"watchNamespaces": [], "replicas": 2}, ()),
    "gpu": (
        {
            "accelerators": {
                "nvidia-h100": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                "nvidia-l4": {"nvidia.com/gpu.product": "NVIDIA-L4"},
            },
            "modelServer": {"gpuImage": "ghcr.io/kiln-dev/kiln-server:0.1.0-cuda12"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        },
        (),
    ),
    "crds-off": ({"crds": {"install": False}}, ()),
    "approval-policy": ({"approval": {"groups": ["ml-leads"], "users": ["ci-bot"]}}, POLICY_API),
    "everything-off": (
        {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "default"}},
        (),
    ),
}


@pytest.mark.parametrize("case", list(MATRIX), ids=list(MATRIX))
def test_rendered_chart_is_accepted_by_the_real_api_server(plane: ChartPlane, case: str) -> None:
    values, extra = MATRIX[case]
    for namespace in (NAMESPACE, "team-a", "team-b"):
        plane.namespace(namespace)
    docs = render(values, *extra)
    out = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs))
    applied = [line for line in out.splitlines() if line.strip()]
    assert len(applied) == len(docs), out
    assert all("(server dry run)" in line for line in applied), out
    if extra == POLICY_API:
        policy = "validatingadmissionpolicy.admissionregistration.k8s.io/kiln-modelversion-approval"
        assert f"{policy} created (server dry run)" in out

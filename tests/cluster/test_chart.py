"""The Kiln chart on a real kube-apiserver: rendered, installed, upgraded, uninstalled, and
the operator run with nothing but the chart's ServiceAccount.

These tests start a kube-apiserver of their own from ``KUBEBUILDER_ASSETS`` (the session's
cluster keeps its CRDs from crds/, which a Helm release must own), with the
ValidatingAdmissionPolicy API on as Kubernetes 1.28 offers it (v1beta1 behind a feature
gate) and an audit log of every request the operator's ServiceAccount makes. They skip on
the emulator and on a kubeconfig cluster: they install cluster-scoped objects and judge
RBAC and admission, which only a real API server of their own can.

Covers: ``helm template`` with a matrix of values (defaults, namespaced, cluster-wide with
two replicas, GPU, CRDs off, the approval policy, monitoring on, RBAC off) renders
manifests the server accepts (``kubectl apply --dry-run=server``; prometheus-operator's
kinds as stand-in CRDs with open schemas, their fields being checked against its published
schemas in ``tests/unit/chart/test_monitoring.py``); ``helm install`` renders the approval policy
in the version the cluster serves. The operator, authenticated as the chart's
ServiceAccount by a bound token from the TokenRequest API (as in a pod), trains and
registers a version, validates it, serves it with an HPA, a PDB and an HTTPRoute, replaces
it with a second version (deleting the first's Deployment and HPA) and answers a run
request, in cluster-wide and in namespaced mode, with not one request refused (audit log);
``kubectl auth can-i --list`` shows the account no wildcard and no right beyond the
chart's rules. The approval policy refuses ``approved: true`` from a kiln-edit user
outside the approvers' group, on create and on patch, and accepts it from a member.
``helm upgrade`` with changed values changes the operator's flags and RBAC; ``helm
uninstall`` keeps the CRDs and Kiln objects with ``crds.keep``, a reinstall adopts them,
and without it the CRDs go.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.test_inferenceservice import HTTP_ROUTE_CRD, Rig, inference_service
from tests.cluster.test_loop import train, training_job
from tests.cluster.test_modelversion import CLAIM
from tests.cluster.test_trainingjob import wait_for_jobs, wait_until
from tests.support.backends import (
    ENVTEST,
    FULL,
    Cluster,
    environment,
    install_crds,
    is_established,
    open_schema_crd,
    select_backend,
)
from tests.support.envtest import EnvtestAssets, EnvtestControlPlane
from tests.support.helm import CHART, NAMESPACE, RELEASE, render, run_helm, value_args
from tests.support.kube import KubeClient
from tests.support.kubeconfig import write_kubeconfig
from tests.support.kubelet import Workloads
from tests.support.operator import OperatorProcess, operator_command
from tests.support.serving import ModelServers

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
    backend = select_backend(env)
    if backend == FULL:
        pytest.skip(
            "the chart's tests start an envtest kube-apiserver of their own, so the envtest "
            "pass (KUBEBUILDER_ASSETS without KILN_TEST_CONTROL_PLANE=full) already ran them"
        )
    if backend != ENVTEST:
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
    "monitoring": (
        {
            "monitoring": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                "podMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "grafanaDashboard": {"enabled": True},
                "kubeStateMetrics": {
                    "enabled": True,
                    "serviceAccount": {"name": "kube-state-metrics", "namespace": "monitoring"},
                },
            }
        },
        (),
    ),
    "everything-off": (
        {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "default"}},
        (),
    ),
}


def _stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    """prometheus-operator's kind with an open schema (the real CRDs are not vendored here)."""
    return open_schema_crd("monitoring.coreos.com", kind, plural)


PROMETHEUS_OPERATOR_CRDS = [
    _stand_in_crd("ServiceMonitor", "servicemonitors"),
    _stand_in_crd("PodMonitor", "podmonitors"),
    _stand_in_crd("PrometheusRule", "prometheusrules"),
]


@pytest.mark.parametrize("case", list(MATRIX), ids=list(MATRIX))
def test_rendered_chart_is_accepted_by_the_real_api_server(plane: ChartPlane, case: str) -> None:
    values, extra = MATRIX[case]
    for namespace in (NAMESPACE, "team-a", "team-b"):
        plane.namespace(namespace)
    if "monitoring" in values:
        install_crds(plane.client, PROMETHEUS_OPERATOR_CRDS)
    docs = render(values, *extra)
    out = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs))
    applied = [line for line in out.splitlines() if line.strip()]
    assert len(applied) == len(docs), out
    assert all("(server dry run)" in line for line in applied), out
    if extra == POLICY_API:
        policy = "validatingadmissionpolicy.admissionregistration.k8s.io/kiln-modelversion-approval"
        assert f"{policy} created (server dry run)" in out


# -- helm install, and the operator as the chart's ServiceAccount ---------------------------


def _release_values(plane: ChartPlane) -> dict[str, Any]:
    out = plane.helm("get", "values", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    values: dict[str, Any] = json.loads(out) or {}
    return values


@pytest.fixture(scope="module")
def release(plane: ChartPlane) -> str:
    """The chart installed with its defaults as release ``kiln`` in kiln-system."""
    plane.helm("upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace")
    for name in CRD_NAMES:
        plane.client.wait_for(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            name,
            None,
            is_established,
            timeout=60,
            description="Established",
        )
    plane.client.forget_discovery()
    return RELEASE


def test_install_renders_the_approval_policy_the_cluster_serves(
    plane: ChartPlane, release: str
) -> None:
    policy = plane.client.get(
        "admissionregistration.k8s.io/v1beta1",
        "ValidatingAdmissionPolicy",
        "kiln-modelversion-approval",
    )
    assert policy["spec"]["failurePolicy"] == "Fail"
    deployment = plane.client.get("apps/v1", "Deployment", "kiln-operator", NAMESPACE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--all-namespaces" in container["args"]
    notes = plane.helm("get", "notes", release, "-n", NAMESPACE).stdout
    assert "admissionregistration.k8s.io/v1beta1 ValidatingAdmissionPolicy" in notes


def _admin_cluster(plane: ChartPlane, folder: Path) -> tuple[str, Path]:
    admin = yaml.safe_load(plane.kubeconfig.read_text())["clusters"][0]["cluster"]
    ca = folder / "ca.crt"
    ca.write_bytes(base64.b64decode(admin["certificate-authority-data"]))
    return str(admin["server"]), ca


def service_account_token_kubeconfig(plane: ChartPlane, path: Path) -> Path:
    """A kubeconfig with a bound token of the chart's ServiceAccount from the TokenRequest
    API: what a pod's projected token is."""
    answer = plane.client.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/kiln-operator/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    server, ca = _admin_cluster(plane, path.parent)
    return write_kubeconfig(path, server, ca_cert=ca, token=answer["status"]["token"])


def audit_entries(plane: ChartPlane, since: int) -> list[dict[str, Any]]:
    """The operator's requests the API server logged after byte ``since`` of the log."""
    with plane.audit_log.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [
        entry
        for entry in (json.loads(line) for line in lines if line.strip())
        if entry.get("user", {}).get("username") == OPERATOR_USER
    ]


def all_namespaces_command() -> list[str]:
    """``kiln-operator --all-namespaces`` in place of the fixture's ``--namespace NS``."""
    return ["bash", "-c", 'shift 2; exec "$0" --all-namespaces "$@"', *operator_command()]


def refused(entries: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['verb']} {e['requestURI']} -> {e['responseStatus']['code']}"
        for e in entries
        if e.get("responseStatus", {}).get("code") in (401, 403)
    ]


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_operator_as_the_charts_service_account_is_never_refused(
    plane: ChartPlane, release: str, mode: str, tmp_path: Path
) -> None:
    namespace = plane.namespace(f"team-{mode}")
    scope = {"watchNamespaces": [namespace] if mode == "namespaced" else []}
    plane.helm("upgrade", release, str(CHART), "-n", NAMESPACE, *value_args(scope))
    if (
        plane.client.get_or_none(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            HTTP_ROUTE_CRD["metadata"]["name"],
        )
        is None
    ):
        install_crds(plane.client, [HTTP_ROUTE_CRD])
    kubeconfig = service_account_token_kubeconfig(plane, tmp_path / "operator.kubeconfig")
    since = plane.audit_log.stat().st_size if plane.audit_log.exists() else 0

    kube = plane.client
    pvc_root = tmp_path / "pvc"
    (pvc_root / CLAIM).mkdir(parents=True)
    servers = ModelServers(kube, pvc_root, plays_deployment_controller=True, workdir=tmp_path)
    process = OperatorProcess(
        kubeconfig,
        namespace,
        tmp_path / "kiln-operator.log",
        extra_args=["--model-server-image", "kiln-server:test", "--resync-seconds", "30"],
        command=all_namespaces_command() if mode == "cluster-wide" else None,
    )
    workloads = Workloads(kube, plays_job_controller=True)
    try:
        with process.running():
            rig = Rig(kube, namespace, workloads, process, servers, pvc_root, plane.as_cluster())
            # A TrainingJob's run registers version 1, which is validated.
            kube.apply_manifest([training_job()], namespace)
            (job,) = wait_for_jobs(kube, namespace, 1)
            train(rig, job, accuracy=0.95)
            # Served with autoscaling and a Gateway API route.
            service = inference_service(
                model={"name": "iris", "version": 1},
                autoscaling={"minReplicas": 1, "maxReplicas": 3, "metric": "cpu", "target": 70},
                rollout={
                    "strategy": "Immediate",
                    "trafficRouter": "gatewayAPI",
                    "gateway": {"name": "web", "namespace": "infra"},
                },
            )
            kube.apply_manifest([service], namespace)
            rig.serve_version(1)
            rig.wait_status("v1 serving", lambda s: (s.get("serving") or {}).get("version") == 1)
            wait_until(
                "the HTTPRoute",
                lambda: kube.get_or_none(
                    "gateway.networking.k8s.io/v1", "HTTPRoute", "iris", namespace
                ),
            )
            # Version 2 replaces it: the old Deployment and its HPA are deleted.
            rig.register(2)
            service["spec"]["model"]["version"] = 2
            kube.apply_manifest([service], namespace)
            rig.serve_version(2)
            rig.wait_status("v2 serving", lambda s: (s.get("serving") or {}).get("version") == 2)
            wait_until("v1 removed", lambda: rig.deployment(1) is None, timeout=30)
            # A run requested through the API: the operator runs it and clears the request.
            request = "run-request.kiln.dev/chart-test"
            kube.patch(
                KILN,
                "TrainingJob",
                "iris",
                namespace,
                {"metadata": {"annotations": {request: '{"trigger":"manual"}'}}},
            )
            wait_for_jobs(kube, namespace, 2)
            wait_until(
                "the run request cleared",
                lambda: (
                    request
                    not in (
                        kube.get(KILN, "TrainingJob", "iris", namespace)["metadata"].get(
                            "annotations"
                        )
                        or {}
                    )
                ),
            )
            log = process.logs()
    finally:
        servers.stop_all()

    entries = audit_entries(plane, since)
    verbs = {(e["verb"], e["objectRef"]["resource"]) for e in entries if e.get("objectRef")}
    for done in [
        ("create", "jobs"),
        ("create", "modelversions"),
        ("patch", "deployments"),
        ("delete", "deployments"),
        ("patch", "horizontalpodautoscalers"),
        ("delete", "horizontalpodautoscalers"),
        ("patch", "httproutes"),
        ("patch", "trainingjobs"),
        ("create", "events"),
    ]:
        assert done in verbs, f"the scenario never made the operator {done}: {sorted(verbs)}"
    assert refused(entries) == []
    assert not re.search(r"\b403\b|Forbidden", log), log[-4000:]


def test_operator_service_account_has_no_wildcard_rights(plane: ChartPlane, release: str) -> None:
    plane.helm("upgrade", release, str(CHART), "-n", NAMESPACE, "--reset-values")
    namespace = plane.namespace("team-rights")
    listing = plane.kubectl("auth", "can-i", "--list", f"--as={OPERATOR_USER}", "-n", namespace)
    # Resources, Non-Resource URLs, Resource Names, Verbs; non-resource rows (from the
    # built-in discovery roles every user has) leave the first column empty.
    row = re.compile(r"^(?P<resource>\S+)\s+\[.*?\]\s+\[.*?\]\s+(?P<verbs>\[.*\])$")
    granted = {
        match["resource"]: match["verbs"]
        for match in map(row.match, listing.splitlines()[1:])
        if match is not None
    }
    assert granted["jobs.batch"] == "[get list watch create patch delete]"
    assert granted["modelversions.kiln.dev"] == "[get list watch create]"
    assert granted["trainingjobs.kiln.dev/status"] == "[patch]"
    for resource, verbs in granted.items():
        assert "*" not in resource, (resource, verbs)
        assert "*" not in verbs, (resource, verbs)
    # Nor any right it has no use for.
    assert "secrets" not in granted
    assert "configmaps" not in granted


# -- the approval policy ------------------------------------------------------------------


def _model_version(name: str, approved: bool) -> str:
    body = {
        "apiVersion": KILN,
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": "iris",
            "version": int(name.rsplit("v", 1)[1]),
            "artifact": {"uri": f"pvc://models/iris/{name}/model.onnx", "sha256": "0" * 64},
            "approved": approved,
        },
    }
    return json.dumps(body)


def test_only_approvers_may_approve_a_model_version(plane: ChartPlane, release: str) -> None:
    namespace = plane.namespace("team-approval")
    for user in ("alice", "bob"):
        plane.client.create(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{user}-kiln-edit", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kiln-edit",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
            namespace,
        )
    as_bob = ("--as=bob", "-n", namespace)
    as_alice = ("--as=alice", f"--as-group={APPROVERS}", "-n", namespace)

    # The policy takes effect a moment after it is created.
    deadline = time.monotonic() + 30
    while "may not approve" not in plane.kubectl(
        "create",
        "--dry-run=server",
        "-f",
        "-",
        *as_bob,
        stdin=_model_version("iris-v9", True),
        check=False,
    ):
        assert time.monotonic() < deadline, "the approval policy never took effect"
        time.sleep(0.5)

    refused = plane.kubectl(
        "create", "-f", "-", *as_bob, stdin=_model_version("iris-v1", True), check=False
    )
    assert "may not approve a ModelVersion" in refused
    assert "bob" in refused
    assert "[kiln:approvers]" in refused
    assert plane.client.get_or_none(KILN, "ModelVersion", "iris-v1", namespace) is None

    # Anything else a kiln-edit user may do; approving stays refused.
    plane.kubectl("create", "-f", "-", *as_bob, stdin=_model_version("iris-v2", False))
    plane.kubectl("label", "mv", "iris-v2", "stage=candidate", *as_bob)
    patch = json.dumps({"spec": {"approved": True}})
    refused = plane.kubectl(
        "patch", "mv", "iris-v2", "--type=merge", "-p", patch, *as_bob, check=False
    )
    assert "may not approve a ModelVersion" in refused
    assert plane.client.get(KILN, "ModelVersion", "iris-v2", namespace)["spec"]["approved"] is False

    # A member of the approvers' group approves; later edits of the approved version pass.
    plane.kubectl("patch", "mv", "iris-v2", "--type=merge", "-p", patch, *as_alice)
    assert plane.client.get(KILN, "ModelVersion", "iris-v2", namespace)["spec"]["approved"] is True
    plane.kubectl("label", "mv", "iris-v2", "stage=approved", "--overwrite", *as_bob)
    plane.kubectl("create", "-f", "-", *as_alice, stdin=_model_version("iris-v3", True))


# -- upgrade and uninstall ----------------------------------------------------------------


def test_upgrade_changes_the_operator_and_uninstall_keeps_crds_and_objects(
    plane: ChartPlane, release: str
) -> None:
    kube = plane.client
    namespace = plane.namespace("team-upgrade")
    values = {
        "operator": {"workers": 8},
        "accelerators": {"nvidia-h100": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "watchNamespaces": [namespace],
    }
    plane.helm(
        "upgrade", release, str(CHART), "-n", NAMESPACE, "--reset-values", *value_args(values)
    )
    assert _release_values(plane) == values
    deployment = kube.get("apps/v1", "Deployment", "kiln-operator", NAMESPACE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--workers=8" in container["args"]
    assert f"--namespace={namespace}" in container["args"]
    assert "--all-namespaces" not in container["args"]
    assert kube.get("v1", "ConfigMap", "kiln-operator-accelerators", NAMESPACE)
    assert kube.get("rbac.authorization.k8s.io/v1", "Role", "kiln-operator", namespace)
    cluster_role = kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", "kiln-operator")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }

    kube.apply_manifest([training_job()], namespace)
    plane.helm("uninstall", release, "-n", NAMESPACE)
    assert kube.get_or_none("apps/v1", "Deployment", "kiln-operator", NAMESPACE) is None
    assert kube.get_or_none("v1", "ServiceAccount", "kiln-operator", NAMESPACE) is None
    assert kube.get_or_none("rbac.authorization.k8s.io/v1", "ClusterRole", "kiln-edit") is None
    for name in CRD_NAMES:
        crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        assert "deletionTimestamp" not in crd["metadata"]
    assert kube.get(KILN, "TrainingJob", "iris", namespace)["spec"]["model"] == "iris"

    # A new install adopts the CRDs it kept; without crds.keep, uninstall removes them.
    plane.helm("install", release, str(CHART), "-n", NAMESPACE, "--set", "crds.keep=false")
    assert kube.get(KILN, "TrainingJob", "iris", namespace)
    plane.helm("uninstall", release, "-n", NAMESPACE)
    for name in CRD_NAMES:
        kube.wait_for(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            name,
            None,
            lambda crd: crd is None,
            timeout=60,
            description="deleted",
        )

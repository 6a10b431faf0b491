"""The cluster tier's own support code behaves as its callers assume.

Pure decisions (which backend, namespace names, log scanning, controller status
documents) and the test PKI, checked for real with a mutual-TLS handshake on loopback.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import namespace_name_for
from tests.support import kubelet
from tests.support.backends import (
    EMULATOR,
    ENVTEST,
    FULL,
    KUBECONFIG,
    crd_manifests,
    describe_backend,
    is_established,
    open_cluster,
    select_backend,
)
from tests.support.envtest import (
    FAKE_NODE_GPU_PRODUCT,
    ControlPlaneError,
    EnvtestAssets,
    apiserver_args,
    controller_manager_args,
    etcd_args,
    fake_node,
    start_etcd,
)
from tests.support.kube import Resource, load_manifests
from tests.support.kubeconfig import write_kubeconfig
from tests.support.operator import unhandled_exceptions
from tests.support.pki import generate_control_plane_pki

# -- backend selection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "backend"),
    [
        ({}, EMULATOR),
        ({"KUBEBUILDER_ASSETS": ""}, EMULATOR),
        ({"KUBEBUILDER_ASSETS": "/opt/assets"}, ENVTEST),
        ({"KUBEBUILDER_ASSETS": "/opt/assets", "KILN_TEST_CONTROL_PLANE": "full"}, FULL),
        ({"KUBEBUILDER_ASSETS": "/opt/assets", "KILN_TEST_CONTROL_PLANE": "no"}, ENVTEST),
        ({"KILN_TEST_CONTROL_PLANE": "full"}, EMULATOR),
        ({"KILN_TEST_KUBECONFIG": "/tmp/kind.yaml"}, KUBECONFIG),
        (
            {"KILN_TEST_KUBECONFIG": "/tmp/kind.yaml", "KUBEBUILDER_ASSETS": "/opt/assets"},
            KUBECONFIG,
        ),
    ],
)
def test_the_environment_selects_the_backend(environ: dict[str, str], backend: str) -> None:
    assert select_backend(environ) == backend


def test_an_unusable_envtest_folder_is_named_in_the_header(tmp_path: Path) -> None:
    description = describe_backend({"KUBEBUILDER_ASSETS": str(tmp_path)})
    assert description.startswith("envtest (unusable:")
    assert "etcd is missing" in description


def test_envtest_reports_the_api_server_version(tmp_path: Path) -> None:
    for name, output in (
        ("etcd", "etcd Version: 3.4.30"),
        ("kube-apiserver", "Kubernetes v1.30.2"),
    ):
        binary = tmp_path / name
        binary.write_text(f"#!/bin/sh\necho '{output}'\n")
        binary.chmod(0o755)
    assert (
        describe_backend({"KUBEBUILDER_ASSETS": str(tmp_path)})
        == "envtest (kube-apiserver v1.30.2)"
    )


def test_envtest_assets_must_be_executable(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("")
    (tmp_path / "kube-apiserver").write_text("")
    with pytest.raises(ControlPlaneError, match="not executable"):
        EnvtestAssets.from_folder(tmp_path)


def test_api_server_flags_wire_etcd_tls_rbac_and_service_accounts(tmp_path: Path) -> None:
    pki = generate_control_plane_pki(tmp_path / "pki")
    flags = dict(
        arg.removeprefix("--").split("=", 1)
        for arg in apiserver_args(pki, tmp_path / "certs", "http://127.0.0.1:2379", 6443)
    )
    assert flags["etcd-servers"] == "http://127.0.0.1:2379"
    assert flags["secure-port"] == "6443"
    assert flags["client-ca-file"] == str(pki.ca.cert)
    assert flags["tls-cert-file"] == str(pki.serving.cert)
    assert flags["authorization-mode"] == "RBAC"
    assert flags["service-account-issuer"] == "https://127.0.0.1:6443/"
    assert flags["service-account-key-file"] == str(pki.service_account_public_key)
    assert flags["service-account-signing-key-file"] == str(pki.service_account_private_key)
    assert flags["service-cluster-ip-range"] == "10.0.0.0/24"


def test_etcd_listens_only_on_loopback(tmp_path: Path) -> None:
    urls = [arg for arg in etcd_args(tmp_path, 2379, 2380) if "urls" in arg]
    assert urls
    assert all("127.0.0.1" in arg for arg in urls)


# -- PKI and kubeconfig ------------------------------------------------------------------


def test_the_admin_certificate_passes_mutual_tls_with_the_serving_certificate(
    tmp_path: Path,
) -> None:
    pki = generate_control_plane_pki(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca.cert))
    server_context.load_cert_chain(str(pki.serving.cert), str(pki.serving.key))
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(cafile=str(pki.ca.cert))
    client_context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer: dict[str, object] = {}

    def serve() -> None:
        connection, _ = listener.accept()
        with server_context.wrap_socket(connection, server_side=True) as tls:
            peer.update(tls.getpeercert() or {})
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    subject = dict(item[0] for item in peer["subject"])  # type: ignore[attr-defined]
    assert subject == {"organizationName": "system:masters", "commonName": "kiln-test-admin"}


def test_kubeconfig_is_usable_by_kubectl_config(tmp_path: Path) -> None:
    pki = generate_control_plane_pki(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "kubeconfig",
        "https://127.0.0.1:6443",
        ca_cert=pki.ca.cert,
        client_cert=pki.admin.cert,
        client_key=pki.admin.key,
    )
    document = yaml.safe_load(path.read_text())
    assert document["current-context"] == "kiln-test"
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert document["users"][0]["user"]["client-certificate-data"]
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.ssl_ca_cert is not None
    assert Path(configuration.ssl_ca_cert).read_bytes() == pki.ca.cert.read_bytes()


# -- small pure pieces -------------------------------------------------------------------


def test_namespace_names_are_unique_valid_and_name_the_test() -> None:
    names = {namespace_name_for("test_Something[case-1 with spaces]" + "x" * 80) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert len(name) <= 63
        assert name.startswith("t-test-something-case-1-with-spaces-")
        assert all(c.isdigit() or c == "-" or "a" <= c <= "z" for c in name)
        assert not name.endswith("-")


def test_resource_paths_follow_the_rest_layout() -> None:
    pods = Resource("v1", "Pod", "pods", namespaced=True)
    assert pods.object_path("p", "ns", "status") == "/api/v1/namespaces/ns/pods/p/status"
    assert pods.collection_path(None) == "/api/v1/pods"
    crds = Resource(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
    )
    assert (
        crds.object_path("a.b", None)
        == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b"
    )
    with pytest.raises(ValueError, match="namespace is required"):
        pods.object_path("p", None)


def test_crd_manifests_reads_every_crd_document(tmp_path: Path) -> None:
    assert crd_manifests(tmp_path / "missing") == []
    (tmp_path / "a.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: a.x}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-a-crd}\n"
    )
    assert [d["metadata"]["name"] for d in crd_manifests(tmp_path)] == ["a.x"]
    assert len(load_manifests(tmp_path / "a.yaml")) == 2


def test_a_full_control_plane_needs_the_controller_manager_and_scheduler(tmp_path: Path) -> None:
    for name in ("etcd", "kube-apiserver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    assert not EnvtestAssets.from_folder(tmp_path).full
    with pytest.raises(ControlPlaneError, match="kube-controller-manager is missing"):
        EnvtestAssets.from_folder(tmp_path, full=True)


def test_controller_manager_flags_run_every_controller_and_keep_fake_nodes_ready(
    tmp_path: Path,
) -> None:
    pki = generate_control_plane_pki(tmp_path / "pki")
    flags = dict(
        arg.removeprefix("--").split("=", 1)
        for arg in controller_manager_args(pki, tmp_path / "kubeconfig", 10257)
    )
    assert flags["controllers"] == "*"
    assert flags["bind-address"] == "127.0.0.1"
    assert flags["service-account-private-key-file"] == str(pki.service_account_private_key)
    assert flags["node-monitor-grace-period"] == "87600h"


def test_fake_nodes_are_ready_with_gpus_and_the_product_label() -> None:
    node = fake_node("n1")
    ready = node["status"]["conditions"][0]
    assert (ready["type"], ready["status"]) == ("Ready", "True")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == FAKE_NODE_GPU_PRODUCT


def test_a_crd_is_established_only_with_the_true_condition() -> None:
    assert not is_established(None)
    assert not is_established({"status": {"conditions": None}})
    assert not is_established(
        {"status": {"conditions": [{"type": "Established", "status": "False"}]}}
    )
    assert is_established({"status": {"conditions": [{"type": "Established", "status": "True"}]}})


def test_unhandled_exceptions_are_found_in_operator_logs() -> None:
    clean = "[INFO] observed ADDED trainingjobs ns/a\n[WARNING] retrying in 1s\n"
    assert unhandled_exceptions(clean) == []
    crashed = (
        "[ERROR] Handler 'reconcile' failed with an exception. Will retry.\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'spec'\n"
    )
    found = unhandled_exceptions(crashed)
    assert len(found) == 2
    assert "KeyError: 'spec'" in found[1]
    assert unhandled_exceptions("[ERROR] Unhandled exception in the event loop") != []


# -- controller status documents ---------------------------------------------------------

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "train", "namespace": "ns", "uid": "u-1"},
    "spec": {
        "completionMode": "Indexed",
        "completions": 2,
        "parallelism": 2,
        "template": {
            "spec": {
                "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}]
            }
        },
    },
}


def test_indexed_job_pods_get_their_index_and_keep_the_template() -> None:
    pod = kubelet.job_pod(JOB, 1)
    assert pod["metadata"]["generateName"] == "train-1-"
    assert pod["spec"]["hostname"] == "train-1"
    env = pod["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "A", "value": "1"}
    assert env[1]["name"] == "JOB_COMPLETION_INDEX"
    assert JOB["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]  # type: ignore[index]


def test_job_status_while_running_has_no_conditions() -> None:
    status = kubelet.job_status(JOB, active=2, now="2026-01-01T00:00:00Z")
    assert status == {
        "startTime": "2026-01-01T00:00:00Z",
        "active": 2,
        "ready": 2,
        "uncountedTerminatedPods": {},
    }


def test_a_failed_job_status_carries_failure_target_then_failed() -> None:
    status = kubelet.job_status(
        JOB, failed=1, outcome="Failed", failure_reason=kubelet.BACKOFF_LIMIT_EXCEEDED, now="t"
    )
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"),
        ("Failed", "BackoffLimitExceeded"),
    ]
    assert "completionTime" not in status
    with pytest.raises(ValueError, match="unknown Job failure reason"):
        kubelet.job_status(JOB, outcome="Failed", failure_reason="Bored")


def test_deployment_status_reports_partial_availability() -> None:
    deployment = {
        "metadata": {"name": "d", "generation": 4},
        "spec": {"replicas": 3, "template": {}},
    }
    status = kubelet.deployment_status(deployment, ready=2)
    assert (
        status["observedGeneration"],
        status["availableReplicas"],
        status["unavailableReplicas"],
    ) == (4, 2, 1)
    available = {c["type"]: c for c in status["conditions"]}["Available"]
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")


def test_the_operator_command_is_runnable() -> None:
    from tests.support.operator import operator_command

    result = subprocess.run(
        [*operator_command(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--namespace" in result.stdout


def test_etcd_starts_with_the_envtest_flags(tmp_path: Path) -> None:
    """Runs where an etcd binary is installed (Debian's etcd-server 3.4 is enough)."""
    binary = shutil.which("etcd")
    if binary is None:
        pytest.skip("no etcd binary on PATH")
    process, url = start_etcd(Path(binary), tmp_path / "data", tmp_path / "etcd.log")
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            assert json.loads(answer.read())["health"] == "true"
    finally:
        process.terminate()
        process.wait(15)
    assert (tmp_path / "data" / "member").is_dir()


def test_the_kubeconfig_backend_uses_the_named_file_as_is(tmp_path: Path) -> None:
    from tests.kubeemu import Emulator

    emulator = Emulator(host="127.0.0.1", port=0)
    url = emulator.start()
    try:
        kubeconfig = write_kubeconfig(tmp_path / "existing", url)
        with open_cluster({"KILN_TEST_KUBECONFIG": str(kubeconfig)}, tmp_path / "run") as cluster:
            assert (cluster.backend, cluster.kubeconfig) == (KUBECONFIG, kubeconfig)
            assert cluster.description == f"kubeconfig ({kubeconfig})"
            assert cluster.emulator is None
            assert cluster.client.get("v1", "Namespace", "default")["metadata"]["name"] == "default"
        assert not (tmp_path / "run").exists()
    finally:
        emulator.stop()

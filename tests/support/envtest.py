"""A real etcd + kube-apiserver on loopback, following controller-runtime's envtest.

``KUBEBUILDER_ASSETS`` names a folder holding the ``etcd`` and ``kube-apiserver`` binaries
(what ``setup-envtest use -p path`` prints). We start etcd on two free ports, then the API
server with the flags a current kube-apiserver (1.24+) requires, secured by the
certificates from :mod:`tests.support.pki`, and wait for ``/readyz``. There is no
kube-controller-manager and no kubelet: nothing garbage-collects, finishes namespace
deletion or runs pods. Tests play those parts where they need them.

With ``full=True`` (the folder must also hold ``kube-controller-manager`` and
``kube-scheduler``, as ``../shared/realk8s/build.sh`` makes them) the real controllers and
scheduler run too, and :data:`FAKE_NODES` are registered Ready: the Job, Deployment,
ReplicaSet, EndpointSlice, HPA, garbage-collector and namespace controllers act for real,
and no kubelet runs, so tests play only the kubelet.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.kube import ApiError, KubeClient
from tests.support.kubeconfig import write_kubeconfig
from tests.support.pki import ControlPlanePki, generate_control_plane_pki
from tests.support.ports import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class ControlPlaneError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message carries its log's tail."""


#: The kubelet-less nodes of a full control plane: Ready, with GPUs, labelled as the
#: accelerator maps of the tests expect (``nvidia.com/gpu.product``).
FAKE_NODES = ("kiln-test-node-1", "kiln-test-node-2")
FAKE_NODE_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"


@dataclass(frozen=True)
class EnvtestAssets:
    """The binaries of a ``KUBEBUILDER_ASSETS`` folder."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None = None
    kube_scheduler: Path | None = None

    @classmethod
    def from_folder(cls, folder: Path, full: bool = False) -> EnvtestAssets:
        assets = cls(
            etcd=folder / "etcd",
            kube_apiserver=folder / "kube-apiserver",
            kube_controller_manager=folder / "kube-controller-manager" if full else None,
            kube_scheduler=folder / "kube-scheduler" if full else None,
        )
        for binary in assets.binaries:
            if not os.access(binary, os.X_OK):
                raise ControlPlaneError(
                    f"KUBEBUILDER_ASSETS={folder}: {binary.name} is missing or not executable"
                )
        return assets

    @property
    def binaries(self) -> list[Path]:
        found = [self.etcd, self.kube_apiserver]
        return found + [b for b in (self.kube_controller_manager, self.kube_scheduler) if b]

    @property
    def full(self) -> bool:
        """Whether the controllers and the scheduler run too."""
        return self.kube_controller_manager is not None and self.kube_scheduler is not None

    def apiserver_version(self) -> str:
        """``v1.x.y`` as ``kube-apiserver --version`` reports it."""
        result = subprocess.run(
            [str(self.kube_apiserver), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        match = re.search(r"v\d+\.\d+\.\d+\S*", result.stdout)
        return match.group(0) if match else result.stdout.strip()


def etcd_args(data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    """Flags for a single-member etcd on loopback (valid on 3.4 and 3.5)."""
    client_url = f"http://127.0.0.1:{client_port}"
    return [
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
        "--name=default",
    ]


def apiserver_args(
    pki: ControlPlanePki, cert_dir: Path, etcd_url: str, secure_port: int
) -> list[str]:
    """envtest's default kube-apiserver flags, with our own PKI and ports."""
    return [
        f"--etcd-servers={etcd_url}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--advertise-address=127.0.0.1",
        "--bind-address=127.0.0.1",
        f"--secure-port={secure_port}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--authorization-mode=RBAC",
        # No controller-manager creates the `default` ServiceAccount, so the admission
        # plugin that requires it would reject every pod (envtest disables it too).
        "--disable-admission-plugins=ServiceAccount",
        f"--service-account-issuer=https://127.0.0.1:{secure_port}/",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_private_key}",
    ]


def controller_manager_args(pki: ControlPlanePki, kubeconfig: Path, secure_port: int) -> list[str]:
    """Every controller, as the admin; nodes never go NotReady (no kubelet heartbeats)."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={secure_port}",
        "--controllers=*",
        "--leader-elect=false",
        f"--service-account-private-key-file={pki.service_account_private_key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--node-monitor-grace-period=87600h",
    ]


def fake_node(name: str) -> dict[str, Any]:
    """A Ready Node with capacity (GPUs included) and no kubelet behind it."""
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": FAKE_NODE_GPU_PRODUCT,
            },
        },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "fake node: tests play its kubelet",
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        },
    }


def register_fake_nodes(kubeconfig: Path, names: tuple[str, ...]) -> None:
    client = KubeClient(kubeconfig)
    try:
        for name in names:
            # A node is created with its status, as a kubelet registers it; the node
            # lifecycle controller may write it right after (taints), so a status write
            # that follows must retry on conflict.
            node = fake_node(name)
            created = client.create(node)
            for attempt in range(10):
                if created.get("status", {}).get("conditions"):
                    break
                try:
                    client.replace({**created, "status": node["status"]}, subresource="status")
                    break
                except ApiError as error:
                    if error.status != 409 or attempt == 9:
                        raise
                    created = client.get("v1", "Node", name)
    finally:
        client.close()


@dataclass
class EnvtestControlPlane:
    """Start/stop an etcd + kube-apiserver pair (and, when the assets are full, the
    controllers and the scheduler) under ``workdir``."""

    assets: EnvtestAssets
    workdir: Path
    #: Flags appended to envtest's kube-apiserver flags (feature gates, an audit log).
    extra_apiserver_args: tuple[str, ...] = ()
    kubeconfig: Path = field(init=False)
    version: str = field(init=False, default="")
    _processes: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)

    def start(self) -> Path:
        """Start both processes; return the admin kubeconfig once ``/readyz`` answers ok."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.version = self.assets.apiserver_version()
        pki = generate_control_plane_pki(self.workdir / "pki")
        try:
            etcd, etcd_url = start_etcd(self.assets.etcd, self.workdir / "etcd", self._log("etcd"))
            self._processes.append(etcd)

            secure_port = free_port()
            cert_dir = self.workdir / "apiserver-certs"
            cert_dir.mkdir(exist_ok=True)
            apiserver = self._spawn(
                "kube-apiserver",
                [
                    str(self.assets.kube_apiserver),
                    *apiserver_args(pki, cert_dir, etcd_url, secure_port),
                    *self.extra_apiserver_args,
                ],
            )
            context = ssl.create_default_context(cafile=str(pki.ca.cert))
            context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
            server = f"https://127.0.0.1:{secure_port}"
            _wait_until_ok(f"{server}/readyz", apiserver, self._log("kube-apiserver"), context)
        except BaseException:
            self.stop()
            raise
        self.kubeconfig = write_kubeconfig(
            self.workdir / "kubeconfig",
            server,
            ca_cert=pki.ca.cert,
            client_cert=pki.admin.cert,
            client_key=pki.admin.key,
        )
        if self.assets.full:
            try:
                self._start_controllers(pki)
            except BaseException:
                self.stop()
                raise
        return self.kubeconfig

    def _start_controllers(self, pki: ControlPlanePki) -> None:
        """kube-controller-manager and kube-scheduler as the admin, and the fake nodes."""
        manager_binary, scheduler_binary = (
            self.assets.kube_controller_manager,
            self.assets.kube_scheduler,
        )
        if manager_binary is None or scheduler_binary is None:
            raise ControlPlaneError(
                "a full control plane needs kube-controller-manager and kube-scheduler"
            )
        manager_port, scheduler_port = free_port(), free_port()
        manager = self._spawn(
            "kube-controller-manager",
            [
                str(manager_binary),
                *controller_manager_args(pki, self.kubeconfig, manager_port),
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(scheduler_binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                "--leader-elect=false",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        _wait_until_ok(
            f"https://127.0.0.1:{manager_port}/healthz",
            manager,
            self._log("kube-controller-manager"),
            insecure,
        )
        _wait_until_ok(
            f"https://127.0.0.1:{scheduler_port}/healthz",
            scheduler,
            self._log("kube-scheduler"),
            insecure,
        )
        register_fake_nodes(self.kubeconfig, FAKE_NODES)

    def stop(self) -> None:
        """SIGTERM the API server, then etcd; SIGKILL whatever outlives the timeout."""
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(STOP_TIMEOUT)
        self._processes.clear()

    @property
    def processes(self) -> tuple[subprocess.Popen[bytes], ...]:
        """etcd and kube-apiserver while they run (empty once stopped)."""
        return tuple(self._processes)

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with self._log(name).open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._processes.append(process)
        return process


def start_etcd(binary: Path, data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a single-member etcd on two free loopback ports; return it and its client URL
    once ``/health`` answers. The caller owns the process."""
    client_port, peer_port = free_port(), free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(binary), *etcd_args(data_dir, client_port, peer_port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{client_port}"
    try:
        _wait_until_ok(f"{url}/health", process, log, None)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, url


def _wait_until_ok(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    context: ssl.SSLContext | None,
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ControlPlaneError(
                f"{log.stem} exited with {process.returncode} before {url} was ready:\n"
                + _tail(log)
            )
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
                last_error = f"HTTP {answer.status}"
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code}: {error.read()[:300]!r}"
        except (OSError, ssl.SSLError) as error:
            last_error = str(error)
        time.sleep(0.25)
    raise ControlPlaneError(
        f"{url} not ready after {START_TIMEOUT:.0f}s ({last_error}):\n" + _tail(log)
    )


def _tail(log: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "<no log>"

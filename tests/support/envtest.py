"""A real etcd + kube-apiserver on loopback, following controller-runtime's envtest.

``KUBEBUILDER_ASSETS`` names a folder holding the ``etcd`` and ``kube-apiserver`` binaries
(what ``setup-envtest use -p path`` prints). We start etcd on two free ports, then the API
server with the flags a current kube-apiserver (1.24+) requires, secured by the
certificates from :mod:`tests.support.pki`, and wait for ``/readyz``. There is no
kube-controller-manager and no kubelet: nothing garbage-collects, finishes namespace
deletion or runs pods. Tests play those parts where they need them.
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

from tests.support.kubeconfig import write_kubeconfig
from tests.support.pki import ControlPlanePki, generate_control_plane_pki
from tests.support.ports import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class ControlPlaneError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message carries its log's tail."""


@dataclass(frozen=True)
class EnvtestAssets:
    """The two binaries of a ``KUBEBUILDER_ASSETS`` folder."""

    etcd: Path
    kube_apiserver: Path

    @classmethod
    def from_folder(cls, folder: Path) -> EnvtestAssets:
        assets = cls(etcd=folder / "etcd", kube_apiserver=folder / "kube-apiserver")
        for binary in (assets.etcd, assets.kube_apiserver):
            if not os.access(binary, os.X_OK):
                raise ControlPlaneError(
                    f"KUBEBUILDER_ASSETS={folder}: {binary.name} is missing or not executable"
                )
        return assets

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


@dataclass
class EnvtestControlPlane:
    """Start/stop an etcd + kube-apiserver pair under ``workdir``."""

    assets: EnvtestAssets
    workdir: Path
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
        return self.kubeconfig

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

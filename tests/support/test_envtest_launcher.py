"""The envtest launcher starts, connects to and stops a control plane.

No real kube-apiserver can be had here, so the binaries are stand-ins
(``tests/support/fakes/control_plane.py``) that check what matters to the launcher: the
flags it passes, mutual TLS with the generated certificates, the admin's group, readiness
only once etcd is up. The client then reaches the "API server" through the kubeconfig the
launcher wrote, exactly as tests and kubectl would on a real one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.backends import ENVTEST, describe_backend, open_cluster
from tests.support.envtest import ControlPlaneError, EnvtestAssets, EnvtestControlPlane
from tests.support.kube import KubeClient

FAKES = Path(__file__).parent / "fakes" / "control_plane.py"


def fake_assets(folder: Path, broken_apiserver: bool = False) -> Path:
    folder.mkdir()
    for role in ("etcd", "kube-apiserver"):
        wrapper = folder / role
        if broken_apiserver and role == "kube-apiserver":
            body = (
                "case \"$1\" in --version) echo 'Kubernetes v1.30.0';; "
                "*) echo 'bad flag' >&2; exit 1;; esac"
            )
        else:
            body = f'exec "{sys.executable}" "{FAKES}" {role} "$@"'
        wrapper.write_text(f"#!/bin/sh\n{body}\n")
        wrapper.chmod(0o755)
    return folder


def test_the_control_plane_starts_serves_the_admin_and_stops(tmp_path: Path) -> None:
    plane = EnvtestControlPlane(
        EnvtestAssets.from_folder(fake_assets(tmp_path / "assets")), tmp_path / "run"
    )
    kubeconfig = plane.start()
    try:
        processes = list(plane.processes)
        assert [p.poll() for p in processes] == [None, None]
        assert plane.version == "v1.30.0-fake"
        client = KubeClient(kubeconfig)
        try:
            assert client.get("v1", "Namespace", "default")["metadata"]["name"] == "default"
        finally:
            client.close()
    finally:
        plane.stop()
    assert all(p.poll() is not None for p in processes)
    assert (tmp_path / "run" / "etcd" / "member").is_dir()


def test_the_envtest_backend_yields_a_cluster_from_the_assets(tmp_path: Path) -> None:
    environ = {"KUBEBUILDER_ASSETS": str(fake_assets(tmp_path / "assets"))}
    assert describe_backend(environ) == "envtest (kube-apiserver v1.30.0-fake)"
    with open_cluster(environ, tmp_path / "run") as cluster:
        assert cluster.backend == ENVTEST
        assert not cluster.runs_controllers
        assert cluster.emulator is None
        assert "certificate-authority-data" in cluster.kubeconfig.read_text()
        assert cluster.client.get("v1", "Namespace", "default")["kind"] == "Namespace"


def test_an_api_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    assets = EnvtestAssets.from_folder(fake_assets(tmp_path / "assets", broken_apiserver=True))
    plane = EnvtestControlPlane(assets, tmp_path / "run")
    with pytest.raises(ControlPlaneError, match=r"kube-apiserver exited with 1[\s\S]*bad flag"):
        plane.start()
    assert plane.processes == ()

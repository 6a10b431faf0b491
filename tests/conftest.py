"""Shared pytest configuration for Kiln's test tiers.

Cluster tier (tests under ``tests/cluster``, marked ``cluster`` automatically):
- ``cluster`` (session): the API backend the environment selects (see
  :mod:`tests.support.backends`), with ``crds/`` installed and Established;
- ``namespace`` (function): a fresh namespace per test, deleted afterwards;
- ``operator`` (function): ``kiln-operator`` running as its own process, watching that
  namespace; the test fails if it logs an unhandled exception.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.backends import (
    Cluster,
    crd_manifests,
    describe_backend,
    environment,
    install_crds,
    open_cluster,
)
from tests.support.kube import ApiError, KubeClient
from tests.support.operator import OperatorProcess

CLUSTER_TESTS = Path(__file__).parent / "cluster"

# -- cluster tier ------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str:
    return f"kiln cluster backend: {describe_backend(environment())}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(CLUSTER_TESTS):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The selected API backend, with every CRD in ``crds/`` installed and Established."""
    with open_cluster(environment(), tmp_path_factory.mktemp("cluster")) as running:
        running.crds = install_crds(running.client, crd_manifests())
        yield running


@pytest.fixture
def kube(cluster: Cluster) -> KubeClient:
    """The test client of the session's cluster."""
    return cluster.client


def namespace_name_for(test_name: str) -> str:
    """A unique, valid namespace name that still says which test made it."""
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].rstrip("-")
    return f"t-{slug}-{secrets.token_hex(3)}"


@pytest.fixture
def make_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Create fresh namespaces on demand; all of them are deleted when the test ends.

    Deletion is not awaited: on envtest no namespace controller ever finishes it, and a
    unique name per test makes waiting unnecessary everywhere.
    """
    created: list[str] = []

    def make() -> str:
        name = namespace_name_for(request.node.name)
        cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        created.append(name)
        return name

    yield make
    for name in created:
        try:
            cluster.client.delete("v1", "Namespace", name)
        except ApiError as error:
            if error.status != 404:
                raise


@pytest.fixture
def namespace(make_namespace: Callable[[], str]) -> str:
    """A fresh namespace for one test, deleted when it ends."""
    return make_namespace()


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """``kiln-operator --namespace <namespace>`` running against the cluster's kubeconfig."""
    process = OperatorProcess(cluster.kubeconfig, namespace, tmp_path / "kiln-operator.log")
    with process.running():
        yield process

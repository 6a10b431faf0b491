"""The real ``kiln-operator`` process runs against the backend and survives restarts.

This proves the wiring every reconciler test builds on: kopf's discovery, CRD and
namespace watches, event posting and patches all work on the selected backend, the
operator sees what a user applies in its namespace, shuts down cleanly on SIGTERM, and
after a SIGKILL a fresh process finds what already exists.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.cluster.conftest import KILN_API, model_version, training_job
from tests.support.kube import KubeClient
from tests.support.operator import OperatorProcess


def test_operator_observes_a_trainingjob_applied_in_its_namespace(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    operator.wait_for_log(rf"observed \S+ trainingjobs {namespace}/train\b", timeout=60)


def test_operator_sees_changes_and_deletions(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([model_version("iris-v1")], namespace)
    operator.wait_for_log(rf"observed \S+ modelversions {namespace}/iris-v1\b", timeout=60)
    mark = operator.log_size()
    kube.patch(KILN_API, "ModelVersion", "iris-v1", namespace, {"spec": {"approved": True}})
    operator.wait_for_log(rf"observed MODIFIED modelversions {namespace}/iris-v1\b", since=mark)
    mark = operator.log_size()
    kube.delete(KILN_API, "ModelVersion", "iris-v1", namespace)
    operator.wait_for_log(rf"observed DELETED modelversions {namespace}/iris-v1\b", since=mark)


def test_operator_ignores_other_namespaces(
    operator: OperatorProcess,
    kube: KubeClient,
    namespace: str,
    make_namespace: Callable[[], str],
    kiln_crds: list[str],
) -> None:
    elsewhere = make_namespace()
    kube.apply_manifest([training_job("other")], elsewhere)
    kube.apply_manifest([training_job("mine")], namespace)
    operator.wait_for_log(rf"observed \S+ trainingjobs {namespace}/mine\b", timeout=60)
    assert f"{elsewhere}/other" not in operator.logs()


def test_operator_exits_cleanly_on_sigterm(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    operator.wait_for_log(rf"observed \S+ trainingjobs {namespace}/train\b", timeout=60)
    assert operator.stop() == 0


def test_a_restarted_operator_finds_objects_changed_while_it_was_down(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    operator.wait_for_log(rf"observed \S+ trainingjobs {namespace}/train\b", timeout=60)
    operator.kill()
    kube.apply_manifest([training_job("while-down")], namespace)
    mark = operator.log_size()
    operator.start()
    operator.wait_for_log(
        rf"observed \S+ trainingjobs {namespace}/while-down\b", since=mark, timeout=60
    )
    operator.wait_for_log(rf"observed \S+ trainingjobs {namespace}/train\b", since=mark, timeout=60)
    assert operator.starts == 2

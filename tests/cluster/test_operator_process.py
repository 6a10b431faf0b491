"""The real ``kiln-operator`` process runs against the backend and survives restarts.

This proves the wiring every reconciler test builds on: the controllers' list and watch
of each kind work on the selected backend; the operator reacts to each Kiln kind a user
applies in its namespace and to nothing outside it; it shuts down cleanly on SIGTERM; and
after a SIGKILL a fresh process finds what was created while it was down. Kiln logs name
the object they are about (``<namespace>/<name>``), which is what these tests look for, so
they hold whatever each reconciler does with the object.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tests.cluster.conftest import inference_service, model_version, training_job
from tests.support.kube import KubeClient
from tests.support.operator import OperatorProcess


def names(namespace: str, name: str) -> str:
    """A regex for a log line that names ``namespace/name``."""
    return rf"(?<![\w.-]){re.escape(namespace)}/{re.escape(name)}(?![\w.-])"


def test_operator_reacts_to_each_kiln_kind_applied_in_its_namespace(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest(
        [training_job("train"), model_version("iris-v1"), inference_service("serve")], namespace
    )
    for name in ("train", "iris-v1", "serve"):
        operator.wait_for_log(names(namespace, name), timeout=60)


def test_operator_ignores_other_namespaces(
    operator: OperatorProcess,
    kube: KubeClient,
    namespace: str,
    make_namespace: Callable[[], str],
    kiln_crds: list[str],
) -> None:
    elsewhere = make_namespace()
    kube.apply_manifest([model_version("other")], elsewhere)
    kube.apply_manifest([model_version("mine")], namespace)
    operator.wait_for_log(names(namespace, "mine"), timeout=60)
    assert not re.search(names(elsewhere, "other"), operator.logs())


def test_operator_exits_cleanly_on_sigterm(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([model_version("iris-v1")], namespace)
    operator.wait_for_log(names(namespace, "iris-v1"), timeout=60)
    assert operator.stop() == 0


def test_a_restarted_operator_finds_objects_created_while_it_was_down(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([model_version("before")], namespace)
    operator.wait_for_log(names(namespace, "before"), timeout=60)
    operator.kill()
    kube.apply_manifest([model_version("while-down")], namespace)
    mark = operator.log_size()
    operator.start()
    operator.wait_for_log(names(namespace, "while-down"), since=mark, timeout=60)
    assert operator.starts == 2


def test_operator_serves_its_metrics_on_the_given_port(
    operator: OperatorProcess, kube: KubeClient, namespace: str, kiln_crds: list[str]
) -> None:
    kube.apply_manifest([training_job("train")], namespace)
    operator.wait_for_log(names(namespace, "train"), timeout=60)
    assert "# TYPE kiln_operator_api_requests_total counter" in operator.metrics()
    # Reconciling the TrainingJob goes through the operator's API client, which counts.
    deadline = time.monotonic() + 10
    while operator.metric("kiln_operator_api_requests_total") == 0:
        assert time.monotonic() < deadline, "kiln_operator_api_requests_total stayed 0"
        time.sleep(0.1)

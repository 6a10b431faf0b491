"""The operator serves the liveness probe and Prometheus metrics a Deployment relies on."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.backends import Cluster
from tests.support.operator import OperatorProcess
from tests.support.ports import free_port


def _get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except (urllib.error.URLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout}s: {error}") from error
            time.sleep(0.2)


def test_liveness_endpoint_answers_while_the_operator_runs(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    process = OperatorProcess(
        cluster.kubeconfig,
        namespace,
        tmp_path / "kiln-operator.log",
        extra_args=["--liveness-port", str(port)],
    )
    process.start()
    try:
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
    finally:
        process.stop()
    process.assert_no_unhandled_exceptions()


def test_metrics_count_the_operators_api_calls(operator: OperatorProcess) -> None:
    deadline = time.monotonic() + 30
    while "kiln_operator_api_requests_total" not in operator.metrics():
        assert time.monotonic() < deadline, "no API call counter on the metrics port"
        time.sleep(0.5)
    text = operator.metrics()
    assert "# TYPE kiln_operator_api_requests_total counter" in text

"""Kiln's dashboard and alerts on a real Prometheus that scrapes a real operator and real
model servers.

Prometheus 2.42 (Debian's build, ``make prometheus``) scrapes the operator process at work
on a TrainingJob and two ``kiln-server`` processes of one InferenceService under traffic: a
stable version whose inputs have drifted and a canary whose every inference fails. The
model servers are scraped as the chart's PodMonitor would have them: their namespace and
pod as target labels, and the PodMonitor's own relabeling turning the pod's
``kiln.dev/inferenceservice`` label into ``inferenceservice``.

Covers: Prometheus loads the chart's rules and evaluates each without error; it accepts
every query of the dashboard; each query over the operator's or the model servers' metrics
returns series for this service, carrying the labels the query groups by; the error-rate
panel shows the failing canary and the drift panel every feature; the kube-state-metrics
queries, whose exporter does not run here, are only parsed.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiln_server.baseline import write_baseline
from tests.cluster.conftest import training_job
from tests.server import models
from tests.server.server_process import ServerProcess
from tests.support.helm import render
from tests.support.kube import KubeClient
from tests.support.operator import OperatorProcess
from tests.support.prometheus import Prometheus, require, rules_file, running
from tests.support.serving import infer_body
from tests.unit.chart.test_chart_generated import generate
from tests.unit.chart.test_monitoring import EVERYTHING, dashboard_of, used_metrics

SERVICE = "iris"
FEATURES = 8
#: The interval Grafana would put in for $__rate_interval at this scrape interval.
RATE_INTERVAL = "30s"
#: prometheus-operator's names for a RelabelConfig's fields, in Prometheus's own config.
RELABEL_FIELDS = {
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "separator": "separator",
    "regex": "regex",
    "replacement": "replacement",
    "action": "action",
    "modulus": "modulus",
}


def _relabel_configs(pod_monitor: dict[str, Any]) -> list[dict[str, Any]]:
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    return [
        {RELABEL_FIELDS[key]: value for key, value in step.items()}
        for step in endpoint.get("relabelings", [])
    ]


def _pod_target(server: ServerProcess, namespace: str, pod: str) -> dict[str, Any]:
    """A model-server pod as Kubernetes service discovery would give it, before relabeling."""
    return {
        "targets": [f"127.0.0.1:{server.port}"],
        "labels": {
            "namespace": namespace,
            "pod": pod,
            "container": "kiln-server",
            "__meta_kubernetes_pod_label_kiln_dev_inferenceservice": SERVICE,
        },
    }


@pytest.fixture
def model_servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    stable_dir = tmp_path / "v1"
    stable_dir.mkdir()
    models.tabular(str(stable_dir), features=FEATURES)
    training = np.random.default_rng(0).standard_normal((2000, FEATURES))
    write_baseline(training, os.path.join(stable_dir, "baseline.json"))
    canary_dir = tmp_path / "v2"
    canary_dir.mkdir()
    models.fails_on_live_inputs(str(canary_dir), features=FEATURES)
    stable = ServerProcess(
        str(stable_dir), SERVICE, "--model-version", "1", "--drift-window", "200"
    )
    canary = ServerProcess(str(canary_dir), SERVICE, "--model-version", "2")
    try:
        stable.wait_ready()
        canary.wait_ready()
        yield stable, canary
    finally:
        stable.stop()
        canary.stop()


def _grafana_substituted(expr: str, namespace: str) -> str:
    """The expression as Grafana sends it for this namespace and service."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return expr.replace("$namespace", namespace).replace("$inferenceservice", SERVICE)


def _grouping(expr: str) -> set[str]:
    """The labels of the outermost ``by (...)``: the ones a panel's legend names."""
    found = re.search(r"\bby \(([^)]*)\)", expr)
    return {label.strip() for label in found.group(1).split(",")} - {"le"} if found else set()


def _state_only(expr: str) -> bool:
    """The query reads only kube-state-metrics' Kiln metrics, which nothing exports here."""
    return used_metrics(expr) <= generate.state_metrics().keys()


def test_prometheus_evaluates_the_rules_and_the_dashboard_over_kilns_own_metrics(
    kube: KubeClient,
    kiln_crds: list[str],
    namespace: str,
    operator: OperatorProcess,
    model_servers: tuple[ServerProcess, ServerProcess],
    tmp_path: Path,
) -> None:
    require("prometheus")
    docs = render(EVERYTHING)
    (pod_monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    stable, canary = model_servers
    folder = tmp_path / "prometheus"
    folder.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file(rule, folder))],
        "scrape_configs": [
            {
                "job_name": "kiln-model-servers",
                "static_configs": [
                    _pod_target(stable, namespace, "iris-v1-7c9d-x2"),
                    _pod_target(canary, namespace, "iris-v2-5f4b-k8"),
                ],
                "relabel_configs": _relabel_configs(pod_monitor),
            },
            {
                "job_name": "kiln-operator",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator.metrics_port}"],
                        "labels": {"namespace": "kiln-system", "pod": "kiln-operator-0"},
                    }
                ],
            },
        ],
    }
    # Far from the training data (standard normal): drift for the stable version; a first
    # feature past the canary's table: a 500 from it.
    shifted = infer_body(FEATURES, 2.0, rows=50)
    failing = infer_body(FEATURES, 6.0, rows=50)
    with running(config, folder) as prometheus:
        prometheus.wait_until(
            "every target up",
            lambda: {t["health"] for t in prometheus.targets()} == {"up"},
        )
        # Counters that first appear mid-traffic have no rate: the work starts once
        # Prometheus has scraped every target, and lasts a few scrapes.
        kube.create(training_job("nightly"), namespace)
        for _ in range(5):
            assert stable.infer(shifted).status == 200
            assert canary.infer(failing).status == 500
            time.sleep(1)
        _wait_for_two_scrapes_of_traffic(prometheus)
        _assert_rules_evaluate(prometheus, rule)
        _assert_dashboard_reads_kilns_metrics(prometheus, docs, namespace)


def _wait_for_two_scrapes_of_traffic(prometheus: Prometheus) -> None:
    """Until both servers' requests have a rate, and the operator's reconciles one (zero:
    a counter's first sample, taken after the reconciles it counts, is its start)."""
    wanted = [
        f'rate(kiln_inference_requests_total{{code="200"}}[{RATE_INTERVAL}]) > 0',
        f'rate(kiln_inference_requests_total{{code="500"}}[{RATE_INTERVAL}]) > 0',
        "rate(kiln_operator_reconciles_total[1m]) >= 0",
    ]
    prometheus.wait_until(
        f"series for each of {wanted}", lambda: all(prometheus.query(q) for q in wanted)
    )


def _assert_rules_evaluate(prometheus: Prometheus, rule: dict[str, Any]) -> None:
    written = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]

    def all_evaluated() -> bool:
        rules = prometheus.rules()
        return len(rules) == len(written) and all(
            r.get("lastEvaluation", "0001") > "1" for r in rules
        )

    prometheus.wait_until("every rule evaluated", all_evaluated)
    rules = prometheus.rules()
    assert sorted(r["name"] for r in rules) == sorted(written)
    for loaded in rules:
        assert loaded["health"] == "ok", f"{loaded['name']}: {loaded.get('lastError')}"


def _assert_dashboard_reads_kilns_metrics(
    prometheus: Prometheus, docs: list[dict[str, Any]], namespace: str
) -> None:
    board = dashboard_of(docs)
    panel_queries = [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    assert len(panel_queries) >= 12
    served = 0
    for title, expr in panel_queries:
        sent = _grafana_substituted(expr, namespace)
        result = prometheus.query(sent)  # a query Prometheus refuses raises here
        if _state_only(expr):
            continue
        served += 1
        assert result, f"panel {title!r}: {sent!r} returned no series"
        for series in result:
            for label in _grouping(expr):
                assert series["metric"].get(label), (
                    f"panel {title!r}: series {series['metric']} lacks {label!r}"
                )
            if "inferenceservice" in _grouping(expr):
                assert series["metric"]["inferenceservice"] == SERVICE
                assert series["metric"]["namespace"] == namespace
    assert served >= 8
    errors = prometheus.query(_grafana_substituted(_panel(board, "Error rate (5xx)"), namespace))
    assert {s["metric"]["version"]: float(s["value"][1]) for s in errors} == {"2": 1.0}
    features = prometheus.query(
        _grafana_substituted(_panel(board, "Drift per feature (PSI)"), namespace)
    )
    assert len({s["metric"]["feature"] for s in features}) == FEATURES
    assert max(float(s["value"][1]) for s in features) > 1.0
    expected = {"namespace": namespace, "inferenceservice": SERVICE}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
        assert found, f"variable {variable['name']}: {variable['query']['query']!r}"
        inner, label = found.groups()
        series = prometheus.query(_grafana_substituted(inner, namespace))
        assert expected[label] in {s["metric"].get(label) for s in series}, variable["name"]


def _panel(board: dict[str, Any], title: str) -> str:
    (panel,) = [p for p in board["panels"] if p.get("title") == title]
    expr: str = panel["targets"][0]["expr"]
    return expr

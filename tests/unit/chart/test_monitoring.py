"""The chart's monitoring: monitors, alerts and the dashboard, and the metrics they read.

Covers: every metric the Grafana dashboard and the PrometheusRule query is one that Kiln
exports (the operator's metric objects, a real model server's exposition, the chart's
kube-state-metrics configuration), with only labels those metrics (or the scrape) have,
read from each expression's syntax tree (promql-parser); the ServiceMonitor, PodMonitor and
PrometheusRule satisfy prometheus-operator's published schemas (types, patterns, enums,
required fields) in every mode; nothing is rendered unless asked for; the PodMonitor
selects the serving pods the operator builds, on their metrics port; the ServiceMonitor
selects the operator's metrics Service; alert thresholds follow the values; the dashboard
has the panels the issue asks for, and keeps to Grafana's dashboard schema (Grafana 11.6's,
as grafana-foundation-sdk is generated from it): every panel type is one Grafana has, and
every key of the dashboard, its panels, their options, field config and Prometheus queries
is one the schema declares.
"""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
from grafana_foundation_sdk.cog import plugins as grafana_plugins
from grafana_foundation_sdk.cog import runtime as grafana_runtime
from grafana_foundation_sdk.models.dashboard import Dashboard as GrafanaDashboard
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kiln_operator import metrics as operator_metrics
from kiln_server.drift import DriftReport
from kiln_server.metrics import ServerMetrics
from tests.support.helm import kinds, render
from tests.support.prometheus import operator_schema_errors
from tests.unit.chart.test_chart_generated import generate
from tests.unit.inferenceservice.test_serving_builders import deployment

EVERYTHING = {
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "kubeStateMetrics": {"enabled": True},
    }
}
#: Labels Prometheus adds at scrape time (the PodMonitor adds inferenceservice).
TARGET_LABELS = {"namespace", "pod", "container", "job", "instance", "service", "endpoint"}
SERVER_TARGET_LABELS = TARGET_LABELS | {"inferenceservice"}
#: kube-state-metrics' own labels on every custom-resource metric.
STATE_LABELS = {"customresource_group", "customresource_kind", "customresource_version"}


def _families(text: str) -> dict[str, set[str]]:
    """Sample names -> label names, from Prometheus text (counters as _total, histograms as
    _bucket/_sum/_count)."""
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


def exported_metrics() -> dict[str, set[str]]:
    """Every series name Kiln exports, with the labels it may carry."""
    exported: dict[str, set[str]] = {}
    for value in vars(operator_metrics).values():
        if hasattr(value, "_labelnames") and hasattr(value, "_name"):
            labels = set(value._labelnames) | TARGET_LABELS
            text = generate_latest(_registry_of(value)).decode()
            for family in text_string_to_metric_families(text):
                suffixes = {
                    "counter": ["_total"],
                    "gauge": [""],
                    "histogram": ["_bucket", "_sum", "_count"],
                }[family.type]
                for suffix in suffixes:
                    exported[f"{family.name}{suffix}"] = labels | (
                        {"le"} if suffix == "_bucket" else set()
                    )
    server = ServerMetrics("iris", "2", "cpu")
    server.count_request(200)
    server.request_duration.observe(0.01)
    server.batch_size.observe(4)
    server.watch_drift(lambda: DriftReport(rows=100, per_feature={"f0": 0.3, "f1": 0.1}))
    for name, labels in _families(server.exposition().decode()).items():
        exported[name] = labels | SERVER_TARGET_LABELS
    for name, (_, labels, _) in generate.state_metrics().items():
        exported[name] = set(labels) | STATE_LABELS | TARGET_LABELS
    return exported


def _registry_of(metric: Any) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(metric)
    return registry


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def monitored() -> list[dict[str, Any]]:
    return render(EVERYTHING)


def dashboard_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = next(d for d in docs if d["metadata"]["name"] == "kiln-dashboard")
    board: dict[str, Any] = json.loads(config_map["data"]["kiln.json"])
    return board


def queries(docs: list[dict[str, Any]]) -> list[str]:
    """Every PromQL expression of the dashboard (panels and variables) and the rules."""
    board = dashboard_of(docs)
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    rule = _one(docs, "PrometheusRule")
    found += [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    return found


def _grafana_free(expr: str) -> str:
    """The expression without Grafana's variables and label_values() wrapper: PromQL."""
    expr = re.sub(r"\$__rate_interval", "5m", expr)
    expr = re.sub(r"\$\w+", "x", expr)
    return re.sub(r"label_values\((.*),\s*\w+\)$", r"\1", expr)


def _read(expr: str) -> tuple[set[str], set[str]]:
    """The metric names an expression selects and the label names it matches, groups or
    joins on, from the syntax tree of a real PromQL parser (promql-parser)."""
    metrics: set[str] = set()
    labels: set[str] = set()

    def visit(node: Any, *_: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                metrics.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    metrics.add(matcher.value)
                else:
                    labels.add(matcher.name)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier:
            labels.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier:
            if node.modifier.matching:
                labels.update(node.modifier.matching.labels)
            labels.update(node.modifier.group_labels or ())
        return True

    promql_parser.walk(promql_parser.parse(_grafana_free(expr)), visit)
    return metrics, labels


def used_metrics(expr: str) -> set[str]:
    return {name for name in _read(expr)[0] if name.startswith("kiln_")}


def used_labels(expr: str) -> set[str]:
    return _read(expr)[1]


def test_every_queried_metric_is_exported_with_the_labels_used(
    monitored: list[dict[str, Any]],
) -> None:
    exported = exported_metrics()
    expressions = queries(monitored)
    assert len(expressions) >= 15
    for expr in expressions:
        metrics = used_metrics(expr)
        assert metrics, f"no Kiln metric in {expr!r}"
        unknown = metrics - exported.keys()
        assert not unknown, f"{expr!r} reads {sorted(unknown)}, which nothing exports"
        known_labels = set().union(*(exported[m] for m in metrics))
        stray = used_labels(expr) - known_labels - {"le"}
        assert not stray, f"{expr!r} uses labels {sorted(stray)} that {sorted(metrics)} lack"


def test_the_check_catches_a_metric_nothing_exports() -> None:
    exported = exported_metrics()
    assert used_metrics('sum(rate(kiln_inference_request_total{code="500"}[5m]))') - (
        exported.keys()
    ) == {"kiln_inference_request_total"}
    assert (
        "track"
        in used_labels('kiln_inference_requests_total{track="canary"}')
        - (exported["kiln_inference_requests_total"])
    )


def _monitoring_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]


@pytest.mark.parametrize(
    "extra",
    [{}, {"watchNamespaces": ["team-a", "team-b"]}],
    ids=["cluster-wide", "namespaced"],
)
def test_monitors_and_rules_satisfy_prometheus_operators_schema(extra: dict[str, Any]) -> None:
    objects = _monitoring_objects(render({**EVERYTHING, **extra}))
    verdicts = operator_schema_errors(objects)
    assert sorted(verdicts) == [
        "PodMonitor/kiln-model-servers",
        "PrometheusRule/kiln",
        "ServiceMonitor/kiln-operator",
    ]
    assert {name: errors for name, errors in verdicts.items() if errors} == {}


def test_the_schema_check_refuses_what_prometheus_operator_would(
    monitored: list[dict[str, Any]],
) -> None:
    """The check can fail: a rule's ``for`` in words and an unknown relabel action."""
    objects = json.loads(json.dumps(_monitoring_objects(monitored)))
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][1]["for"] = "2 minutes"
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    verdicts = operator_schema_errors(objects)
    (complaint,) = verdicts["PrometheusRule/kiln"]
    assert complaint.startswith("/spec/groups/0/rules/1/for: must match pattern")
    assert verdicts["PodMonitor/kiln-model-servers"] == [
        "/spec/podMetricsEndpoints/0/relabelings/0/action: must be equal to one of the "
        "allowed values"
    ]


def test_nothing_is_monitored_unless_asked() -> None:
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds(render()))
    assert [d["metadata"]["name"] for d in render() if d["kind"] == "ConfigMap"] == []


def test_pod_monitor_selects_the_serving_pods_the_operator_builds(
    monitored: list[dict[str, Any]],
) -> None:
    pod_monitor = _one(monitored, "PodMonitor")
    template = deployment()["spec"]["template"]
    labels = template["metadata"]["labels"]
    selector = pod_monitor["spec"]["selector"]
    assert selector["matchLabels"].items() <= labels.items()
    for expression in selector["matchExpressions"]:
        assert expression["operator"] == "Exists"
        assert expression["key"] in labels
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"
    (relabel,) = endpoint["relabelings"]
    assert relabel["targetLabel"] == "inferenceservice"
    pod_label = relabel["sourceLabels"][0].removeprefix("__meta_kubernetes_pod_label_")
    assert pod_label in {re.sub(r"[^a-zA-Z0-9_]", "_", k) for k in labels}


def test_pod_monitor_watches_only_the_watched_namespaces() -> None:
    docs = render({**EVERYTHING, "watchNamespaces": ["team-a"]})
    assert _one(docs, "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    assert _one(render(EVERYTHING), "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}


def test_service_monitor_scrapes_the_operators_metrics_service(
    monitored: list[dict[str, Any]],
) -> None:
    monitor = _one(monitored, "ServiceMonitor")
    service = next(d for d in monitored if d["metadata"]["name"] == "kiln-operator-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_alerts_cover_canaries_drift_and_training_with_the_configured_thresholds() -> None:
    values = {
        "monitoring": {
            "prometheusRule": {
                "enabled": True,
                "canaryErrorRatio": 0.02,
                "driftThreshold": 0.4,
                "driftFor": "1h",
            }
        }
    }
    rules = {
        rule["alert"]: rule
        for group in _one(render(values), "PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
    }
    assert {
        "KilnCanaryAborted",
        "KilnCanaryErrorRateHigh",
        "KilnDriftSustained",
        "KilnTrainingJobFailing",
    } <= rules.keys()
    assert "> 0.02" in rules["KilnCanaryErrorRateHigh"]["expr"]
    assert "> 0.4" in rules["KilnDriftSustained"]["expr"]
    assert rules["KilnDriftSustained"]["for"] == "1h"
    assert all(rule["annotations"]["summary"] for rule in rules.values())


def test_dashboard_shows_serving_drift_rollouts_and_training(
    monitored: list[dict[str, Any]],
) -> None:
    config_map = next(d for d in monitored if d["metadata"]["name"] == "kiln-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = dashboard_of(monitored)
    panels = {p["title"]: p for p in board["panels"] if p["type"] != "row"}
    assert set(panels) >= {
        "Request rate",
        "Error rate (5xx)",
        "Latency p50 / p99",
        "Batch size p50 / p99",
        "Drift per feature (PSI)",
        "Canary weight",
        "TrainingJob runs by phase",
    }
    for panel in panels.values():
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        assert panel["datasource"]["uid"] == "${datasource}"
    latency = [t["expr"] for t in panels["Latency p50 / p99"]["targets"]]
    assert [e.split(",")[0] for e in latency] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
    ]
    assert (
        "by (namespace, inferenceservice, version" in panels["Request rate"]["targets"][0]["expr"]
    )


#: Keys Grafana's own editor writes that its schema does not declare: a query variable's
#: ``definition``, the query text the variables list shows.
EDITOR_ONLY = {"definition"}


def _undeclared(written: Any, decoded: Any, path: str = "") -> list[str]:
    """Paths of ``written`` that decoding by Grafana's schema and encoding again lost."""
    if isinstance(written, dict):
        lost = []
        for key, value in written.items():
            if not isinstance(decoded, dict) or key not in decoded:
                if key not in EDITOR_ONLY:
                    lost.append(f"{path}/{key}")
            else:
                lost += _undeclared(value, decoded[key], f"{path}/{key}")
        return lost
    if isinstance(written, list) and isinstance(decoded, list) and len(written) == len(decoded):
        return [
            found
            for index, (one, other) in enumerate(zip(written, decoded, strict=True))
            for found in _undeclared(one, other, f"{path}[{index}]")
        ]
    return [] if written == decoded else [f"{path} (changed)"]


def grafana_schema_complaints(board: dict[str, Any]) -> list[str]:
    grafana_plugins.register_default_plugins()
    complaints = [
        f"panel {panel.get('title')!r}: Grafana has no panel type {panel['type']!r}"
        for panel in board["panels"]
        if panel["type"] != "row" and grafana_runtime.panelcfg_config(panel["type"]) is None
    ]
    decoded = json.loads(
        json.dumps(GrafanaDashboard.from_json(board), default=lambda o: o.to_json())
    )
    return complaints + [
        f"{path} is not in Grafana's schema" for path in _undeclared(board, decoded)
    ]


def test_the_dashboard_keeps_to_grafanas_dashboard_schema(
    monitored: list[dict[str, Any]],
) -> None:
    assert grafana_schema_complaints(dashboard_of(monitored)) == []


def test_the_schema_check_finds_misspelt_keys_and_unknown_panel_types(
    monitored: list[dict[str, Any]],
) -> None:
    board = dashboard_of(monitored)
    index, panel = next((i, p) for i, p in enumerate(board["panels"]) if p["type"] != "row")
    panel["gridpos"] = panel.pop("gridPos")
    panel["targets"][0]["legendFormt"] = panel["targets"][0].pop("legendFormat")
    panel["fieldConfig"]["defaults"]["units"] = "s"
    assert grafana_schema_complaints(board) == [
        f"/panels[{index}]/fieldConfig/defaults/units is not in Grafana's schema",
        f"/panels[{index}]/targets[0]/legendFormt is not in Grafana's schema",
        f"/panels[{index}]/gridpos is not in Grafana's schema",
    ]
    panel["type"] = "timeseriez"
    assert grafana_schema_complaints(board)[0] == (
        f"panel {panel['title']!r}: Grafana has no panel type 'timeseriez'"
    )


def test_kube_state_metrics_config_and_its_rights() -> None:
    values = {
        "monitoring": {
            "kubeStateMetrics": {
                "enabled": True,
                "serviceAccount": {"name": "kube-state-metrics", "namespace": "monitoring"},
            }
        }
    }
    docs = render(values)
    config_map = next(d for d in docs if d["metadata"]["name"] == "kiln-kube-state-metrics")
    assert "kind: CustomResourceStateMetrics" in config_map["data"]["kiln.yaml"]
    role = next(
        d
        for d in docs
        if d["metadata"]["name"] == "kiln-kube-state-metrics" and d["kind"] == "ClusterRole"
    )
    assert role["rules"][0]["verbs"] == ["list", "watch"]
    binding = next(
        d
        for d in docs
        if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == "kiln-kube-state-metrics"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kube-state-metrics", "namespace": "monitoring"}
    ]

"""Prometheus metrics of one served model, under the names fixed in ``kiln_server.contract``.

Each server owns its registry (no global state), and binds the model's labels once so the
hot path touches pre-resolved children only. Drift gauges are computed at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kiln_server import contract
from kiln_server.drift import DriftReport

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _DriftCollector(Collector):
    def __init__(self, labels: tuple[str, str], source: Callable[[], DriftReport | None]):
        self._labels = labels
        self._source = source

    def collect(self) -> Iterator[Metric]:
        report = self._source()
        if report is None:
            return
        per_feature = GaugeMetricFamily(
            contract.DRIFT_PSI,
            "Population stability index of one input feature: live window vs training baseline",
            labels=list(contract.DRIFT_PSI_LABELS),
        )
        for feature, value in report.per_feature.items():
            per_feature.add_metric([*self._labels, feature], value)
        yield per_feature
        yield self._model_gauge(
            contract.DRIFT_PSI_OVERALL,
            "Mean population stability index over all baseline features",
            report.overall,
        )
        yield self._model_gauge(
            contract.DRIFT_WINDOW_ROWS, "Live input rows in the drift window", report.rows
        )

    def _model_gauge(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, documentation, labels=list(contract.MODEL_LABELS))
        family.add_metric(list(self._labels), value)
        return family


class ServerMetrics:
    """The model's metric children, label values bound once."""

    def __init__(self, model: str, version: str | None, device: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = (model, version or "")
        self._device = device
        labels = list(contract.MODEL_LABELS)
        self._requests = Counter(
            contract.REQUESTS_TOTAL,
            "Finished inference requests by HTTP status code",
            list(contract.REQUESTS_TOTAL_LABELS),
            registry=self.registry,
        )
        self._by_code: dict[int, Counter] = {}
        buckets = contract.LATENCY_BUCKETS

        def histogram(name: str, doc: str, bucket_bounds: tuple[float, ...]) -> Histogram:
            family = Histogram(name, doc, labels, buckets=bucket_bounds, registry=self.registry)
            return family.labels(*self._labels)

        self.request_duration = histogram(
            contract.REQUEST_DURATION, "Inference request latency in the server", buckets
        )
        self.queue_duration = histogram(
            contract.QUEUE_DURATION, "Time a request waited for its batch to start", buckets
        )
        self.compute_duration = histogram(
            contract.COMPUTE_DURATION, "Duration of one ONNX Runtime call", buckets
        )
        self.batch_size = histogram(
            contract.BATCH_SIZE,
            "Rows per ONNX Runtime call",
            tuple(float(b) for b in contract.BATCH_SIZE_BUCKETS),
        )
        self.in_flight = Gauge(
            contract.IN_FLIGHT, "Inference requests being served", labels, registry=self.registry
        ).labels(*self._labels)
        self._info = Gauge(
            contract.MODEL_INFO,
            "The served model: name, version, device and readiness (value always 1)",
            list(contract.MODEL_INFO_LABELS),
            registry=self.registry,
        )
        self.set_ready(False)

    def count_request(self, status: int) -> None:
        child = self._by_code.get(status)
        if child is None:
            child = self._requests.labels(*self._labels, str(status))
            self._by_code[status] = child
        child.inc()

    def set_ready(self, ready: bool) -> None:
        self._info.clear()
        self._info.labels(*self._labels, self._device, "true" if ready else "false").set(1)

    def watch_drift(self, source: Callable[[], DriftReport | None]) -> None:
        self.registry.register(_DriftCollector(self._labels, source))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

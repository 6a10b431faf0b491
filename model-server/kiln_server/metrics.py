"""Prometheus metrics of one served model, under the names fixed in ``kiln_server.contract``.

Each server owns its registry (no global state). The request path only adds to plain numbers;
the Prometheus families, drift gauges included, are built at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from math import inf

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class Histogram:
    """Bucket counts and a sum, without locks: every observation comes from the event loop
    thread (the batcher reports its calls there too), and so does every scrape."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus' ``le`` (less or equal) says
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=list(contract.MODEL_LABELS))
        cumulative = 0
        buckets = []
        for bound, count in zip((*self.bounds, inf), self.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        family.add_metric(labels, buckets, self.total)
        return family


class ServerMetrics:
    """The served model's metrics: plain numbers on the hot path, families at scrape time.

    Updated from the event loop thread only (see :class:`Histogram`); a request costs a few
    integer additions and two bisections, not the locks of prometheus_client's instruments.
    """

    def __init__(self, model: str, version: str | None, device: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = [model, version or ""]
        self._device = device
        self.ready = False
        self.in_flight = 0
        self.by_code: dict[int, int] = {}
        self.request_duration = Histogram(contract.LATENCY_BUCKETS)
        self.queue_duration = Histogram(contract.LATENCY_BUCKETS)
        self.compute_duration = Histogram(contract.LATENCY_BUCKETS)
        self.batch_size = Histogram(tuple(float(b) for b in contract.BATCH_SIZE_BUCKETS))
        self.registry.register(_ServerCollector(self))

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self, status: int, seconds: float) -> None:
        self.in_flight -= 1
        self.count_request(status)
        self.request_duration.observe(seconds)

    def count_request(self, status: int) -> None:
        by_code = self.by_code
        by_code[status] = by_code.get(status, 0) + 1

    def set_ready(self, ready: bool) -> None:
        self.ready = ready

    def watch_drift(self, source: Callable[[], DriftReport | None]) -> None:
        self.registry.register(_DriftCollector((self._labels[0], self._labels[1]), source))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        labels = self._labels
        requests = CounterMetricFamily(
            contract.REQUESTS_TOTAL,
            "Finished inference requests by HTTP status code",
            labels=list(contract.REQUESTS_TOTAL_LABELS),
        )
        for code, count in sorted(self.by_code.items()):
            requests.add_metric([*labels, str(code)], count)
        yield requests
        yield self.request_duration.family(
            contract.REQUEST_DURATION, "Inference request latency in the server", labels
        )
        yield self.queue_duration.family(
            contract.QUEUE_DURATION, "Time a request waited for its batch to start", labels
        )
        yield self.compute_duration.family(
            contract.COMPUTE_DURATION, "Duration of one ONNX Runtime call", labels
        )
        yield self.batch_size.family(contract.BATCH_SIZE, "Rows per ONNX Runtime call", labels)
        in_flight = GaugeMetricFamily(
            contract.IN_FLIGHT,
            "Inference requests being served",
            labels=list(contract.MODEL_LABELS),
        )
        in_flight.add_metric(labels, self.in_flight)
        yield in_flight
        info = GaugeMetricFamily(
            contract.MODEL_INFO,
            "The served model: name, version, device and readiness (value always 1)",
            labels=list(contract.MODEL_INFO_LABELS),
        )
        info.add_metric([*labels, self._device, "true" if self.ready else "false"], 1)
        yield info


class _ServerCollector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()

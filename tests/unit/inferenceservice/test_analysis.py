"""Canary analysis from model-server scrapes: reading a pod's sample out of a real
``ServerMetrics`` exposition, the window between two scrapes (new pods, restarted pods, gone
pods, p99 over summed histograms), ``histogram_quantile``, the verdict and its message,
durations, runs of failures, and samples stored in a status."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from kiln_operator.decisions.analysis import (
    Judgement,
    PodSample,
    ScrapeError,
    WindowStats,
    consecutive_failures,
    duration_seconds,
    judge,
    parse_sample,
    quantile,
    window,
)
from kiln_server import contract
from kiln_server.metrics import ServerMetrics

ZERO_BUCKETS = (0,) * (len(contract.LATENCY_BUCKETS) + 1)


class Pod:
    """One model-server process: its real metrics, served into and scraped."""

    def __init__(self, model: str = "iris", version: str | None = "2") -> None:
        self.metrics = ServerMetrics(model, version, "cpu")

    def serve(self, count: int, code: int = 200, seconds: float = 0.004) -> Pod:
        for _ in range(count):
            self.metrics.count_request(code)
            self.metrics.request_duration.observe(seconds)
        return self

    def text(self) -> str:
        return self.metrics.exposition().decode()

    def scrape(self) -> PodSample:
        return parse_sample(self.text(), "iris", "2")


# --- parse_sample ----------------------------------------------------------------------


def test_a_server_that_served_nothing_reads_as_zeros() -> None:
    assert Pod().scrape() == PodSample(requests=0, errors=0, buckets=ZERO_BUCKETS)


@pytest.mark.parametrize(
    ("codes", "requests", "errors"),
    [
        pytest.param([200, 200], 2, 0, id="2xx-only"),
        pytest.param([200, 400, 404, 429], 4, 0, id="4xx-are-not-errors"),
        pytest.param([500, 503, 504], 3, 3, id="5xx-are-errors"),
        pytest.param([499, 500, 599, 600], 4, 2, id="5xx-boundaries"),
    ],
)
def test_errors_are_the_5xx_requests(codes: list[int], requests: int, errors: int) -> None:
    pod = Pod()
    for code in codes:
        pod.serve(1, code)

    sample = pod.scrape()

    assert (sample.requests, sample.errors) == (requests, errors)


def test_latency_buckets_are_cumulative_and_include_their_bound() -> None:
    pod = Pod()
    for seconds in (0.004, 0.005, 0.02, 20.0):
        pod.serve(1, seconds=seconds)

    sample = pod.scrape()

    # Bounds: 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 ... 10 +Inf
    assert sample.buckets == (0, 0, 0, 0, 0, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4)


@pytest.mark.parametrize(
    ("text", "requests"),
    [
        pytest.param(Pod("wine", "2").serve(3).text(), 0, id="other-model-ignored"),
        pytest.param(Pod("iris", "1").serve(3).text(), 0, id="other-version-ignored"),
        pytest.param(Pod("iris", None).serve(3).text(), 0, id="unversioned-is-not-version-2"),
        pytest.param(
            Pod("iris", "1").serve(5).text()
            + Pod("iris", "2").serve(3).text()
            + Pod("wine", "2").serve(7).text(),
            3,
            id="right-series-among-others",
        ),
    ],
)
def test_only_the_asked_model_and_version_count(text: str, requests: int) -> None:
    sample = parse_sample(text, "iris", "2")

    assert sample.requests == requests
    assert sample.buckets[-1] == requests


def test_an_unversioned_model_is_read_with_an_empty_version() -> None:
    sample = parse_sample(Pod("iris", None).serve(3).text(), "iris", "")

    assert sample.requests == 3


def test_integer_values_are_read_as_counts() -> None:
    # prometheus_client writes "3.0"; Go's client and hand-made exporters write "3".
    text = Pod().serve(3, 503).text().replace(" 3.0\n", " 3\n")
    assert " 3\n" in text

    sample = parse_sample(text, "iris", "2")

    assert (sample.requests, sample.errors, sample.buckets[-1]) == (3, 3, 3)


def foreign_buckets_text() -> str:
    registry = CollectorRegistry()
    histogram = Histogram(
        contract.REQUEST_DURATION,
        "latency with buckets the contract does not have",
        list(contract.MODEL_LABELS),
        buckets=(0.1, 0.3),
        registry=registry,
    )
    histogram.labels("iris", "2").observe(0.2)
    return generate_latest(registry).decode()


def edited(text: str, line: str, replacement: str) -> str:
    assert text.count(line) == 1, f"{line!r} is not once in the exposition"
    return text.replace(line, replacement)


DURATION_LINE = contract.REQUEST_DURATION + '_bucket{{le="{le}",model="iris",version="2"}} 1.0\n'


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(foreign_buckets_text(), r"le='0\.3'.*LATENCY_BUCKETS", id="foreign-bounds"),
        pytest.param(
            edited(Pod().serve(1).text(), DURATION_LINE.format(le="0.05"), ""),
            r"lacks the buckets le=0\.05$",
            id="missing-bucket",
        ),
        pytest.param(
            edited(
                Pod().serve(1).text(),
                DURATION_LINE.format(le="+Inf"),
                DURATION_LINE.format(le="+Inf").replace("1.0", "0.0"),
            ),
            "not cumulative",
            id="non-cumulative-buckets",
        ),
        pytest.param(
            'kiln_inference_requests_total{code="200",model="iris" 1\n',
            "not a Prometheus text exposition",
            id="unterminated-labels",
        ),
        pytest.param("<html>oops</html>\n", "not a Prometheus text exposition", id="not-metrics"),
        pytest.param(
            'kiln_inference_requests_total{code="200",model="iris",version="2"} 1.5\n',
            "1.5, not a count",
            id="fractional-count",
        ),
        pytest.param(
            'kiln_inference_requests_total{code="200",model="iris",version="2"} NaN\n',
            "nan, not a count",
            id="nan-count",
        ),
        pytest.param(
            contract.REQUEST_DURATION + '_bucket{le="fast",model="iris",version="2"} 1\n',
            "le='fast', not a number",
            id="le-not-a-number",
        ),
        pytest.param(
            'kiln_inference_requests_total{code="200",model="iris",version="2"} 1\n' * 2,
            "repeats code='200'",
            id="repeated-series",
        ),
        pytest.param(
            DURATION_LINE.format(le="+Inf") * 2,
            "repeats le='\\+Inf'",
            id="repeated-bucket",
        ),
    ],
)
def test_unreadable_scrapes_raise_scrape_error(text: str, match: str) -> None:
    with pytest.raises(ScrapeError, match=match):
        parse_sample(text, "iris", "2")


# --- window ----------------------------------------------------------------------------

Scrapes = tuple[dict[str, PodSample], dict[str, PodSample]]


def new_pod() -> Scrapes:
    return {}, {"a": Pod().serve(10).scrape()}


def served_since_last_scrape() -> Scrapes:
    pod = Pod().serve(10, 500)
    before = pod.scrape()
    pod.serve(15).serve(2, 503)
    return {"a": before}, {"a": pod.scrape()}


def restarted() -> Scrapes:
    before = Pod().serve(100).scrape()
    return {"a": before}, {"a": Pod().serve(4).serve(1, 500).scrape()}


def restart_hidden_in_totals() -> Scrapes:
    # More requests and errors than before, but 9 new errors out of 1 new request: a restart.
    before = Pod().serve(10).scrape()
    return {"a": before}, {"a": Pod().serve(2).serve(9, 500).scrape()}


def restart_seen_only_in_buckets() -> Scrapes:
    before = Pod().serve(10, seconds=0.004).scrape()
    return {"a": before}, {"a": Pod().serve(12, seconds=2.0).scrape()}


def gone_pod_ignored() -> Scrapes:
    a, b = Pod().serve(5), Pod().serve(50, 500)
    before = {"a": a.scrape(), "b": b.scrape()}
    a.serve(3)
    return before, {"a": a.scrape()}


def pods_summed() -> Scrapes:
    a, b = Pod().serve(5), Pod()
    before = {"a": a.scrape(), "b": b.scrape()}
    a.serve(3, 503)
    b.serve(7)
    return before, {"a": a.scrape(), "b": b.scrape(), "c": Pod().serve(1, 500).scrape()}


def idle() -> Scrapes:
    a, b = Pod().serve(5), Pod().serve(5)
    before = {"a": a.scrape(), "b": b.scrape()}
    return before, {"a": a.scrape(), "b": b.scrape()}


@pytest.mark.parametrize(
    ("scrapes", "requests", "errors", "pods"),
    [
        pytest.param(new_pod, 10, 0, 1, id="new-pod-counts-from-zero"),
        pytest.param(served_since_last_scrape, 17, 2, 1, id="delta-since-last-scrape"),
        pytest.param(restarted, 5, 1, 1, id="restart-counts-from-zero"),
        pytest.param(restart_hidden_in_totals, 11, 9, 1, id="restart-hidden-in-totals"),
        pytest.param(restart_seen_only_in_buckets, 12, 0, 1, id="restart-seen-in-buckets"),
        pytest.param(gone_pod_ignored, 3, 0, 1, id="gone-pod-ignored"),
        pytest.param(pods_summed, 11, 4, 3, id="pods-summed"),
        pytest.param(idle, 0, 0, 2, id="no-requests"),
    ],
)
def test_window_counts_what_pods_served_between_scrapes(
    scrapes: Callable[[], Scrapes], requests: int, errors: int, pods: int
) -> None:
    previous, current = scrapes()

    stats = window(previous, current)

    assert (stats.requests, stats.errors, stats.pods) == (requests, errors, pods)


def test_a_window_without_requests_has_no_p99_and_no_error_rate() -> None:
    stats = window(*idle())

    assert stats.p99_seconds is None
    assert stats.error_rate == 0.0


def test_no_p99_without_requests_even_if_the_histogram_ran_ahead() -> None:
    # A scrape reads the counter before the histogram, so a request finishing in between
    # shows as a latency observation without a request.
    ran_ahead = PodSample(requests=0, errors=0, buckets=(0,) * 5 + (1,) * 12)

    stats = window({}, {"a": ran_ahead})

    assert (stats.requests, stats.p99_seconds) == (0, None)


def test_error_rate_is_errors_per_request() -> None:
    assert WindowStats(requests=50, errors=6, p99_seconds=0.1, pods=1).error_rate == 0.12


def one_pod_two_buckets() -> Scrapes:
    return {}, {"a": Pod().serve(50, seconds=0.004).serve(50, seconds=0.008).scrape()}


def split_across_pods() -> Scrapes:
    # Per-pod p99s are 4.975ms and 9.95ms; only the summed histogram gives 9.9ms.
    a = Pod().serve(50, seconds=0.004).scrape()
    b = Pod().serve(50, seconds=0.008).scrape()
    return {}, {"a": a, "b": b}


def slow_traffic_before_the_window() -> Scrapes:
    pod = Pod().serve(100, seconds=2.0)
    before = pod.scrape()
    pod.serve(50, seconds=0.004).serve(50, seconds=0.008)
    return {"a": before}, {"a": pod.scrape()}


def beyond_the_last_bound() -> Scrapes:
    return {}, {"a": Pod().serve(10, seconds=20.0).scrape()}


@pytest.mark.parametrize(
    ("scrapes", "p99"),
    [
        # rank 99 of 100 falls in (5ms, 10ms] holding 50: 5ms + 5ms * 49/50.
        pytest.param(one_pod_two_buckets, 0.0099, id="interpolated-in-bucket"),
        pytest.param(split_across_pods, 0.0099, id="summed-over-pods"),
        pytest.param(slow_traffic_before_the_window, 0.0099, id="only-the-window"),
        pytest.param(beyond_the_last_bound, 10.0, id="inf-bucket-gives-highest-bound"),
    ],
)
def test_window_p99_from_summed_bucket_deltas(scrapes: Callable[[], Scrapes], p99: float) -> None:
    assert window(*scrapes()).p99_seconds == pytest.approx(p99)


# --- quantile --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "bounds", "cumulative", "expected"),
    [
        pytest.param(0.99, (1, 2, 4), (0, 0, 0, 0), None, id="empty-histogram"),
        pytest.param(0.5, (1, 2, 4), (10, 10, 10, 10), 0.5, id="first-bucket-starts-at-zero"),
        pytest.param(0.25, (1, 2, 4), (0, 10, 20, 20), 1.5, id="interpolated-in-bucket"),
        pytest.param(0.75, (1, 2, 4), (2, 4, 8, 8), 3.0, id="wide-bucket"),
        pytest.param(0.99, (1, 2, 4), (0, 0, 1, 10), 4.0, id="inf-bucket-gives-highest-bound"),
        pytest.param(1.0, (1, 2, 4), (5, 10, 10, 10), 2.0, id="q1-upper-bound-of-last-used"),
        pytest.param(0.0, (1, 2, 4), (0, 10, 10, 10), 0.0, id="q0-empty-first-bucket"),
        # Raised to (4, 4, 6, 10): rank 5 is 1 of the 2 in (2, 3].
        pytest.param(0.5, (1, 2, 3), (4, 2, 6, 10), 2.5, id="falling-counts-forced-up"),
        pytest.param(0.2, (-1, 1), (5, 10, 10), -1.0, id="non-positive-first-bound"),
    ],
)
def test_quantile_matches_histogram_quantile(
    q: float, bounds: tuple[float, ...], cumulative: tuple[int, ...], expected: float | None
) -> None:
    result = quantile(q, bounds, cumulative)

    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    ("q", "bounds", "cumulative", "match"),
    [
        pytest.param(1.5, (1, 2), (0, 1, 1), "not between 0 and 1", id="q-above-one"),
        pytest.param(-0.1, (1, 2), (0, 1, 1), "not between 0 and 1", id="q-below-zero"),
        pytest.param(math.nan, (1, 2), (0, 1, 1), "not between 0 and 1", id="q-nan"),
        pytest.param(0.5, (1, 2), (0, 1), "need 3 counts", id="no-inf-count"),
        pytest.param(0.5, (), (1,), "at least one", id="no-finite-bound"),
        pytest.param(0.5, (2, 1), (0, 1, 1), "strictly increasing", id="falling-bounds"),
        pytest.param(0.5, (1, math.inf), (0, 1, 1), "finite", id="inf-among-bounds"),
        pytest.param(0.5, (1, 2), (0, -1, 1), "negative", id="negative-count"),
    ],
)
def test_quantile_refuses_what_is_no_histogram(
    q: float, bounds: tuple[float, ...], cumulative: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        quantile(q, bounds, cumulative)


# --- judge -----------------------------------------------------------------------------


def stats(requests: int, errors: int = 0, p99: float | None = 0.0042) -> WindowStats:
    return WindowStats(requests=requests, errors=errors, p99_seconds=p99, pods=2)


@pytest.mark.parametrize(
    ("window_stats", "min_requests", "max_latency", "expected"),
    [
        pytest.param(
            stats(12),
            50,
            0.25,
            Judgement("Inconclusive", "12 requests, fewer than the 50 needed: inconclusive"),
            id="too-few-requests",
        ),
        pytest.param(
            stats(12, errors=6),
            50,
            0.25,
            Judgement(
                "Inconclusive",
                "12 requests, fewer than the 50 needed: inconclusive (6 of them failed with 5xx)",
            ),
            id="too-few-even-with-errors",
        ),
        pytest.param(
            stats(1),
            50,
            0.25,
            Judgement("Inconclusive", "1 request, fewer than the 50 needed: inconclusive"),
            id="one-request",
        ),
        pytest.param(
            stats(50, errors=6),
            50,
            0.25,
            Judgement("Failed", "error rate 12.0% (6/50) exceeds 1.0%"),
            id="error-rate-breach",
        ),
        pytest.param(
            stats(100, errors=1),
            50,
            0.25,
            Judgement("Passed", "100 requests, error rate 1.0%, p99 4.2ms: within limits"),
            id="error-rate-at-limit-passes",
        ),
        pytest.param(
            stats(2500, errors=26),
            50,
            0.25,
            Judgement("Failed", "error rate 1.04% (26/2500) exceeds 1.00%"),
            id="narrow-breach-shows-more-digits",
        ),
        pytest.param(
            stats(50, p99=0.31),
            50,
            0.25,
            Judgement("Failed", "p99 310ms exceeds 250ms"),
            id="latency-breach",
        ),
        pytest.param(
            stats(50, errors=6, p99=0.31),
            50,
            0.25,
            Judgement("Failed", "error rate 12.0% (6/50) exceeds 1.0%; p99 310ms exceeds 250ms"),
            id="both-breaches",
        ),
        pytest.param(
            stats(50, p99=0.00025),
            50,
            0.0002,
            Judgement("Failed", "p99 0.25ms exceeds 0.2ms"),
            id="sub-millisecond-breach",
        ),
        pytest.param(
            stats(50, p99=0.25),
            50,
            0.25,
            Judgement("Passed", "50 requests, error rate 0.0%, p99 250ms: within limits"),
            id="latency-at-limit-passes",
        ),
        pytest.param(
            stats(50, p99=1.5),
            50,
            1.0,
            Judgement("Failed", "p99 1.5s exceeds 1s"),
            id="breach-in-seconds",
        ),
        pytest.param(
            stats(50, p99=3.0),
            50,
            None,
            Judgement("Passed", "50 requests, error rate 0.0%, p99 3s: within limits"),
            id="no-latency-limit",
        ),
        pytest.param(
            stats(50),
            50,
            0.25,
            Judgement("Passed", "50 requests, error rate 0.0%, p99 4.2ms: within limits"),
            id="within-limits",
        ),
        pytest.param(
            stats(50, p99=None),
            50,
            0.25,
            Judgement(
                "Inconclusive",
                "50 requests, error rate 0.0%, but no latency observed: p99 unknown, inconclusive",
            ),
            id="latency-limit-without-latency",
        ),
        pytest.param(
            stats(0, p99=None),
            0,
            None,
            Judgement("Passed", "0 requests, error rate 0.0%, p99 unknown: within limits"),
            id="nothing-required-nothing-served",
        ),
    ],
)
def test_judge(
    window_stats: WindowStats,
    min_requests: int,
    max_latency: float | None,
    expected: Judgement,
) -> None:
    assert judge(window_stats, min_requests, 0.01, max_latency) == expected


# --- duration_seconds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("1m30s", 90.0, id="minutes-and-seconds"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("1.5h", 5400.0, id="fractional-hours"),
        pytest.param("1h2m3s4ms", 3723.004, id="every-unit"),
        pytest.param("0s", 0.0, id="zero"),
    ],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("30", id="no-unit"),
        pytest.param("s", id="no-number"),
        pytest.param("-1s", id="negative"),
        pytest.param("1.s", id="dot-without-fraction"),
        pytest.param(".5s", id="fraction-without-integer"),
        pytest.param("1d", id="days"),
        pytest.param("1us", id="microseconds"),
        pytest.param("1e3s", id="exponent"),
        pytest.param("30s\n", id="trailing-newline"),
        pytest.param(" 30s", id="leading-space"),
        pytest.param("1 s", id="inner-space"),
        pytest.param("\u0663s", id="non-ascii-digit"),
    ],
)
def test_duration_seconds_refuses_what_the_crd_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(text)


# --- consecutive_failures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "run"),
    [
        pytest.param([], 0, id="no-history"),
        pytest.param(["Failed"], 1, id="one-failure"),
        pytest.param(["Passed", "Failed", "Failed"], 2, id="trailing-failures"),
        pytest.param(["Failed", "Passed"], 0, id="passed-ends-the-run"),
        pytest.param(["Failed", "Inconclusive", "Failed"], 2, id="inconclusive-skipped"),
        pytest.param(
            ["Failed", "Passed", "Inconclusive", "Failed", "Inconclusive"],
            1,
            id="inconclusive-neither-adds-nor-ends",
        ),
        pytest.param(["Inconclusive"], 0, id="inconclusive-only"),
        pytest.param(["Failed", "Unknown", "Failed"], 1, id="unknown-verdict-ends-the-run"),
    ],
)
def test_consecutive_failures(verdicts: list[str], run: int) -> None:
    assert consecutive_failures(verdicts) == run


# --- PodSample in a status -------------------------------------------------------------


def stored_sample() -> PodSample:
    return Pod().serve(3).serve(1, 503, seconds=0.3).scrape()


def test_a_sample_survives_a_status_round_trip() -> None:
    sample = stored_sample()

    doc = json.loads(json.dumps(sample.to_status()))

    assert doc == {
        "requests": 4,
        "errors": 1,
        "buckets": [0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4],
    }
    assert PodSample.from_status(doc) == sample


def with_(**changes: Any) -> dict[str, Any]:
    doc = stored_sample().to_status()
    doc.update(changes)
    return {key: value for key, value in doc.items() if value is not ...}


BUCKETS = stored_sample().to_status()["buckets"]


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(with_(requests=...), id="missing-requests"),
        pytest.param(with_(buckets=...), id="missing-buckets"),
        pytest.param(with_(requests="4"), id="requests-as-string"),
        pytest.param(with_(requests=4.0), id="requests-as-float"),
        pytest.param(with_(errors=True), id="errors-as-bool"),
        pytest.param(with_(errors=-1), id="negative-errors"),
        pytest.param(with_(errors=5), id="more-errors-than-requests"),
        pytest.param(with_(buckets=BUCKETS[:-1]), id="too-few-buckets"),
        pytest.param(with_(buckets=[*BUCKETS, 4]), id="too-many-buckets"),
        pytest.param(with_(buckets=[*BUCKETS[:-1], "4"]), id="bucket-as-string"),
        pytest.param(with_(buckets="0" * len(BUCKETS)), id="buckets-as-string"),
        pytest.param(with_(buckets=None), id="buckets-null"),
        pytest.param(with_(buckets=[*BUCKETS[:-1], 2]), id="buckets-not-cumulative"),
        pytest.param([4, 1, BUCKETS], id="not-a-mapping"),
    ],
)
def test_malformed_stored_samples_are_none(doc: Any) -> None:
    assert PodSample.from_status(doc) is None


def test_the_malformed_cases_start_from_a_valid_document() -> None:
    assert PodSample.from_status(with_()) == stored_sample()


@pytest.mark.parametrize(
    ("requests", "errors", "buckets", "match"),
    [
        pytest.param(1, 0, (1,) * 16, "expected 17 bucket counts", id="too-few-buckets"),
        pytest.param(1, 2, (1,) * 17, "2 errors out of only 1", id="more-errors-than-requests"),
        pytest.param(-1, 0, (0,) * 17, "negative", id="negative-requests"),
        pytest.param(1, 0, (1,) + (0,) * 16, "not cumulative", id="falling-buckets"),
    ],
)
def test_a_sample_refuses_impossible_counts(
    requests: int, errors: int, buckets: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        PodSample(requests=requests, errors=errors, buckets=buckets)

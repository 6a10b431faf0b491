"""Canary analysis: a verdict on a canary from its pods' ``/metrics`` scrapes.

The model server exposes cumulative counters (``kiln_server.contract``): requests by status
code since the process started, and a latency histogram. A canary is judged on what happened
*between* two scrapes, so the reconciler stores each pod's last sample in the
InferenceService's status (:meth:`PodSample.to_status`), scrapes again one interval later,
and asks this module for the window between the two and a verdict on it. Counters restart at
zero when a pod restarts, pods come and go during a rollout, and a p99 over several pods must
come from their summed histograms (a mean of per-pod p99s means nothing): those rules live
here, in plain functions over frozen dataclasses, so they are tested with tables and the
reconciler keeps only the HTTP scrape and the status write.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, TypeGuard

from prometheus_client.parser import text_string_to_metric_families

from kiln_server import contract

Verdict = Literal["Passed", "Failed", "Inconclusive"]

_BOUNDS: tuple[float, ...] = (*contract.LATENCY_BUCKETS, math.inf)
_BUCKET_SAMPLE = f"{contract.REQUEST_DURATION}_bucket"
_P99 = 0.99


@dataclass(frozen=True)
class PodSample:
    """The cumulative counters of one pod at one scrape, for one model version."""

    requests: int
    """Finished infer requests, summed over status codes."""
    errors: int
    """Those of :attr:`requests` answered with a 5xx code."""
    buckets: tuple[int, ...]
    """Cumulative counts per bound of ``contract.LATENCY_BUCKETS``, then ``+Inf``."""

    def __post_init__(self) -> None:
        if len(self.buckets) != len(_BOUNDS):
            raise ValueError(f"expected {len(_BOUNDS)} bucket counts, got {len(self.buckets)}")
        if min(self.requests, self.errors, *self.buckets) < 0:
            raise ValueError(f"counts must not be negative: {self}")
        if self.errors > self.requests:
            raise ValueError(f"{self.errors} errors out of only {self.requests} requests")
        if any(low > high for low, high in pairwise(self.buckets)):
            raise ValueError(f"bucket counts are not cumulative: {list(self.buckets)}")

    def to_status(self) -> dict[str, Any]:
        """The sample as JSON-ready data for an object's status."""
        return {"requests": self.requests, "errors": self.errors, "buckets": list(self.buckets)}

    @classmethod
    def from_status(cls, doc: Mapping[str, Any]) -> PodSample | None:
        """The sample :meth:`to_status` wrote, or ``None`` for anything else (a status edited
        by hand, or written by a release with other buckets): the caller then starts that pod
        afresh instead of failing the reconcile."""
        if not isinstance(doc, Mapping):
            return None
        requests, errors, buckets = doc.get("requests"), doc.get("errors"), doc.get("buckets")
        if not (_is_count(requests) and _is_count(errors) and isinstance(buckets, list)):
            return None
        if not all(_is_count(count) for count in buckets):
            return None
        try:
            return cls(requests=requests, errors=errors, buckets=tuple(buckets))
        except ValueError:
            return None


def _is_count(value: object) -> TypeGuard[int]:
    # bool is an int to Python, but True is no request count.
    return isinstance(value, int) and not isinstance(value, bool)


class ScrapeError(ValueError):
    """The text is not a Prometheus exposition that this operator can read."""


def parse_sample(text: str, model: str, version: str) -> PodSample:
    """The sample of ``model`` at ``version`` (``""`` for an unversioned model) in a
    ``/metrics`` scrape.

    Series of other models or versions are ignored. A server that has served nothing yet
    exposes no request series, and that reads as zeros. Status codes that are not numbers are
    counted as requests but not as errors. Raises :class:`ScrapeError` if the text does not
    parse, if a value is not a count, or if the latency histogram's buckets are not exactly
    the contract's (a server built with other buckets cannot be compared bucket by bucket).
    """
    requests = errors = 0
    codes: set[str] = set()
    buckets: dict[float, int] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("model") != model or labels.get("version") != version:
                    continue
                if sample.name == contract.REQUESTS_TOTAL:
                    code = labels.get("code", "")
                    if code in codes:
                        raise ScrapeError(f"{contract.REQUESTS_TOTAL} repeats code={code!r}")
                    codes.add(code)
                    count = _count(sample.value, f"{contract.REQUESTS_TOTAL}{{code={code!r}}}")
                    requests += count
                    if code.isdigit() and 500 <= int(code) <= 599:
                        errors += count
                elif sample.name == _BUCKET_SAMPLE:
                    bound = _bound(labels.get("le"))
                    if bound in buckets:
                        raise ScrapeError(f"{_BUCKET_SAMPLE} repeats le={labels['le']!r}")
                    buckets[bound] = _count(sample.value, f"{_BUCKET_SAMPLE}{{le={bound}}}")
    except ScrapeError:
        raise
    except ValueError as error:
        # prometheus_client's parser says only ValueError, sometimes with no text at all.
        raise ScrapeError(f"not a Prometheus text exposition: {error or 'unparseable'}") from error
    if not buckets:
        return PodSample(requests=requests, errors=errors, buckets=(0,) * len(_BOUNDS))
    missing = [str(bound) for bound in _BOUNDS if bound not in buckets]
    if missing:
        raise ScrapeError(f"{_BUCKET_SAMPLE} lacks the buckets le={', '.join(missing)}")
    try:
        return PodSample(
            requests=requests, errors=errors, buckets=tuple(buckets[b] for b in _BOUNDS)
        )
    except ValueError as error:
        raise ScrapeError(f"{contract.REQUEST_DURATION} of {model}: {error}") from error


def _bound(le: str | None) -> float:
    if le is None:
        raise ScrapeError(f"{_BUCKET_SAMPLE} without an le label")
    try:
        bound = float(le)
    except ValueError:
        raise ScrapeError(f"{_BUCKET_SAMPLE} has le={le!r}, not a number") from None
    if bound not in _BOUNDS:
        raise ScrapeError(
            f"{_BUCKET_SAMPLE} has a bucket le={le!r} that is not among the contract's bounds"
            f" {list(contract.LATENCY_BUCKETS)} and +Inf: the server and the operator disagree"
            " on kiln_server.contract.LATENCY_BUCKETS"
        )
    return bound


def _count(value: float, series: str) -> int:
    # The parser gives an int for "1" and a float for "1.0"; both are counts.
    value = float(value)
    if not (math.isfinite(value) and value >= 0 and value.is_integer()):
        raise ScrapeError(f"{series} is {value}, not a count")
    return int(value)


@dataclass(frozen=True)
class WindowStats:
    """What a canary's pods served between two scrapes."""

    requests: int
    errors: int
    p99_seconds: float | None
    """The 99th percentile latency; ``None`` when there were no requests."""
    pods: int
    """Pods whose deltas were summed: every pod of the current scrape, served or not."""

    @property
    def error_rate(self) -> float:
        """Errors per request, 0.0 when there were no requests."""
        return self.errors / self.requests if self.requests else 0.0


def window(previous: Mapping[str, PodSample], current: Mapping[str, PodSample]) -> WindowStats:
    """The traffic between two scrapes of the same pods, keyed by pod name.

    A pod absent from ``previous`` (new, or never scraped) counts from zero. So does a pod
    whose counters went down, or whose deltas are impossible (more new errors than new
    requests, a histogram delta that is not cumulative): its process restarted, so its
    counters restarted, and ``current`` is what it served since (what it served between the
    last scrape and the restart is lost, as it is to Prometheus' ``increase()``). Pods only
    in ``previous`` are gone and ignored.
    """
    requests = errors = 0
    buckets = [0] * len(_BOUNDS)
    for pod, now in current.items():
        delta = _delta(previous.get(pod), now)
        requests += delta.requests
        errors += delta.errors
        buckets = [total + count for total, count in zip(buckets, delta.buckets, strict=True)]
    p99 = quantile(_P99, contract.LATENCY_BUCKETS, buckets) if requests else None
    return WindowStats(requests=requests, errors=errors, p99_seconds=p99, pods=len(current))


def _delta(before: PodSample | None, now: PodSample) -> PodSample:
    if before is None:
        return now
    try:
        return PodSample(
            requests=now.requests - before.requests,
            errors=now.errors - before.errors,
            buckets=tuple(n - b for n, b in zip(now.buckets, before.buckets, strict=True)),
        )
    except ValueError:
        # A negative or inconsistent delta: only a restart between the scrapes makes one.
        return now


def quantile(q: float, bounds: Sequence[float], cumulative: Sequence[int]) -> float | None:
    """The ``q``-quantile of a histogram, as Prometheus' ``histogram_quantile`` computes it.

    ``bounds`` are the finite upper bounds, strictly increasing; ``cumulative`` holds the
    count at or below each of them and then the ``+Inf`` count. The quantile is interpolated
    linearly inside the bucket it falls in, the first bucket starting at 0 (or, as in
    Prometheus, the first bound itself if that is not positive). A quantile in the ``+Inf``
    bucket is the highest finite bound. Counts that go down are raised to the running maximum,
    as Prometheus does. ``None`` when the histogram is empty (Prometheus says NaN); 0.0 for
    ``q == 0`` with an empty first bucket (where Prometheus divides zero by zero).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    if not bounds:
        raise ValueError("a histogram needs at least one finite bucket bound")
    if len(cumulative) != len(bounds) + 1:
        raise ValueError(
            f"{len(bounds)} bounds need {len(bounds) + 1} counts, not {len(cumulative)}"
        )
    if not all(math.isfinite(bound) for bound in bounds) or any(
        low >= high for low, high in pairwise(bounds)
    ):
        raise ValueError(f"bounds must be finite and strictly increasing: {list(bounds)}")
    if any(count < 0 for count in cumulative):
        raise ValueError(f"counts must not be negative: {list(cumulative)}")
    counts: list[int] = []
    for count in cumulative:
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total == 0:
        return None
    rank = q * total
    b = next(i for i, count in enumerate(counts) if count >= rank)
    if b == len(bounds):
        return float(bounds[-1])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start = bounds[b - 1] if b else 0.0
    below = counts[b - 1] if b else 0
    inside = counts[b] - below
    if inside == 0:
        return float(start)
    return start + (bounds[b] - start) * ((rank - below) / inside)


@dataclass(frozen=True)
class Judgement:
    """A verdict on one window, with a sentence that gives the measured values."""

    verdict: Verdict
    message: str


def judge(
    stats: WindowStats,
    min_requests: int,
    max_error_rate: float,
    max_latency_p99_seconds: float | None,
) -> Judgement:
    """Whether a window passes the analysis limits.

    Too few requests is ``Inconclusive`` whatever they were: a handful of errors in a handful
    of requests is not yet a rate (the message still says how many failed). Otherwise the
    window fails on an error rate above ``max_error_rate`` or a p99 above
    ``max_latency_p99_seconds`` (when set), naming every limit it breaks. A latency limit
    that cannot be checked (requests counted but no latency observed) is ``Inconclusive``.
    """
    n = stats.requests
    if n < min_requests:
        message = f"{_requests(n)}, fewer than the {min_requests} needed: inconclusive"
        if stats.errors:
            message += f" ({stats.errors} of them failed with 5xx)"
        return Judgement("Inconclusive", message)
    breaches: list[str] = []
    if stats.error_rate > max_error_rate:
        rate, limit = _distinct(_percent, stats.error_rate, max_error_rate)
        breaches.append(f"error rate {rate} ({stats.errors}/{n}) exceeds {limit}")
    p99 = stats.p99_seconds
    if max_latency_p99_seconds is not None and p99 is not None and p99 > max_latency_p99_seconds:
        measured, limit = _distinct(_duration, p99, max_latency_p99_seconds)
        breaches.append(f"p99 {measured} exceeds {limit}")
    if breaches:
        return Judgement("Failed", "; ".join(breaches))
    rate = _percent(stats.error_rate, 1)
    if max_latency_p99_seconds is not None and p99 is None:
        return Judgement(
            "Inconclusive",
            f"{_requests(n)}, error rate {rate}, but no latency observed: p99 unknown,"
            " inconclusive",
        )
    latency = "unknown" if p99 is None else _duration(p99, 1)
    return Judgement("Passed", f"{_requests(n)}, error rate {rate}, p99 {latency}: within limits")


def _requests(n: int) -> str:
    return f"{n} request" if n == 1 else f"{n} requests"


def _distinct(show: Callable[[float, int], str], value: float, limit: float) -> tuple[str, str]:
    # A breach reads "1.0% exceeds 1.0%" when both round alike: add digits until they differ.
    shown = show(value, 1), show(limit, 1)
    for digits in range(2, 6):
        if shown[0] != shown[1]:
            break
        shown = show(value, digits), show(limit, digits)
    return shown


def _percent(rate: float, digits: int) -> str:
    return f"{rate * 100:.{digits}f}%"


def _duration(seconds: float, digits: int) -> str:
    if seconds >= 1:
        return f"{_trim(f'{seconds:.{digits + 1}f}')}s"
    milliseconds = seconds * 1000
    extra = 2 if milliseconds < 1 else 0
    return f"{_trim(f'{milliseconds:.{digits + extra}f}')}ms"


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_WHOLE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a Go-style duration as the CRDs accept it (``30s``, ``1m30s``, ``250ms``,
    ``1.5h``); raises ``ValueError`` on anything else, signs and spaces included."""
    if _DURATION_WHOLE.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 1m30s, 250ms or 1.5h")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION.findall(text))


def consecutive_failures(verdicts: Sequence[str]) -> int:
    """How many ``Failed`` verdicts end the history (oldest first).

    ``Inconclusive`` is skipped over: a window with too little traffic says nothing about the
    canary, so it neither adds to a run of failures nor ends one (otherwise a canary failing
    under bursty traffic would never reach its failure limit). ``Passed``, or any verdict this
    release does not know, ends the run.
    """
    run = 0
    for verdict in reversed(verdicts):
        if verdict == "Failed":
            run += 1
        elif verdict != "Inconclusive":
            break
    return run

"""Input drift: population stability index between recent live rows and the training baseline.

The hot path only copies each batch's rows into a fixed-size ring buffer; binning and PSI are
computed when ``/metrics`` is scraped, so drift costs a memcpy per ONNX Runtime call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kiln_server.baseline import Baseline, BaselineError


class InputSpec(Protocol):
    """What drift needs to know of a model input (a ``runtime.TensorSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...


def drift_input(baseline: Baseline, inputs: Sequence[InputSpec]) -> tuple[str, int]:
    """The model input ``baseline`` describes and its column count; BaselineError when the
    baseline names no input of the model or one that is not numeric [rows, features]
    (:class:`DriftMonitor` then checks each feature's column against the width)."""
    name = baseline.input_name or inputs[0].name
    spec = next((s for s in inputs if s.name == name), None)
    if spec is None:
        raise BaselineError(f"baseline.json names input {name!r}, which the model does not have")
    if len(spec.shape) != 2 or spec.datatype in ("BYTES", "BOOL"):
        raise BaselineError(
            f"drift needs a numeric 2-D input [rows, features]; {name!r} is "
            f"{spec.datatype} {list(spec.shape)}"
        )
    columns = spec.shape[1]
    if columns < 0:
        columns = 1 + max(feature.column for feature in baseline.features)
    return name, columns


# Empty bins would make PSI infinite; the usual remedy is a small floor on both shares.
_SHARE_FLOOR = 1e-4


def population_stability_index(expected: np.ndarray, actual_counts: np.ndarray) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, with shares floored to stay finite."""
    total = float(actual_counts.sum())
    if total == 0:
        return 0.0
    actual = np.maximum(actual_counts / total, _SHARE_FLOOR)
    expected = np.maximum(expected, _SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class DriftReport:
    rows: int
    per_feature: dict[str, float]

    @property
    def overall(self) -> float:
        return sum(self.per_feature.values()) / len(self.per_feature) if self.per_feature else 0.0


class DriftMonitor:
    """A sliding window of the last ``window_rows`` live rows of one 2-D input."""

    def __init__(self, baseline: Baseline, input_name: str, columns: int, window_rows: int):
        for feature in baseline.features:
            if feature.column >= columns:
                raise BaselineError(
                    f"baseline feature {feature.name!r} is column {feature.column}, "
                    f"but input {input_name!r} has {columns} columns"
                )
        self.baseline = baseline
        self.input_name = input_name
        self._window = np.zeros((window_rows, columns), dtype=np.float64)
        self._next = 0
        self._rows = 0
        self._lock = threading.Lock()

    def observe(self, rows: np.ndarray) -> None:
        """Append a batch of live rows (shape [n, columns]) to the window.

        With a dynamic feature dimension a request may carry more columns than the baseline
        describes (the extra ones are not watched) or fewer (the batch cannot be compared
        and is skipped); either way serving it must not fail because of drift.
        """
        columns = self._window.shape[1]
        if rows.ndim != 2 or rows.shape[1] < columns:
            return
        rows = rows[:, :columns]
        capacity = self._window.shape[0]
        if rows.shape[0] >= capacity:
            rows = rows[-capacity:]
        count = rows.shape[0]
        with self._lock:
            end = self._next + count
            if end <= capacity:
                self._window[self._next : end] = rows
            else:
                split = capacity - self._next
                self._window[self._next :] = rows[:split]
                self._window[: count - split] = rows[split:]
            self._next = end % capacity
            self._rows = min(self._rows + count, capacity)

    def report(self) -> DriftReport:
        with self._lock:
            window = self._window[: self._rows].copy()
        per_feature: dict[str, float] = {}
        if window.shape[0]:
            for feature in self.baseline.features:
                bins = np.searchsorted(feature.edges, window[:, feature.column], side="right")
                counts = np.bincount(bins, minlength=feature.fractions.size)
                per_feature[feature.name] = population_stability_index(feature.fractions, counts)
        return DriftReport(rows=window.shape[0], per_feature=per_feature)

"""The ``baseline.json`` format: per-feature statistics of the training data for drift.

A training script writes it next to ``model.onnx`` with :func:`write_baseline` (numpy only,
no ONNX Runtime needed), or produces the same JSON itself::

    {
      "format": "kiln.baseline/v1",
      "input": "input",              # optional: the model input the features are columns of
      "rows": 10000,                 # rows of training data summarised (informational)
      "features": [
        {"name": "f0",               # label value of kiln_drift_psi{feature=...}
         "column": 0,                # column of the 2-D input [N, F] this feature is
         "edges": [-1.28, -0.84, ...],   # k-1 strictly increasing cut points
         "fractions": [0.1, 0.1, ...]}   # k fractions of training rows per bin, sum 1
      ]
    }

Bin ``i`` of a feature holds values ``x`` with ``edges[i-1] <= x < edges[i]`` (the first bin
is open below, the last open above), i.e. ``numpy.searchsorted(edges, x, side="right")``.
:func:`write_baseline` cuts at training-data quantiles so each bin holds about the same share;
repeated quantiles (discrete features) are merged so edges stay strictly increasing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

FORMAT: Final = "kiln.baseline/v1"
DEFAULT_BINS: Final = 10


@dataclass(frozen=True)
class FeatureBaseline:
    name: str
    column: int
    edges: np.ndarray  # float64, strictly increasing, len k-1
    fractions: np.ndarray  # float64, len k, sums to 1


@dataclass(frozen=True)
class Baseline:
    input_name: str | None
    features: tuple[FeatureBaseline, ...]


class BaselineError(ValueError):
    """``baseline.json`` is unreadable or does not follow the documented format."""


def compute_baseline(
    x: np.ndarray,
    feature_names: Sequence[str] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    input_name: str | None = None,
) -> dict[str, Any]:
    """The baseline document of a 2-D array of training rows (rows x features)."""
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] == 0:
        raise BaselineError(f"training data must be a non-empty 2-D array, got shape {data.shape}")
    if bins < 2:
        raise BaselineError(f"bins must be at least 2, got {bins}")
    names = list(feature_names) if feature_names is not None else None
    if names is not None and len(names) != data.shape[1]:
        raise BaselineError(f"{len(names)} feature names for {data.shape[1]} columns")
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    features = []
    for column in range(data.shape[1]):
        values = data[:, column]
        values = values[np.isfinite(values)]
        edges = np.unique(np.quantile(values, quantiles)) if values.size else np.array([0.0])
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
        fractions = counts / max(values.size, 1)
        features.append(
            {
                "name": names[column] if names is not None else f"f{column}",
                "column": column,
                "edges": edges.tolist(),
                "fractions": fractions.tolist(),
            }
        )
    document: dict[str, Any] = {"format": FORMAT, "rows": int(data.shape[0]), "features": features}
    if input_name is not None:
        document["input"] = input_name
    return document


def write_baseline(
    x: np.ndarray,
    path: str | os.PathLike[str],
    feature_names: Sequence[str] | None = None,
    *,
    bins: int = DEFAULT_BINS,
    input_name: str | None = None,
) -> None:
    """Write ``baseline.json`` for training rows ``x`` (rows x features) to ``path``."""
    document = compute_baseline(x, feature_names, bins=bins, input_name=input_name)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(document, out)


def parse_baseline(document: Any) -> Baseline:
    """Check a decoded ``baseline.json`` against the format; precise errors otherwise."""
    if not isinstance(document, dict):
        raise BaselineError("baseline must be a JSON object")
    if document.get("format", FORMAT) != FORMAT:
        raise BaselineError(f"unknown baseline format {document.get('format')!r}, want {FORMAT}")
    input_name = document.get("input")
    if input_name is not None and not isinstance(input_name, str):
        raise BaselineError("baseline 'input' must be a string")
    raw_features = document.get("features")
    if not isinstance(raw_features, list) or not raw_features:
        raise BaselineError("baseline 'features' must be a non-empty list")
    features = []
    for position, raw in enumerate(raw_features):
        features.append(_parse_feature(position, raw))
    return Baseline(input_name=input_name, features=tuple(features))


def _parse_feature(position: int, raw: Any) -> FeatureBaseline:
    where = f"baseline feature #{position}"
    if not isinstance(raw, dict):
        raise BaselineError(f"{where} must be an object")
    name = raw.get("name", f"f{position}")
    column = raw.get("column", position)
    if not isinstance(name, str) or not isinstance(column, int) or column < 0:
        raise BaselineError(f"{where}: 'name' must be a string and 'column' an integer >= 0")
    try:
        edges = np.asarray(raw["edges"], dtype=np.float64)
        fractions = np.asarray(raw["fractions"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise BaselineError(f"{where} ({name}): needs numeric 'edges' and 'fractions'") from error
    if edges.ndim != 1 or fractions.ndim != 1 or fractions.size != edges.size + 1:
        raise BaselineError(
            f"{where} ({name}): {edges.size} edges need {edges.size + 1} fractions, "
            f"got {fractions.size}"
        )
    if edges.size and not np.all(np.diff(edges) > 0):
        raise BaselineError(f"{where} ({name}): edges must be strictly increasing")
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0, atol=1e-3):
        raise BaselineError(f"{where} ({name}): fractions must be >= 0 and sum to 1")
    return FeatureBaseline(name=name, column=column, edges=edges, fractions=fractions)


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read and check ``baseline.json``."""
    try:
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
    except (OSError, json.JSONDecodeError) as error:
        raise BaselineError(f"cannot read baseline {os.fspath(path)}: {error}") from error
    return parse_baseline(document)

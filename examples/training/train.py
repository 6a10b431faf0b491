"""Train a classifier (iris, or the loop example's sensors) and report it to Kiln.

A Kiln training run in full, with no Kiln library: read the run's settings from the
environment the operator sets, train a scikit-learn random forest on the iris data that
ships with scikit-learn (no download), export it to ONNX with skl2onnx, write per-feature
statistics of the training data for drift detection, and write the result document to the
termination message, where the operator reads it.

Environment (set by the operator; defaults make local runs easy):
  KILN_OUTPUT_DIR            where to write model.onnx and baseline.json
  KILN_HP_N_ESTIMATORS       number of trees (default 100)
  KILN_HP_MAX_DEPTH          maximum tree depth (default: unlimited)
  KILN_HP_RANDOM_STATE       seed (default 0)
  KILN_RUN_NUMBER            the run's number: with --dataset sensors, run n trains on the
                             first 40 x 4^(n-1) rows recorded so far (more data each run)
  KILN_TERMINATION_LOG       where to write the result (default /dev/termination-log)

``--dataset sensors`` (examples/loop/) is a synthetic stream of 8 sensor readings whose label
follows a fixed linear rule: each run sees more of it than the last, so a retraining run
produces a better model, which is what the loop example promotes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import train_test_split

INPUT_NAME = "input"
BASELINE_FORMAT = "kiln.baseline/v1"
BASELINE_BINS = 10
#: The kubelet keeps at most this many bytes of a termination message.
MAX_RESULT_BYTES = 4096


def hyperparameter(name: str, default: str | None) -> str | None:
    return os.environ.get(f"KILN_HP_{name}", default)


def feature_baseline(x: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-feature bin edges at training-data quantiles and the share of rows in each bin,
    in the ``kiln.baseline/v1`` format the model server's drift detection reads."""
    quantiles = np.linspace(0.0, 1.0, BASELINE_BINS + 1)[1:-1]
    features = []
    for column, name in enumerate(names):
        values = x[:, column].astype(np.float64)
        edges = np.unique(np.quantile(values, quantiles))
        bins = np.searchsorted(edges, values, side="right")
        counts = np.bincount(bins, minlength=edges.size + 1)
        features.append(
            {
                "name": name,
                "column": column,
                "edges": edges.tolist(),
                "fractions": (counts / values.size).tolist(),
            }
        )
    return {
        "format": BASELINE_FORMAT,
        "input": INPUT_NAME,
        "rows": int(x.shape[0]),
        "features": features,
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: The sensors stream: rows the first run trains on (each run four times more), the most,
#: and the held-out rows every run is scored on.
SENSOR_FIRST_ROWS = 40
SENSOR_MAX_ROWS = 4000
SENSOR_TEST_ROWS = 2000
SENSOR_FEATURES = 8


def _sensor_rows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    weights = np.random.default_rng(42).normal(size=SENSOR_FEATURES)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (count, SENSOR_FEATURES)).astype(np.float32)
    y = (x @ weights + rng.normal(0.0, 0.5, count) > 0).astype(np.int64)
    return x, y


def load_dataset(
    name: str, test_size: float, run_number: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(x_train, y_train, x_test, y_test, feature names) of ``name``."""
    if name == "sensors":
        rows = min(SENSOR_FIRST_ROWS * 4 ** max(run_number - 1, 0), SENSOR_MAX_ROWS)
        x_all, y_all = _sensor_rows(SENSOR_MAX_ROWS, seed=1)
        x_test, y_test = _sensor_rows(SENSOR_TEST_ROWS, seed=2)
        names = [f"s{i}" for i in range(SENSOR_FEATURES)]
        return x_all[:rows], y_all[:rows], x_test, y_test, names
    data = load_iris()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=test_size, random_state=0, stratify=data.target
    )
    names = [name.replace(" (cm)", "").replace(" ", "_") for name in data.feature_names]
    return x_train, y_train, x_test, y_test, names


def train(
    output_dir: Path, test_size: float, dataset: str = "iris", run_number: int = 1
) -> dict[str, Any]:
    """Train, export and describe the model; return the result document."""
    x_train, y_train, x_test, y_test, feature_names = load_dataset(dataset, test_size, run_number)
    max_depth = hyperparameter("MAX_DEPTH", None)
    model = RandomForestClassifier(
        n_estimators=int(hyperparameter("N_ESTIMATORS", "100") or 100),
        max_depth=int(max_depth) if max_depth else None,
        random_state=int(hyperparameter("RANDOM_STATE", "0") or 0),
    )
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 6),
        "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 6),
        "log_loss": round(float(log_loss(y_test, model.predict_proba(x_test))), 6),
    }

    output_dir.mkdir(parents=True, exist_ok=True)
    # Plain tensors out (label and probabilities), not a list of maps: any V2 client reads them.
    onnx_model = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, x_train.shape[1]]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model_path = output_dir / "model.onnx"
    model_path.write_bytes(onnx_model.SerializeToString())
    baseline_path = output_dir / "baseline.json"
    # The live inputs' reference: the training rows, and with few of them (the sensors
    # stream's first runs) the held-out rows too, which come from the same distribution.
    reference = x_train if len(x_train) >= 500 else np.concatenate([x_train, x_test])
    baseline_path.write_text(json.dumps(feature_baseline(reference, feature_names)))
    return {
        "metrics": metrics,
        "artifact": model_path.name,
        "sha256": sha256_of(model_path),
        "baseline": baseline_path.name,
    }


def write_result(document: dict[str, Any], path: Path) -> None:
    text = json.dumps(document, separators=(",", ":"))
    if len(text.encode()) > MAX_RESULT_BYTES:
        raise SystemExit(f"result is {len(text.encode())} bytes, over {MAX_RESULT_BYTES}")
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-size", type=float, default=0.25, help="held-out share of rows")
    parser.add_argument("--dataset", choices=("iris", "sensors"), default="iris")
    args = parser.parse_args(argv)
    run_number = int(os.environ.get("KILN_RUN_NUMBER", "1") or 1)
    output_dir = Path(os.environ.get("KILN_OUTPUT_DIR", "build/output"))
    termination_log = Path(os.environ.get("KILN_TERMINATION_LOG", "/dev/termination-log"))
    document = train(output_dir, args.test_size, args.dataset, run_number)
    write_result(document, termination_log)
    print(json.dumps(document, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

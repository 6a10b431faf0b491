"""Train an iris classifier and report it to Kiln through the result protocol.

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
  KILN_TERMINATION_LOG       where to write the result (default /dev/termination-log)
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


def train(output_dir: Path, test_size: float) -> dict[str, Any]:
    """Train, export and describe the model; return the result document."""
    data = load_iris()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=test_size, random_state=0, stratify=data.target
    )
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
        initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model_path = output_dir / "model.onnx"
    model_path.write_bytes(onnx_model.SerializeToString())
    feature_names = [name.replace(" (cm)", "").replace(" ", "_") for name in data.feature_names]
    baseline_path = output_dir / "baseline.json"
    baseline_path.write_text(json.dumps(feature_baseline(x_train, feature_names)))
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
    args = parser.parse_args(argv)
    output_dir = Path(os.environ.get("KILN_OUTPUT_DIR", "build/output"))
    termination_log = Path(os.environ.get("KILN_TERMINATION_LOG", "/dev/termination-log"))
    document = train(output_dir, args.test_size)
    write_result(document, termination_log)
    print(json.dumps(document, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training example runs as a pod would run it: it writes an ONNX model that ONNX Runtime
loads and that classifies iris, a drift baseline the model server accepts, and a result the
operator's own parser accepts with a digest that matches the file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from sklearn.datasets import load_iris

from kiln_operator.api.trainingjob import TrainingJobSpec
from kiln_operator.decisions.result import parse_result
from kiln_server.baseline import parse_baseline

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "training"
RUN = "iris-example-r1-0123abcd"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run train.py once, as the operator would start it; return its output dir and result."""
    root = tmp_path_factory.mktemp("run")
    output_dir = root / "output" / RUN
    termination_log = root / "termination-log"
    env = {
        **os.environ,
        "KILN_RUN": RUN,
        "KILN_OUTPUT_DIR": str(output_dir),
        "KILN_TERMINATION_LOG": str(termination_log),
        "KILN_HP_N_ESTIMATORS": "25",
        "KILN_HP_MAX_DEPTH": "4",
    }
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), "--test-size", "0.3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return output_dir, termination_log.read_text()


def test_the_result_is_valid_for_the_operator_and_its_digest_matches(
    finished_run: tuple[Path, str],
) -> None:
    output_dir, message = finished_run
    run_uri = f"pvc://kiln-models/iris/{RUN}"
    result = parse_result(message, run_uri, str(output_dir))
    assert result.artifact_uri == f"{run_uri}/model.onnx"
    assert result.baseline_uri == f"{run_uri}/baseline.json"
    assert result.sha256 == hashlib.sha256((output_dir / "model.onnx").read_bytes()).hexdigest()
    assert set(result.metrics) == {"accuracy", "f1_macro", "log_loss"}
    assert result.metrics["accuracy"] >= 0.9
    assert len(message.encode()) <= 4096


def test_the_model_loads_in_onnx_runtime_and_classifies_iris(
    finished_run: tuple[Path, str],
) -> None:
    output_dir, _ = finished_run
    session = ort.InferenceSession(
        str(output_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (model_input,) = session.get_inputs()
    assert (model_input.name, model_input.shape[1]) == ("input", 4)
    data = load_iris()
    label, probabilities = session.run(None, {"input": data.data.astype(np.float32)})
    assert float(np.mean(label == data.target)) > 0.9
    assert probabilities.shape == (150, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_the_baseline_is_what_the_model_servers_drift_detection_reads(
    finished_run: tuple[Path, str],
) -> None:
    output_dir, _ = finished_run
    baseline = parse_baseline(json.loads((output_dir / "baseline.json").read_text()))
    assert baseline.input_name == "input"
    assert [f.name for f in baseline.features] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert all(abs(float(f.fractions.sum()) - 1.0) < 1e-6 for f in baseline.features)


def test_the_manifest_is_a_valid_training_job_of_this_image() -> None:
    (manifest,) = yaml.safe_load_all((EXAMPLE / "trainingjob.yaml").read_text())
    spec = TrainingJobSpec.model_validate(manifest["spec"])
    assert spec.image == "kiln-iris-train:dev"
    assert spec.registration.min_metrics == {"accuracy": 0.9}
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    assert "COPY train.py /app/train.py" in dockerfile
    assert "USER 1000" in dockerfile

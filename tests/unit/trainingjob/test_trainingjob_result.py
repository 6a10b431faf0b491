"""The result protocol: valid termination messages parse and resolve; every malformed one is
refused with a message that names the problem."""

from __future__ import annotations

import json

import pytest

from kiln_operator.decisions.result import InvalidResult, parse_result, resolve_location
from tests.unit.trainingjob.factories import SHA, result

RUN_URI = "pvc://models/iris/iris-r1-0123abcd"
RUN_DIR = "/kiln/output/iris-r1-0123abcd"


def test_a_relative_artifact_resolves_inside_the_runs_output() -> None:
    parsed = parse_result(result(baseline="stats/baseline.json"), RUN_URI, RUN_DIR)
    assert parsed.metrics == {"accuracy": 0.97}
    assert parsed.artifact_uri == f"{RUN_URI}/model.onnx"
    assert parsed.baseline_uri == f"{RUN_URI}/stats/baseline.json"
    assert parsed.sha256 == SHA


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        pytest.param("model.onnx", f"{RUN_URI}/model.onnx", id="relative"),
        pytest.param("./a/../model.onnx", f"{RUN_URI}/model.onnx", id="normalised"),
        pytest.param(f"{RUN_DIR}/m/model.onnx", f"{RUN_URI}/m/model.onnx", id="absolute-inside"),
        pytest.param("s3://bucket/m.onnx", "s3://bucket/m.onnx", id="s3-uri-kept"),
        pytest.param("https://h/m.onnx", "https://h/m.onnx", id="https-uri-kept"),
    ],
)
def test_locations_resolve_to_uris(location: str, expected: str) -> None:
    assert resolve_location(location, RUN_URI, RUN_DIR, "artifact") == expected


def test_a_digest_in_upper_case_is_normalised() -> None:
    assert parse_result(result(sha256=SHA.upper()), RUN_URI, RUN_DIR).sha256 == SHA


def test_metrics_are_optional() -> None:
    assert parse_result(result(metrics=None), RUN_URI, RUN_DIR).metrics == {}


@pytest.mark.parametrize(
    ("message", "expected_error"),
    [
        pytest.param(None, "wrote no result", id="no-message"),
        pytest.param("   ", "wrote no result", id="blank"),
        pytest.param("training done", "not valid JSON", id="not-json"),
        pytest.param("[1, 2]", "must be a JSON object, not an array", id="array"),
        pytest.param(result(sha256=None), "needs 'sha256'", id="missing-digest"),
        pytest.param(result(sha256="abc"), "64 hexadecimal digits", id="short-digest"),
        pytest.param(result(artifact=None), "needs 'artifact'", id="missing-artifact"),
        pytest.param(result(artifact=7), "got a number", id="artifact-number"),
        pytest.param(result(metrics=[1]), "'metrics' must be an object", id="metrics-array"),
        pytest.param(result(metrics={"acc": "high"}), "'acc' must be a number", id="metric-text"),
        pytest.param(result(metrics={"acc": True}), "'acc' must be a number", id="metric-bool"),
        pytest.param('{"metrics": {"acc": NaN}}', "finite", id="metric-nan"),
        pytest.param(result(baseline=3), "'baseline' must be a path", id="baseline-number"),
        pytest.param(result(artifact="../x.onnx"), "inside the run's output", id="escapes-output"),
        pytest.param(result(artifact="/etc/passwd"), "inside KILN_OUTPUT_DIR", id="outside-dir"),
        pytest.param(result(artifact="ftp://h/m.onnx"), "unsupported scheme", id="ftp"),
        pytest.param(
            json.dumps({"metrics": {"m": 1}, "pad": "x" * 5000}), "at most 4096", id="too-big"
        ),
        pytest.param("\udc80\udcff", "not UTF-8 text", id="not-utf8-lone-surrogates"),
        pytest.param("\ufffd\x00\x01", "not valid JSON", id="binary-replaced-by-the-kubelet"),
        pytest.param("[" * 4000, "nested too deeply", id="deeply-nested-array"),
        pytest.param(
            '{"metrics": ' + "[" * 2000 + "]" * 2000 + "}", "nested too deeply", id="nested-metrics"
        ),
    ],
)
def test_malformed_results_say_what_is_wrong(message: str | None, expected_error: str) -> None:
    with pytest.raises(InvalidResult, match=expected_error):
        parse_result(message, RUN_URI, RUN_DIR)


def test_an_absolute_path_is_refused_when_the_output_is_not_mounted() -> None:
    with pytest.raises(InvalidResult, match="must be a URI or a path relative"):
        parse_result(result(artifact="/tmp/model.onnx"), "s3://b/iris/r1", None)

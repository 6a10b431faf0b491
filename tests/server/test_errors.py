"""Every error path answers the right status with a precise ``{"error": "..."}`` body."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.server import models
from tests.server.server_process import ServerProcess, metric_value, serving

pytestmark = pytest.mark.server

ROW = {"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.0] * 8}
DEEP: list[object] = [0.0] * 8
for _ in range(70):
    DEEP = [DEEP]


def error_of(reply: object) -> str:
    document = reply.json()  # type: ignore[attr-defined]
    assert set(document) == {"error"}
    return str(document["error"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": []}', "'inputs' must be a non-empty list"),
        (json.dumps({"inputs": [{**ROW, "name": "nope"}]}).encode(), "unknown input 'nope'"),
        (
            json.dumps({"inputs": [{**ROW, "datatype": "INT64", "data": [0] * 8}]}).encode(),
            "input 'input': expected datatype FP32, got INT64",
        ),
        (
            json.dumps({"inputs": [{**ROW, "shape": [1, 7], "data": [0.0] * 7}]}).encode(),
            "input 'input': expected shape [-1, 8], got [1, 7]",
        ),
        (
            json.dumps({"inputs": [{**ROW, "data": [0.0] * 7}]}).encode(),
            "input 'input': shape [1, 8] needs 8 elements, data has 7",
        ),
        (
            json.dumps({"inputs": [{**ROW, "data": ["a"] * 8}]}).encode(),
            "FP32 data must be numbers, got strings",
        ),
        (json.dumps({"inputs": [{**ROW, "datatype": "FP8"}]}).encode(), "datatype 'FP8'"),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed JSON"),
        (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": '
            b"[NaN, 0, 0, 0, 0, 0, 0, 0]}]}",
            "malformed JSON",
        ),
        (
            json.dumps({"inputs": [{**ROW, "data": [[[[0.0] * 8]], [[[[[[[0.0]]]]]]]]}]}).encode(),
            "input 'input': nested 'data' is ragged",
        ),
        (
            json.dumps({"inputs": [{**ROW, "data": DEEP}]}).encode(),
            "input 'input': nested 'data' nests deeper than 32 levels",
        ),
        (
            json.dumps(
                {
                    "inputs": [ROW],
                    "outputs": [{"name": "output", "parameters": {"classification": 2}}],
                }
            ).encode(),
            "output 'output': the classification extension is not supported",
        ),
        (json.dumps({"inputs": [{**ROW, "datatype": "BF16"}]}).encode(), "datatype 'BF16'"),
        (
            json.dumps({"inputs": [{**ROW, "data": [1e39] + [0.0] * 7}]}).encode(),
            "input 'input': a value is out of range for FP32",
        ),
        (json.dumps({"inputs": [ROW, ROW]}).encode(), "given more than once"),
        (
            json.dumps({"inputs": [ROW], "outputs": [{"name": "nope"}]}).encode(),
            "unknown output 'nope'",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8]}]}
            ).encode(),
            "neither 'data' nor parameters.binary_data_size",
        ),
    ],
)
def test_bad_requests_are_400_with_a_message_naming_the_problem(
    tabular_server: ServerProcess, body: bytes, fragment: str
) -> None:
    reply = tabular_server.request("POST", "/v2/models/tabular/infer", body)
    assert reply.status == 400
    assert fragment in error_of(reply)


def test_a_missing_input_is_named_with_its_type_and_shape(mixed_server: ServerProcess) -> None:
    reply = mixed_server.infer(
        {"inputs": [{"name": "counts", "datatype": "INT64", "shape": [1, 4], "data": [1] * 4}]}
    )
    assert reply.status == 400
    message = error_of(reply)
    assert "'flags' (BOOL [-1, 2])" in message
    assert "'labels' (BYTES [-1, 1])" in message


def post_binary(server: ServerProcess, declared_size: int, payload_size: int) -> object:
    """An FP32 [1, 8] input declared as ``declared_size`` bytes, followed by ``payload_size``."""
    head = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8],
                     "parameters": {"binary_data_size": declared_size}}]}
    ).encode()  # fmt: skip
    return server.request(
        "POST", "/v2/models/tabular/infer", head + b"\0" * payload_size,
        {"Inference-Header-Content-Length": str(len(head))},
    )  # fmt: skip


def test_binary_data_left_over_after_the_inputs_is_400(tabular_server: ServerProcess) -> None:
    reply = post_binary(tabular_server, declared_size=32, payload_size=40)
    assert reply.status == 400  # type: ignore[attr-defined]
    assert error_of(reply) == (
        "the body carries 40 bytes of binary tensor data, "
        "but the inputs' binary_data_size add up to 32"
    )


def test_a_binary_size_that_is_too_small_for_the_shape_is_400(
    tabular_server: ServerProcess,
) -> None:
    reply = post_binary(tabular_server, declared_size=16, payload_size=16)
    assert reply.status == 400  # type: ignore[attr-defined]
    assert error_of(reply) == "input 'input': 8 FP32 elements need 32 bytes, binary_data_size is 16"


def test_a_binary_size_beyond_the_body_is_400(tabular_server: ServerProcess) -> None:
    reply = post_binary(tabular_server, declared_size=32, payload_size=8)
    assert reply.status == 400  # type: ignore[attr-defined]
    assert "binary_data_size 32 but only 8 bytes of binary data remain" in error_of(reply)


def peak_rss_kib(server: ServerProcess) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0])


def test_a_huge_bytes_shape_with_little_binary_data_is_400_without_allocating_it(
    tabular_server: ServerProcess,
) -> None:
    head = json.dumps(
        {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [100_000_000],
                     "parameters": {"binary_data_size": 8}}]}
    ).encode()  # fmt: skip
    peak_before = peak_rss_kib(tabular_server)
    reply = tabular_server.request(
        "POST", "/v2/models/tabular/infer", head + b"\0" * 8,
        {"Inference-Header-Content-Length": str(len(head))},
    )  # fmt: skip
    assert reply.status == 400
    assert error_of(reply) == (
        "input 'input': 100000000 BYTES elements need at least 400000000 bytes "
        "(a 4-byte length each), binary_data_size is 8"
    )
    assert peak_rss_kib(tabular_server) - peak_before < 100_000


def test_a_header_length_beyond_the_body_is_400(tabular_server: ServerProcess) -> None:
    reply = tabular_server.request(
        "POST", "/v2/models/tabular/infer", b"{}", {"Inference-Header-Content-Length": "99"}
    )
    assert reply.status == 400
    assert "outside the body" in error_of(reply)


@pytest.mark.parametrize(
    ("method", "path", "fragment"),
    [
        ("GET", "/v2/models/other", "unknown model 'other'; this server serves 'tabular'"),
        ("GET", "/v2/models/other/ready", "unknown model 'other'"),
        ("POST", "/v2/models/other/infer", "unknown model 'other'"),
        ("GET", "/v2/models/tabular/versions/9", "has no version '9'; it serves version '3'"),
        ("GET", "/v2/models/tabular/versions/9/ready", "has no version '9'"),
        ("POST", "/v2/models/tabular/versions/9/infer", "has no version '9'"),
        ("GET", "/v3", "no such endpoint: /v3"),
        ("GET", "/v2/models/tabular/explain", "no such endpoint"),
    ],
)
def test_unknown_models_versions_and_paths_are_404(
    tabular_server: ServerProcess, method: str, path: str, fragment: str
) -> None:
    body = json.dumps({"inputs": [ROW]}).encode() if method == "POST" else None
    reply = tabular_server.request(method, path, body)
    assert reply.status == 404
    assert fragment in error_of(reply)


def test_wrong_methods_are_405_with_allow(tabular_server: ServerProcess) -> None:
    reply = tabular_server.request("GET", "/v2/models/tabular/infer")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    reply = tabular_server.request("PUT", "/v2/health/ready", b"")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


@pytest.fixture(scope="module")
def lookup_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = str(tmp_path_factory.mktemp("lookup"))
    models.lookup(directory)
    with serving(directory, "lookup", "--threads", "1") as server:
        yield server


def test_a_runtime_failure_is_500_counted_and_the_server_keeps_serving(
    lookup_server: ServerProcess,
) -> None:
    bad = lookup_server.infer(
        {"inputs": [{"name": "index", "datatype": "INT64", "shape": [1], "data": [99]}]}
    )
    assert bad.status == 500
    assert error_of(bad).startswith("inference failed:")
    good = lookup_server.infer(
        {"inputs": [{"name": "index", "datatype": "INT64", "shape": [2], "data": [3, 0]}]}
    )
    assert good.status == 200
    assert good.json()["outputs"][0]["data"] == [6.0, 7.0, 0.0, 1.0]
    exposition = lookup_server.metrics()
    assert metric_value(exposition, "kiln_inference_requests_total", code="500") == 1.0
    assert metric_value(exposition, "kiln_inference_requests_total", code="200") == 1.0


def test_cuda_without_a_gpu_keeps_the_server_unready_with_a_clear_message(
    tabular_dir: str,
) -> None:
    server = ServerProcess(tabular_dir, "tabular", "--device", "cuda")
    try:
        reply = server.wait_unready_reason()
        assert reply.status == 503
        message = error_of(reply)
        assert "--device cuda needs ONNX Runtime's CUDAExecutionProvider" in message
        assert "CPUExecutionProvider" in message
        infer = server.infer({"inputs": [ROW]})
        assert infer.status == 503
        assert server.get("/v2/models/tabular").status == 503
        assert 'device="cuda",model="tabular",ready="false"' in server.metrics()
    finally:
        assert server.stop() == 0


def test_a_model_dir_without_a_model_is_unready_and_says_why(tmp_path: object) -> None:
    server = ServerProcess(str(tmp_path), "ghost")
    try:
        reply = server.wait_unready_reason()
        assert reply.status == 503
        assert "model.onnx" in error_of(reply)
    finally:
        server.stop()

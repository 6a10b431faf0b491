"""Every Open Inference Protocol v2 endpoint over real loopback HTTP, JSON and binary tensors.

Outputs are compared with what ONNX Runtime itself computes for the same model and inputs.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest

from tests.server import models
from tests.server.server_process import ServerProcess, serving

pytestmark = pytest.mark.server


def reference(model_dir: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def binary_request(
    inputs: list[tuple[str, str, np.ndarray]], outputs: list[dict[str, object]] | None = None
) -> tuple[bytes, dict[str, str]]:
    header: dict[str, object] = {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": list(array.shape),
             "parameters": {"binary_data_size": array.nbytes}}
            for name, datatype, array in inputs
        ]
    }  # fmt: skip
    if outputs is not None:
        header["outputs"] = outputs
    head = json.dumps(header).encode()
    body = head + b"".join(array.tobytes() for _, _, array in inputs)
    return body, {"Inference-Header-Content-Length": str(len(head))}


def split_binary_response(
    body: bytes, header_length: int
) -> tuple[dict[str, object], dict[str, bytes]]:
    document = json.loads(body[:header_length])
    blobs = {}
    offset = header_length
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            blobs[output["name"]] = body[offset : offset + size]
            offset += size
    assert offset == len(body)
    return document, blobs


def test_liveness_readiness_and_server_metadata(tabular_server: ServerProcess) -> None:
    assert tabular_server.get("/v2/health/live").json() == {"live": True}
    assert tabular_server.get("/v2/health/ready").json() == {"ready": True}
    metadata = tabular_server.get("/v2").json()
    assert metadata["name"] == "kiln-server"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("prefix", ["/v2/models/tabular", "/v2/models/tabular/versions/3"])
def test_model_metadata_and_readiness_describe_the_onnx_signature(
    tabular_server: ServerProcess, prefix: str
) -> None:
    metadata = tabular_server.get(prefix).json()
    assert metadata["name"] == "tabular"
    assert metadata["versions"] == ["3"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    assert tabular_server.get(prefix + "/ready").json() == {"name": "tabular", "ready": True}


@pytest.mark.parametrize("version", [None, "3"])
def test_json_infer_equals_onnx_runtime_and_echoes_the_id(
    tabular_server: ServerProcess, tabular_dir: str, version: str | None
) -> None:
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    reply = tabular_server.infer(
        {"id": "req-1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [5, 8],
                                    "data": x.reshape(-1).tolist()}]},
        version,
    )  # fmt: skip
    assert reply.status == 200, reply.body
    document = reply.json()
    assert document["id"] == "req-1"
    assert document["model_name"] == "tabular"
    assert document["model_version"] == "3"
    [output] = document["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [5, 3])
    expected = reference(tabular_dir, {"input": x})["output"]
    np.testing.assert_allclose(np.array(output["data"]).reshape(5, 3), expected, rtol=1e-6)


def test_nested_json_data_is_accepted_like_flat_data(tabular_server: ServerProcess) -> None:
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    flat = tabular_server.infer(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 8],
                     "data": x.reshape(-1).tolist()}]}
    )  # fmt: skip
    nested = tabular_server.infer(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 8], "data": x.tolist()}]}
    )
    assert flat.status == nested.status == 200
    assert flat.json()["outputs"] == nested.json()["outputs"]
    assert "id" not in flat.json()


def test_binary_inputs_and_outputs_equal_onnx_runtime(
    tabular_server: ServerProcess, tabular_dir: str
) -> None:
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
    body, headers = binary_request(
        [("input", "FP32", x)], [{"name": "output", "parameters": {"binary_data": True}}]
    )
    reply = tabular_server.request("POST", "/v2/models/tabular/infer", body, headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/octet-stream"
    document, blobs = split_binary_response(
        reply.body, int(reply.headers["inference-header-content-length"])
    )
    [output] = document["outputs"]  # type: ignore[misc]
    assert output["shape"] == [4, 3]
    assert output["parameters"] == {"binary_data_size": 4 * 3 * 4}
    got = np.frombuffer(blobs["output"], dtype="<f4").reshape(4, 3)
    np.testing.assert_array_equal(got, reference(tabular_dir, {"input": x})["output"])


def test_request_level_binary_data_output_makes_every_output_binary(
    tabular_server: ServerProcess,
) -> None:
    reply = tabular_server.infer(
        {"parameters": {"binary_data_output": True},
         "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}
    )  # fmt: skip
    assert reply.status == 200
    _document, blobs = split_binary_response(
        reply.body, int(reply.headers["inference-header-content-length"])
    )
    assert set(blobs) == {"output"}
    assert np.frombuffer(blobs["output"], "<f4").sum() == pytest.approx(1.0, rel=1e-5)


def test_binary_input_with_json_output_when_not_asked_for_binary(
    tabular_server: ServerProcess, tabular_dir: str
) -> None:
    x = np.ones((2, 8), dtype=np.float32)
    body, headers = binary_request([("input", "FP32", x)])
    reply = tabular_server.request("POST", "/v2/models/tabular/infer", body, headers)
    assert reply.status == 200
    assert "inference-header-content-length" not in reply.headers
    data = np.array(reply.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(data, reference(tabular_dir, {"input": x})["output"], rtol=1e-6)


def test_every_dtype_of_a_multi_input_model_in_json(
    mixed_server: ServerProcess, mixed_dir: str
) -> None:
    counts = np.array([[1, 2, 3, 4], [5, 6, 7, -8]], dtype=np.int64)
    flags = np.array([[True, False], [False, False]])
    labels = np.array([["cat"], ["dög"]], dtype=object)
    scale = np.array([[0.5], [2.0]], dtype=np.float64)
    reply = mixed_server.infer(
        {"inputs": [
            {"name": "counts", "datatype": "INT64", "shape": [2, 4], "data": counts.tolist()},
            {"name": "flags", "datatype": "BOOL", "shape": [2, 2], "data": flags.tolist()},
            {"name": "labels", "datatype": "BYTES", "shape": [2, 1], "data": ["cat", "dög"]},
            {"name": "scale", "datatype": "FP64", "shape": [2, 1], "data": [0.5, 2.0]},
        ]}
    )  # fmt: skip
    assert reply.status == 200, reply.body
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    expected = reference(
        mixed_dir, {"counts": counts, "flags": flags, "labels": labels, "scale": scale}
    )
    assert outputs["doubled"]["datatype"] == "INT64"
    assert outputs["doubled"]["data"] == expected["doubled"].reshape(-1).tolist()
    assert outputs["negated"]["datatype"] == "BOOL"
    assert outputs["negated"]["data"] == expected["negated"].reshape(-1).tolist()
    assert outputs["echoed"] == {"name": "echoed", "datatype": "BYTES", "shape": [2, 1],
                                 "data": ["cat", "dög"]}  # fmt: skip
    assert outputs["total"]["datatype"] == "FP64"
    assert outputs["total"]["data"] == expected["total"].reshape(-1).tolist()


def test_every_dtype_in_binary_including_length_prefixed_bytes(
    mixed_server: ServerProcess,
) -> None:
    counts = np.array([[1, 2, 3, 4]], dtype="<i8")
    flags = np.array([[True, False]])
    words = ["", "zebra"]  # the second row is never sent: shape [1, 1]
    labels_blob = struct.pack("<I", len(words[1])) + words[1].encode()
    scale = np.array([[3.0]], dtype="<f8")
    header = {
        "inputs": [
            {"name": "counts", "datatype": "INT64", "shape": [1, 4],
             "parameters": {"binary_data_size": counts.nbytes}},
            {"name": "flags", "datatype": "BOOL", "shape": [1, 2],
             "parameters": {"binary_data_size": 2}},
            {"name": "labels", "datatype": "BYTES", "shape": [1, 1],
             "parameters": {"binary_data_size": len(labels_blob)}},
            {"name": "scale", "datatype": "FP64", "shape": [1, 1],
             "parameters": {"binary_data_size": 8}},
        ],
        "parameters": {"binary_data_output": True},
    }  # fmt: skip
    head = json.dumps(header).encode()
    body = head + counts.tobytes() + flags.tobytes() + labels_blob + scale.tobytes()
    reply = mixed_server.request(
        "POST", "/v2/models/mixed/infer", body,
        {"Inference-Header-Content-Length": str(len(head))},
    )  # fmt: skip
    assert reply.status == 200, reply.body
    _, blobs = split_binary_response(
        reply.body, int(reply.headers["inference-header-content-length"])
    )
    assert np.frombuffer(blobs["doubled"], "<i8").tolist() == [2, 4, 6, 8]
    assert blobs["negated"] == b"\x00\x01"
    assert blobs["echoed"] == struct.pack("<I", 5) + b"zebra"
    assert np.frombuffer(blobs["total"], "<f8").tolist() == [30.0]


def test_requested_outputs_limit_the_response_in_the_requested_order(
    mixed_server: ServerProcess,
) -> None:
    reply = mixed_server.infer(
        {"inputs": [
            {"name": "counts", "datatype": "INT64", "shape": [1, 4], "data": [1, 1, 1, 1]},
            {"name": "flags", "datatype": "BOOL", "shape": [1, 2], "data": [True, True]},
            {"name": "labels", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]},
            {"name": "scale", "datatype": "FP64", "shape": [1, 1], "data": [1.5]},
         ],
         "outputs": [{"name": "total"}, {"name": "negated"}]}
    )  # fmt: skip
    assert reply.status == 200
    assert [o["name"] for o in reply.json()["outputs"]] == ["total", "negated"]
    assert reply.json()["outputs"][0]["data"] == [6.0]


def test_head_answers_headers_only(tabular_server: ServerProcess) -> None:
    conn = tabular_server.connection()
    conn.request("HEAD", "/v2/health/live")
    response = conn.getresponse()
    assert response.status == 200
    assert int(response.getheader("content-length")) == len(b'{"live":true}')
    assert response.read() == b""
    conn.close()


def test_metrics_are_prometheus_text(tabular_server: ServerProcess) -> None:
    reply = tabular_server.get("/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert 'kiln_model_info{device="cpu",model="tabular",ready="true",version="3"} 1.0' in (
        reply.body.decode()
    )


@pytest.fixture(scope="module")
def fixed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = str(tmp_path_factory.mktemp("fixed"))
    models.fixed_batch(directory)
    with serving(directory, "fixed", "--threads", "1") as server:
        yield server


def test_fp16_with_a_fixed_batch_dimension_in_json_and_binary(fixed_server: ServerProcess) -> None:
    metadata = fixed_server.get("/v2/models/fixed").json()
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP16", "shape": [1, 3]}]
    reply = fixed_server.infer(
        {"inputs": [{"name": "x", "datatype": "FP16", "shape": [1, 3], "data": [1.5, -2, 0.25]}]}
    )
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0] == {
        "name": "y", "datatype": "FP16", "shape": [1, 3], "data": [-1.5, 2.0, -0.25]
    }  # fmt: skip
    x = np.array([[4.0, 8.0, -1.0]], dtype="<f2")
    body, headers = binary_request(
        [("x", "FP16", x)], [{"name": "y", "parameters": {"binary_data": True}}]
    )
    reply = fixed_server.request("POST", "/v2/models/fixed/infer", body, headers)
    assert reply.status == 200, reply.body
    _, blobs = split_binary_response(
        reply.body, int(reply.headers["inference-header-content-length"])
    )
    assert np.frombuffer(blobs["y"], "<f2").tolist() == [-4.0, -8.0, 1.0]
    two_rows = fixed_server.infer(
        {"inputs": [{"name": "x", "datatype": "FP16", "shape": [2, 3], "data": [0.0] * 6}]}
    )
    assert two_rows.status == 400
    assert "expected shape [1, 3], got [2, 3]" in two_rows.json()["error"]

"""Triton's standard HTTP client works against the server unchanged, JSON and binary."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest

from tests.server.server_process import ServerProcess

httpclient = pytest.importorskip("tritonclient.http")

pytestmark = pytest.mark.server


@pytest.fixture
def client(tabular_server: ServerProcess) -> object:
    triton = httpclient.InferenceServerClient(url=f"127.0.0.1:{tabular_server.port}")
    yield triton
    triton.close()


def test_health_and_metadata_through_the_triton_client(client: object) -> None:
    assert client.is_server_live()  # type: ignore[attr-defined]
    assert client.is_server_ready()  # type: ignore[attr-defined]
    assert client.is_model_ready("tabular")  # type: ignore[attr-defined]
    assert client.is_model_ready("tabular", "3")  # type: ignore[attr-defined]
    assert not client.is_model_ready("other")  # type: ignore[attr-defined]
    metadata = client.get_model_metadata("tabular")  # type: ignore[attr-defined]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("binary_in", "binary_out"), [(False, False), (True, True), (True, False)])
def test_infer_through_the_triton_client_equals_onnx_runtime(
    client: object, tabular_dir: str, binary_in: bool, binary_out: bool
) -> None:
    x = np.random.default_rng(5).standard_normal((6, 8)).astype(np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    wanted = httpclient.InferRequestedOutput("output", binary_data=binary_out)
    result = client.infer("tabular", [tensor], outputs=[wanted], request_id="t-1")  # type: ignore[attr-defined]
    session = ort.InferenceSession(os.path.join(tabular_dir, "model.onnx"))
    np.testing.assert_allclose(
        result.as_numpy("output"), session.run(None, {"input": x})[0], rtol=1e-6
    )
    assert result.get_response()["id"] == "t-1"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_from_the_triton_client_are_decoded(
    client: object, tabular_dir: str, algorithm: str
) -> None:
    x = np.random.default_rng(6).standard_normal((3, 8)).astype(np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer(  # type: ignore[attr-defined]
        "tabular", [tensor], request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )  # fmt: skip
    session = ort.InferenceSession(os.path.join(tabular_dir, "model.onnx"))
    np.testing.assert_allclose(
        result.as_numpy("output"), session.run(None, {"input": x})[0], rtol=1e-6
    )


def test_triton_client_errors_carry_the_server_message(client: object) -> None:
    tensor = httpclient.InferInput("input", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(Exception, match=r"expected shape \[-1, 8\], got \[1, 5\]"):
        client.infer("tabular", [tensor])  # type: ignore[attr-defined]

"""Fuzzing the infer endpoint: whatever arrives, the answer is 200 or a 4xx with an error
body, never a 500 or a crash, and the server keeps serving afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.server_process import ServerProcess

pytestmark = pytest.mark.server

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
DATATYPES = ["FP32", "FP64", "FP16", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "BF16", "x", ""]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)
shapes = st.lists(st.integers(-2, 40), max_size=4) | json_values
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "x", ""]), "datatype": st.sampled_from(DATATYPES),
     "shape": shapes},
    optional={
        "data": st.lists(st.floats(-1e6, 1e6, width=32), max_size=48) | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-4, 64)})
        | json_values,
    },
)  # fmt: skip
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3) | json_values},
    optional={
        "id": json_values,
        "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["output", "y"])},
                            optional={"parameters": json_values}), max_size=2) | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": json_values}),
    },
)  # fmt: skip


def assert_handled(reply: Any) -> None:
    assert reply.status in (200, 400), (reply.status, reply.body)
    if reply.status == 400:
        assert set(json.loads(reply.body)) == {"error"}


@FUZZ
@given(document=requests)
def test_structured_garbage_is_200_or_400(tabular_server: ServerProcess, document: Any) -> None:
    assert_handled(tabular_server.post_json("/v2/models/tabular/infer", document))


@FUZZ
@given(body=st.binary(max_size=256), header_length=st.none() | st.integers(-5, 300).map(str))
def test_raw_bytes_with_any_header_length_are_200_or_400(
    tabular_server: ServerProcess, body: bytes, header_length: str | None
) -> None:
    headers = {} if header_length is None else {"Inference-Header-Content-Length": header_length}
    assert_handled(tabular_server.request("POST", "/v2/models/tabular/infer", body, headers))


def test_the_server_still_serves_after_the_fuzzing(tabular_server: ServerProcess) -> None:
    reply = tabular_server.infer(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8}]}
    )
    assert reply.status == 200
    assert "500" not in [
        line.split('code="')[1].split('"')[0]
        for line in tabular_server.metrics().splitlines()
        if line.startswith("kiln_inference_requests_total{")
    ]

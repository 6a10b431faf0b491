"""JSON tensor decoding keeps every value exact in its datatype, or refuses it by name."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from kiln_server.codec import decode_request
from kiln_server.errors import InferenceError

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def decoded(datatype: str, shape: list[int], data: Any) -> np.ndarray:
    body = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    return decode_request(json.dumps(body).encode(), None).inputs[0].data


@pytest.mark.parametrize(
    ("datatype", "shape", "data"),
    [
        ("UINT64", [3], [U64_MAX, 1, 2**63]),
        ("UINT64", [2, 2], [[U64_MAX, 0], [1, 2**63 + 5]]),
        ("INT64", [2], [I64_MIN, I64_MAX]),
        ("UINT32", [2], [2**32 - 1, 0]),
    ],
    ids=["uint64-flat", "uint64-nested", "int64-extremes", "uint32-max"],
)
def test_integers_at_the_edges_of_their_type_decode_exactly(
    datatype: str, shape: list[int], data: Any
) -> None:
    array = decoded(datatype, shape, data)
    assert array.dtype == np.dtype(datatype.lower())
    assert array.reshape(shape).tolist() == data


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT64", [-1, U64_MAX], "a value is out of range for INT64"),
        ("INT8", [U64_MAX, 1], "a value is out of range for INT8"),
        ("UINT64", [U64_MAX, 1.5], "UINT64 data must be integers, got floats"),
        ("UINT8", [-1, 2], "a value is out of range for UINT8"),
        ("FP16", [70000, 1], "a value is out of range for FP16"),
    ],
)
def test_values_that_do_not_fit_the_datatype_are_refused(
    datatype: str, data: Any, message: str
) -> None:
    with pytest.raises(InferenceError) as refused:
        decoded(datatype, [2], data)
    assert refused.value.status == 400
    assert refused.value.message == f"input 'x': {message}"

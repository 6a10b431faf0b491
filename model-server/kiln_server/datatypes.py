"""Open Inference Protocol datatypes and how they map onto ONNX types and numpy dtypes.

Only the OIP types ONNX Runtime's Python API can take and return are listed: BF16 has no
numpy dtype, so a model using it is reported as unsupported rather than served wrongly.
"""

from __future__ import annotations

from typing import Final

import numpy as np

# OIP datatype -> numpy dtype. BYTES tensors are numpy object arrays of str (what ONNX
# Runtime takes and returns for tensor(string)).
NUMPY_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

# ONNX Runtime's type strings ("tensor(float)") -> OIP datatype.
ONNX_TO_OIP: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_NUMPY_TO_OIP: Final[dict[np.dtype[np.generic], str]] = {v: k for k, v in NUMPY_DTYPES.items()}


def oip_datatype(onnx_type: str) -> str | None:
    """The OIP datatype for an ONNX Runtime type string, or None if it cannot be served."""
    return ONNX_TO_OIP.get(onnx_type)


def oip_datatype_of(array: np.ndarray) -> str:
    """The OIP datatype of a numpy array that ONNX Runtime returned."""
    datatype = _NUMPY_TO_OIP.get(array.dtype)
    if datatype is None:
        if array.dtype.kind in ("U", "S"):
            return "BYTES"
        raise ValueError(f"no Open Inference Protocol datatype for numpy dtype {array.dtype}")
    return datatype

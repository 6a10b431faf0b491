"""Open Inference Protocol v2 bodies <-> numpy: JSON tensors and the binary tensor extension.

Binary extension (as Triton's and KServe's clients speak it): the HTTP header
``Inference-Header-Content-Length`` gives the length of the JSON part at the start of the
body; inputs whose ``parameters.binary_data_size`` is set take that many bytes, in order,
from the rest. Outputs are returned binary when their request entry has
``parameters.binary_data: true``, or, for outputs without that entry, when the request's
``parameters.binary_data_output`` is true. Binary data is little-endian, row-major; BOOL is
one byte; BYTES elements are a 4-byte little-endian length followed by the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kiln_server.datatypes import NUMPY_DTYPES, oip_datatype_of
from kiln_server.errors import bad_request

_ORJSON_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_INT_KINDS = ("i", "u")
_FLOAT_KINDS = ("f", "i", "u")
_LENGTH = struct.Struct("<I")
# Deepest nesting of a JSON 'data' list (a tensor of more dimensions is not a real request).
_MAX_NESTING = 32
# Elements of a JSON list converted per numpy call (see _from_json).
_CHUNK = 1 << 16
_NUMBER_TYPES = frozenset((float, int))
_INT_TYPE = frozenset((int,))
_EXACT_INT = float(2**53)
_FLOAT_MAX = {char: float(np.finfo(char).max) for char in "efd"}


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None


@dataclass(slots=True)
class InferenceRequest:
    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any] | None
    binary_output: bool


def decode_request(body: bytes, header_length: int | None) -> InferenceRequest:
    """Parse an infer request body; ``header_length`` is Inference-Header-Content-Length."""
    binary: memoryview | None = None
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise bad_request(
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"of {len(body)} bytes"
            )
        binary = memoryview(body)[header_length:]
        body = body[:header_length]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"malformed JSON: {error}") from None
    if not isinstance(document, dict):
        raise bad_request("the request body must be a JSON object")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise bad_request("'inputs' must be a non-empty list")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request("'id' must be a string")
    parameters = _parameters(document, "the request")
    binary_output = False
    if parameters is not None:
        flag = parameters.get("binary_data_output", False)
        if not isinstance(flag, bool):
            raise bad_request("parameter 'binary_data_output' must be a boolean")
        binary_output = flag
    offset = 0
    inputs = []
    for raw in raw_inputs:
        tensor, used = _decode_input(raw, binary, offset)
        offset += used
        inputs.append(tensor)
    if binary is not None and offset != len(binary):
        raise bad_request(
            f"the body carries {len(binary)} bytes of binary tensor data, "
            f"but the inputs' binary_data_size add up to {offset}"
        )
    outputs = _decode_outputs(document.get("outputs"))
    return InferenceRequest(request_id, inputs, outputs, parameters, binary_output)


def _parameters(holder: dict[str, Any], where: str) -> dict[str, Any] | None:
    parameters = holder.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(f"'parameters' of {where} must be an object")
    return parameters


def _decode_input(raw: Any, binary: memoryview | None, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(raw, dict):
        raise bad_request("each input must be an object")
    name = raw.get("name")
    if not isinstance(name, str):
        raise bad_request("each input needs a string 'name'")
    datatype = raw.get("datatype")
    dtype = NUMPY_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or not isinstance(datatype, str):
        raise bad_request(
            f"input {name!r}: datatype {datatype!r} is not one of {', '.join(NUMPY_DTYPES)}"
        )
    shape_raw = raw.get("shape")
    if not isinstance(shape_raw, list) or (
        shape_raw and (set(map(type, shape_raw)) != _INT_TYPE or min(shape_raw) < 0)
    ):
        raise bad_request(f"input {name!r}: 'shape' must be a list of non-negative integers")
    shape = tuple(shape_raw)
    count = 1
    for dim in shape:
        count *= dim
    parameters = _parameters(raw, f"input {name!r}")
    size = parameters.get("binary_data_size") if parameters is not None else None
    if size is not None:
        if type(size) is not int or size < 0:
            raise bad_request(f"input {name!r}: binary_data_size must be a non-negative integer")
        if binary is None or offset + size > len(binary):
            raise bad_request(
                f"input {name!r}: binary_data_size {size} but only "
                f"{0 if binary is None else len(binary) - offset} bytes of binary data remain "
                "(is the Inference-Header-Content-Length header set?)"
            )
        chunk = binary[offset : offset + size]
        array = _from_binary(name, datatype, dtype, chunk, count)
        return InputTensor(name, datatype, shape, array.reshape(shape)), size
    if "data" not in raw:
        raise bad_request(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    array = _from_json(name, datatype, dtype, raw["data"])
    if array.size != count:
        raise bad_request(
            f"input {name!r}: shape {list(shape)} needs {count} elements, data has {array.size}"
        )
    return InputTensor(name, datatype, shape, array.reshape(shape)), 0


def _from_binary(
    name: str, datatype: str, dtype: np.dtype[Any], chunk: memoryview, count: int
) -> np.ndarray:
    if datatype == "BYTES":
        return _bytes_elements(name, chunk, count)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise bad_request(
            f"input {name!r}: {count} {datatype} elements need {expected} bytes, "
            f"binary_data_size is {len(chunk)}"
        )
    if datatype == "BOOL":
        return np.frombuffer(chunk, dtype=np.uint8).astype(np.bool_)
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))


def _bytes_elements(name: str, chunk: memoryview, count: int) -> np.ndarray:
    # Checked before allocating: a huge shape must not cost memory the body never carried.
    if count * _LENGTH.size > len(chunk):
        raise bad_request(
            f"input {name!r}: {count} BYTES elements need at least {count * _LENGTH.size} bytes "
            f"(a 4-byte length each), binary_data_size is {len(chunk)}"
        )
    elements = np.empty(count, dtype=object)
    position = 0
    data = bytes(chunk)
    for index in range(count):
        if position + 4 > len(data):
            raise bad_request(f"input {name!r}: binary BYTES data ends after {index} elements")
        (length,) = _LENGTH.unpack_from(data, position)
        position += 4
        if position + length > len(data):
            raise bad_request(f"input {name!r}: BYTES element {index} overruns the binary data")
        elements[index] = data[position : position + length].decode("utf-8", "surrogateescape")
        position += length
    if position != len(data):
        raise bad_request(f"input {name!r}: {len(data) - position} bytes left after {count} BYTES")
    return elements


def _from_json(name: str, datatype: str, dtype: np.dtype[Any], data: Any) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat: list[str] = []
        _flatten_strings(name, data, flat, 0)
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array
    if len(data) <= _CHUNK:
        return _from_json_list(name, datatype, dtype, data)
    # A long list is converted a slice at a time: each numpy call holds the GIL only that
    # long, so the event loop keeps answering while a worker thread decodes a large body.
    parts = [
        _from_json_list(name, datatype, dtype, data[start : start + _CHUNK])
        for start in range(0, len(data), _CHUNK)
    ]
    if len({part.shape[1:] for part in parts}) != 1:
        raise bad_request(f"input {name!r}: nested 'data' is ragged")
    return np.concatenate(parts)


def _from_json_list(name: str, datatype: str, dtype: np.dtype[Any], data: list[Any]) -> np.ndarray:
    if dtype.kind in _FLOAT_KINDS:
        numbers = _flat_numbers(data, dtype)
        if numbers is not None:
            return numbers
    try:
        array = np.asarray(data)
    except ValueError:
        # numpy refuses ragged lists, and lists nested beyond its 64 dimensions
        depth = _leading_depth(data)
        if depth > _MAX_NESTING:
            raise bad_request(_too_deep(name)) from None
        raise bad_request(f"input {name!r}: nested 'data' is ragged") from None
    if array.ndim > _MAX_NESTING:
        raise bad_request(_too_deep(name))
    kind = array.dtype.kind
    if array.size == 0:
        return np.zeros(0, dtype=dtype)
    if datatype == "BOOL":
        if kind != "b":
            raise bad_request(f"input {name!r}: BOOL data must be true/false, got {array.dtype}")
        return array
    if dtype.kind in _INT_KINDS and kind in ("f", "O"):
        # numpy reads a list mixing ints at and above 2**63 with smaller ones as floats:
        # look again at the values themselves before calling them non-integers.
        exact = _exact_integers(name, datatype, dtype, data)
        if exact is not None:
            return exact
    allowed = _INT_KINDS if dtype.kind in _INT_KINDS else _FLOAT_KINDS
    if kind not in allowed:
        what = "integers" if dtype.kind in _INT_KINDS else "numbers"
        raise bad_request(f"input {name!r}: {datatype} data must be {what}, got {_kind(kind)}")
    if dtype.kind in _INT_KINDS and kind in _INT_KINDS and array.dtype != dtype:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise bad_request(f"input {name!r}: a value is out of range for {datatype}")
    if dtype.kind == "f" and array.dtype != dtype:
        # JSON carries no infinities, so any in the cast are values too large for the type.
        with np.errstate(over="ignore"):
            converted = array.astype(dtype)
        if not np.isfinite(converted).all():
            raise bad_request(f"input {name!r}: a value is out of range for {datatype}")
        return converted
    return array.astype(dtype, copy=False)


def _flat_numbers(data: list[Any], dtype: np.dtype[Any]) -> np.ndarray | None:
    """The common case in one step: a flat list of JSON numbers that ``dtype`` holds
    exactly as the general path would convert them. None for anything else (nested lists,
    booleans, strings, values near or past the type's range), which the general path
    converts or refuses with its reason."""
    if not data:
        return None
    types = set(map(type, data))
    if dtype.kind == "f":
        if not types <= _NUMBER_TYPES:
            return None
        # Integers past 2**53 would round twice on the general path (int -> float64 -> dtype).
        bound = min(_FLOAT_MAX[dtype.char], _EXACT_INT) if int in types else _FLOAT_MAX[dtype.char]
        low, high = -bound, bound
    else:
        if types != _INT_TYPE:
            return None
        info = np.iinfo(dtype)
        low, high = info.min, info.max
    if min(data) < low or max(data) > high:
        return None
    return np.array(data, dtype=dtype)


def _exact_integers(
    name: str, datatype: str, dtype: np.dtype[Any], data: list[Any]
) -> np.ndarray | None:
    """``data`` as ``dtype`` when every element is a JSON integer; None when some is not."""
    elements = np.asarray(data, dtype=object)
    flat = elements.reshape(-1).tolist()
    if not all(type(value) is int for value in flat):
        return None
    info = np.iinfo(dtype)
    if min(flat) < info.min or max(flat) > info.max:
        raise bad_request(f"input {name!r}: a value is out of range for {datatype}")
    return np.array(flat, dtype=dtype).reshape(elements.shape)


def _leading_depth(data: Any) -> int:
    depth = 0
    while isinstance(data, list) and data:
        depth += 1
        data = data[0]
    return depth


def _too_deep(name: str) -> str:
    return f"input {name!r}: nested 'data' nests deeper than {_MAX_NESTING} levels"


def _kind(kind: str) -> str:
    return {"b": "booleans", "f": "floats", "U": "strings", "O": "mixed values"}.get(kind, kind)


def _flatten_strings(name: str, data: list[Any], out: list[str], depth: int) -> None:
    if depth > _MAX_NESTING:
        raise bad_request(_too_deep(name))
    for item in data:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            _flatten_strings(name, item, out, depth + 1)
        else:
            raise bad_request(f"input {name!r}: BYTES data must be strings")


@dataclass(slots=True)
class OutputTensor:
    name: str
    data: np.ndarray
    binary: bool


def encode_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: list[OutputTensor],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when any output is binary."""
    entries = []
    blobs: list[bytes] = []
    for output in outputs:
        array = output.data
        datatype = oip_datatype_of(array)
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if output.binary:
            blob = _to_binary(datatype, array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES" or array.dtype.kind in ("U", "S", "O"):
            entry["data"] = [_text(item) for item in array.reshape(-1).tolist()]
        else:
            entry["data"] = array.ravel()  # C order, copied only when it must be
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "outputs": entries}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    header = orjson.dumps(document, option=_ORJSON_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _text(item: Any) -> str:
    return item.decode("utf-8", "surrogateescape") if isinstance(item, bytes) else str(item)


def _to_binary(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1).tolist():
            raw = item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogateescape")
            parts.append(_LENGTH.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()  # C order whatever the layout


def _decode_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise bad_request("'outputs' must be a list")
    outputs = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad_request("each requested output needs a string 'name'")
        name = entry["name"]
        parameters = _parameters(entry, f"output {name!r}")
        binary = None
        if parameters is not None:
            if "classification" in parameters:
                raise bad_request(f"output {name!r}: the classification extension is not supported")
            flag = parameters.get("binary_data")
            if flag is not None and not isinstance(flag, bool):
                raise bad_request(f"output {name!r}: parameter 'binary_data' must be a boolean")
            binary = flag
        outputs.append(RequestedOutput(name, binary))
    return outputs

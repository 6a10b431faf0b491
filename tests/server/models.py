"""ONNX models the server tests build with onnx.helper: small, deterministic, varied."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, directory: str) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    onnx.save(model, path)
    return path


def tabular(directory: str, features: int = 8, classes: int = 3, seed: int = 7) -> str:
    """FP32 [N, features] -> Gemm -> Relu -> Gemm -> Softmax -> FP32 [N, classes]."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((features, 16)).astype(np.float32)
    b0 = rng.standard_normal(16).astype(np.float32)
    w1 = rng.standard_normal((16, classes)).astype(np.float32)
    b1 = rng.standard_normal(classes).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "W0", "B0"], ["h"]),
            helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("Gemm", ["hr", "W1", "B1"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["output"], axis=-1),
        ],
        "tabular",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(w0, "W0"),
            numpy_helper.from_array(b0, "B0"),
            numpy_helper.from_array(w1, "W1"),
            numpy_helper.from_array(b1, "B1"),
        ],
    )
    return _save(graph, directory)


def mixed(directory: str) -> str:
    """Several inputs and outputs of other dtypes: INT64, BOOL, STRING, FP64.

    counts INT64 [N, 4]  -> doubled  INT64 [N, 4]
    flags  BOOL  [N, 2]  -> negated  BOOL  [N, 2]
    labels STRING [N, 1] -> echoed   STRING [N, 1]
    scale  FP64  [N, 1]  -> total    FP64  [N, 1]  (row sum of counts times scale)
    """
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["counts", "counts"], ["doubled"]),
            helper.make_node("Not", ["flags"], ["negated"]),
            helper.make_node("Identity", ["labels"], ["echoed"]),
            helper.make_node("Cast", ["counts"], ["counts_f"], to=TensorProto.DOUBLE),
            helper.make_node("ReduceSum", ["counts_f", "axes"], ["row_sum"], keepdims=1),
            helper.make_node("Mul", ["row_sum", "scale"], ["total"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("counts", TensorProto.INT64, ["N", 4]),
            helper.make_tensor_value_info("flags", TensorProto.BOOL, ["N", 2]),
            helper.make_tensor_value_info("labels", TensorProto.STRING, ["N", 1]),
            helper.make_tensor_value_info("scale", TensorProto.DOUBLE, ["N", 1]),
        ],
        [
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["N", 4]),
            helper.make_tensor_value_info("negated", TensorProto.BOOL, ["N", 2]),
            helper.make_tensor_value_info("echoed", TensorProto.STRING, ["N", 1]),
            helper.make_tensor_value_info("total", TensorProto.DOUBLE, ["N", 1]),
        ],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return _save(graph, directory)


def lookup(directory: str, rows: int = 4) -> str:
    """Gather rows of a small table by INT64 index: an out-of-range index fails at run time."""
    table = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["row"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("row", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    return _save(graph, directory)


def fixed_batch(directory: str) -> str:
    """FP16 input with a fixed batch of 1: requests can never be merged."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 3])],
    )
    return _save(graph, directory)


def slow(directory: str, size: int = 512, layers: int = 24) -> str:
    """FP32 [N, size] through ``layers`` dense MatMuls sharing one weight: slow to run, small
    on disk, so a request can be caught in flight."""
    rng = np.random.default_rng(3)
    weight = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    nodes = []
    current = "input"
    for layer in range(layers):
        out = "output" if layer == layers - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [current, "W"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", size])],
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    return _save(graph, directory)


def fails_at_inference(directory: str, features: int = 4) -> str:
    """Loads (the graph is valid) but every call fails: Gather reads column 1000 of a
    [N, features] input, out of bounds whatever the batch."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["input", "index"], ["output"], axis=1)],
        "fails_at_inference",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(np.array([1000], dtype=np.int64), "index")],
    )
    return _save(graph, directory)


def unloadable(directory: str) -> str:
    """A well-formed ModelProto with a graph that ONNX Runtime refuses: its one node is an
    operator no opset defines (saved without the checker, which would refuse it too)."""
    graph = helper.make_graph(
        [helper.make_node("NoSuchOperator", ["input"], ["output"])],
        "unloadable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    onnx.save(model, path)
    return path


def fails_on_live_inputs(directory: str, features: int = 8, classes: int = 3, rows: int = 4) -> str:
    """The tabular signature (FP32 [N, features] -> FP32 [N, classes]) and valid on zeros, so
    it passes validation, but it looks up a table row by the first feature: any input whose
    first feature is ``rows`` or more fails at run time (a 5xx for a live request)."""
    table = np.full((rows, classes), 1.0 / classes, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["input", "first"], ["column"], axis=1),
            helper.make_node("Cast", ["column"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["output"], axis=0),
        ],
        "fails_on_live_inputs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(np.array(0, dtype=np.int64), "first"),
            numpy_helper.from_array(table, "table"),
        ],
    )
    return _save(graph, directory)


def slow_tabular(
    directory: str, features: int = 8, classes: int = 3, width: int = 1024, layers: int = 500
) -> str:
    """The tabular signature, but each row goes through ``layers`` dense ``width`` x
    ``width`` MatMuls: a correct model that answers slowly."""
    rng = np.random.default_rng(5)
    up = (rng.standard_normal((features, width)) / np.sqrt(features)).astype(np.float32)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    down = (rng.standard_normal((width, classes)) / np.sqrt(width)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["input", "UP"], ["h0"])]
    for layer in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{layer}", "W"], [f"h{layer + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "DOWN"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["output"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "slow_tabular",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(up, "UP"),
            numpy_helper.from_array(weight, "W"),
            numpy_helper.from_array(down, "DOWN"),
        ],
    )
    return _save(graph, directory)

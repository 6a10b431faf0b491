"""Build the two benchmark models deterministically (fixed seed, no downloads).

- ``tabular``: FP32 [N, 32] -> Dense 64 -> ReLU -> Dense 64 -> ReLU -> Dense 2 -> Softmax
- ``wide``:    FP32 [N, 512] -> Dense 2048 -> ReLU -> Dense 2048 -> ReLU -> Dense 10

Input ``input``, output ``output``, dynamic batch. Each model goes to OUT/<name>/model.onnx
(the layout ``kiln-server serve --model-dir`` expects).
"""

from __future__ import annotations

import argparse
import itertools
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SPECS = {"tabular": ((32, 64, 64, 2), True), "wide": ((512, 2048, 2048, 10), False)}
FEATURES = {name: widths[0] for name, (widths, _) in SPECS.items()}


def mlp(name: str, widths: tuple[int, ...], softmax: bool, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = []
    weights = []
    current = "input"
    layers = len(widths) - 1
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        scale = np.sqrt(2.0 / fan_in)
        weights.append(
            numpy_helper.from_array(
                (rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32), f"w{index}"
            )
        )
        weights.append(numpy_helper.from_array(np.zeros(fan_out, np.float32), f"b{index}"))
        last = index == layers - 1
        dense = ("logits" if softmax else "output") if last else f"dense{index}"
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [dense]))
        current = dense
        if not last:
            nodes.append(helper.make_node("Relu", [dense], [f"relu{index}"]))
            current = f"relu{index}"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["output"], axis=-1))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", widths[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", widths[-1]])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build(out_dir: str) -> dict[str, str]:
    paths = {}
    for seed, (name, (widths, softmax)) in enumerate(SPECS.items()):
        directory = os.path.join(out_dir, name)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "model.onnx")
        onnx.save(mlp(name, widths, softmax, 1000 + seed), path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    for name, path in build(parser.parse_args().out_dir).items():
        print(f"{name}: {path} ({os.path.getsize(path)} bytes)")

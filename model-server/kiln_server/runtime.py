"""ONNX Runtime behind a small interface: load a model, read its signature, run it.

Device selection is strict: ``cuda`` means ONNX Runtime's CUDA execution provider or a
``ModelLoadError`` that says why; there is never a silent fall back to the CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from kiln_server.datatypes import NUMPY_DTYPES, oip_datatype

DEVICES = ("cpu", "cuda")
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ModelLoadError(RuntimeError):
    """The model cannot be loaded or run on the requested device."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, OIP datatype and shape (-1 for a dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        """Requests can be stacked along dimension 0: every tensor has a dynamic first dim."""
        return all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))


def _tensor_spec(node: Any) -> TensorSpec:
    datatype = oip_datatype(node.type)
    if datatype is None:
        raise ModelLoadError(f"tensor {node.name!r} has type {node.type}, which cannot be served")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in node.shape)
    return TensorSpec(name=node.name, datatype=datatype, shape=shape)


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


class OnnxModel:
    """An ONNX Runtime session on one device, with its signature."""

    def __init__(self, path: str | os.PathLike[str], *, device: str = "cpu", threads: int = 1):
        if device not in DEVICES:
            raise ModelLoadError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
        provider = _PROVIDERS[device]
        available = available_providers()
        if provider not in available:
            raise ModelLoadError(
                f"--device {device} needs ONNX Runtime's {provider}, but this ONNX Runtime "
                f"offers only {', '.join(available)}; install the 'gpu' extra (onnxruntime-gpu) "
                "and run on a node with an NVIDIA GPU, or use --device cpu"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The event loop shares these cores: idle intra-op threads must sleep, not spin.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(os.fspath(path), options, providers=[provider])
        except Exception as error:  # onnxruntime raises several unrelated types
            raise ModelLoadError(f"ONNX Runtime cannot load {os.fspath(path)}: {error}") from error
        active = self._session.get_providers()
        if not active or active[0] != provider:
            raise ModelLoadError(
                f"--device {device}: ONNX Runtime did not activate {provider} "
                f"(active: {', '.join(active)}); check the CUDA and cuDNN libraries on this node"
            )
        self.device = device
        self.providers = tuple(active)
        self.signature = Signature(
            inputs=tuple(_tensor_spec(node) for node in self._session.get_inputs()),
            outputs=tuple(_tensor_spec(node) for node in self._session.get_outputs()),
        )
        self.output_names = tuple(spec.name for spec in self.signature.outputs)
        meta = self._session.get_modelmeta()
        self.producer = str(meta.producer_name)

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One ONNX Runtime call (releases the GIL while it computes)."""
        return self._session.run(list(output_names), feeds)  # type: ignore[no-any-return]

    def zero_feeds(self, rows: int = 1) -> dict[str, np.ndarray]:
        """Inputs of the declared shapes (dynamic dims = ``rows`` first, then 1), all zeros."""
        feeds = {}
        for spec in self.signature.inputs:
            shape = tuple(
                (rows if axis == 0 else 1) if dim < 0 else dim
                for axis, dim in enumerate(spec.shape)
            )
            dtype = NUMPY_DTYPES[spec.datatype]
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(shape, "", dtype=dtype)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=dtype)
        return feeds

    def time_run(self, rows: int, repeats: int) -> float:
        """Median seconds of one call on zeros with ``rows`` rows (also warms the session)."""
        feeds = self.zero_feeds(rows)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.run(self.output_names, feeds)
            timings.append(time.perf_counter() - start)
        return float(np.median(timings))

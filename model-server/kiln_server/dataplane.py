"""The inference logic behind every endpoint: model state, metadata, request checks, infer.

Protocol-neutral: it takes decoded names and bytes and returns documents or raises
``InferenceError``; the HTTP endpoints only translate.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from kiln_server import __version__
from kiln_server.batching import Batcher
from kiln_server.codec import InferenceRequest, OutputTensor, decode_request, encode_response
from kiln_server.drift import DriftMonitor, DriftReport
from kiln_server.errors import InferenceError, bad_request, not_found, unavailable
from kiln_server.metrics import ServerMetrics
from kiln_server.runtime import OnnxModel, TensorSpec
from kiln_server.settings import ServeSettings

log = logging.getLogger("kiln_server.dataplane")

SERVER_NAME = "kiln-server"
EXTENSIONS = ("binary_tensor_data",)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"


class DataPlane:
    """One served model: loading, ready, or failed (with the reason)."""

    def __init__(self, settings: ServeSettings, metrics: ServerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model: OnnxModel | None = None
        self.drift: DriftMonitor | None = None
        self._batcher: Batcher | None = None
        self._inputs: dict[str, TensorSpec] = {}
        self._outputs: dict[str, TensorSpec] = {}
        self._all_outputs: tuple[str, ...] = ()
        self._batchable = False
        self.state_message = "the model is loading"
        self.ready = False
        metrics.watch_drift(self.drift_report)

    # --- lifecycle ------------------------------------------------------------------------
    def activate(self, model: OnnxModel, batcher: Batcher, drift: DriftMonitor | None) -> None:
        self.model = model
        self.drift = drift
        self._batcher = batcher
        self._inputs = {spec.name: spec for spec in model.signature.inputs}
        self._outputs = {spec.name: spec for spec in model.signature.outputs}
        self._all_outputs = model.output_names
        self._batchable = model.signature.batchable
        self.ready = True
        self.state_message = "ready"
        self.metrics.set_ready(True)

    def fail(self, message: str) -> None:
        self.ready = False
        self.state_message = message
        self.metrics.set_ready(False)

    def stop(self, message: str = "the server is shutting down") -> None:
        self.fail(message)

    def drift_report(self) -> DriftReport | None:
        return self.drift.report() if self.drift is not None else None

    # --- health and metadata --------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def check_ready(self) -> None:
        if not self.ready:
            raise unavailable(
                f"model {self.settings.model_name!r} is not ready: {self.state_message}"
            )

    def resolve(self, name: str, version: str | None) -> None:
        """404 unless ``name`` (and ``version``, when given) is the model this server serves."""
        settings = self.settings
        if name != settings.model_name:
            raise not_found(f"unknown model {name!r}; this server serves {settings.model_name!r}")
        if version is not None and version != settings.model_version:
            serving = (
                f"version {settings.model_version!r}"
                if settings.model_version is not None
                else "no named version"
            )
            raise not_found(f"model {name!r} has no version {version!r}; it serves {serving}")

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        self.resolve(name, version)
        self.check_ready()
        assert self.model is not None
        signature = self.model.signature
        version_list = [self.settings.model_version] if self.settings.model_version else []
        return {
            "name": name,
            "versions": version_list,
            "platform": "onnxruntime_onnx",
            "inputs": [spec.to_json() for spec in signature.inputs],
            "outputs": [spec.to_json() for spec in signature.outputs],
        }

    def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        self.resolve(name, version)
        self.check_ready()
        return {"name": name, "ready": True}

    # --- inference ------------------------------------------------------------------------
    async def infer(
        self, name: str, version: str | None, body: bytes, header_length: int | None
    ) -> tuple[bytes, int | None]:
        """Run one infer request; returns the response body and its JSON header length."""
        self.resolve(name, version)
        metrics = self.metrics
        start = time.perf_counter()
        metrics.in_flight.inc()
        status = 500
        try:
            self.check_ready()
            request = decode_request(body, header_length)
            response = await self._infer(request)
            status = 200
            return response
        except InferenceError as error:
            status = error.status
            raise
        except Exception as error:
            log.exception("inference failed for model %s", name)
            raise InferenceError(500, f"inference failed: {error}") from error
        finally:
            metrics.in_flight.dec()
            metrics.count_request(status)
            metrics.request_duration.observe(time.perf_counter() - start)

    async def _infer(self, request: InferenceRequest) -> tuple[bytes, int | None]:
        assert self._batcher is not None
        feeds, rows = self._feeds(request)
        output_names, binary = self._requested_outputs(request)
        results = await self._batcher.predict(feeds, output_names, rows)
        outputs = [
            OutputTensor(name, array, flag)
            for name, array, flag in zip(output_names, results, binary, strict=True)
        ]
        return encode_response(
            self.settings.model_name, self.settings.model_version, request.id, outputs
        )

    def _feeds(self, request: InferenceRequest) -> tuple[dict[str, np.ndarray], int]:
        specs = self._inputs
        feeds: dict[str, np.ndarray] = {}
        for tensor in request.inputs:
            spec = specs.get(tensor.name)
            if spec is None:
                raise bad_request(
                    f"unknown input {tensor.name!r}; the model's inputs are "
                    f"{', '.join(repr(n) for n in specs)}"
                )
            if tensor.name in feeds:
                raise bad_request(f"input {tensor.name!r} is given more than once")
            if tensor.datatype != spec.datatype:
                raise bad_request(
                    f"input {tensor.name!r}: expected datatype {spec.datatype}, "
                    f"got {tensor.datatype}"
                )
            shape = tensor.shape
            if len(shape) != len(spec.shape) or any(
                want >= 0 and want != got for want, got in zip(spec.shape, shape, strict=True)
            ):
                raise bad_request(
                    f"input {tensor.name!r}: expected shape {_shape_text(spec.shape)}, "
                    f"got {_shape_text(shape)}"
                )
            feeds[tensor.name] = tensor.data
        if len(feeds) != len(specs):
            missing = [spec for name, spec in specs.items() if name not in feeds]
            raise bad_request(
                "missing input(s): "
                + ", ".join(
                    f"{spec.name!r} ({spec.datatype} {_shape_text(spec.shape)})" for spec in missing
                )
            )
        if not self._batchable:
            return feeds, 1
        rows = {array.shape[0] for array in feeds.values()}
        if len(rows) != 1:
            # Inputs disagree on the batch dimension; ONNX Runtime will judge, unmerged.
            return feeds, -1
        return feeds, rows.pop()

    def _requested_outputs(self, request: InferenceRequest) -> tuple[tuple[str, ...], list[bool]]:
        if request.outputs is None:
            return self._all_outputs, [request.binary_output] * len(self._all_outputs)
        names: list[str] = []
        binary: list[bool] = []
        for output in request.outputs:
            if output.name not in self._outputs:
                raise bad_request(
                    f"unknown output {output.name!r}; the model's outputs are "
                    f"{', '.join(repr(n) for n in self._outputs)}"
                )
            if output.name in names:
                raise bad_request(f"output {output.name!r} is requested more than once")
            names.append(output.name)
            binary.append(request.binary_output if output.binary is None else output.binary)
        if not names:
            return self._all_outputs, [request.binary_output] * len(self._all_outputs)
        return tuple(names), binary

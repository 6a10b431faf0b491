"""The inference logic behind every endpoint: model state, metadata, request checks, infer.

Protocol-neutral: it takes decoded names and bytes and returns documents or raises
``InferenceError``; the HTTP endpoints only translate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from kiln_server import __version__
from kiln_server.batching import Batcher, Outcome, Ticket
from kiln_server.codec import InferenceRequest, OutputTensor, decode_request, encode_response
from kiln_server.content_coding import decoded_body
from kiln_server.drift import DriftMonitor, DriftReport
from kiln_server.errors import InferenceError, bad_request, not_found, unavailable
from kiln_server.metrics import ServerMetrics
from kiln_server.pending import Pending
from kiln_server.runtime import OnnxModel, TensorSpec
from kiln_server.settings import ServeSettings

log = logging.getLogger("kiln_server.dataplane")

SERVER_NAME = "kiln-server"
EXTENSIONS = ("binary_tensor_data",)
# Bodies from this size on (and every compressed body) are decoded on a worker thread.
OFFLOAD_BODY_BYTES = 256 * 1024
# Counted for a request whose client went away before its answer (nginx's convention).
CLIENT_CLOSED = 499
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Respond(Generic[T]):
    """How the caller wants an infer outcome: ``ok(body, json_header_length)`` for a result,
    ``failed(error)`` for a refusal or failure."""

    ok: Callable[[bytes, int | None], T]
    failed: Callable[[InferenceError], T]


def _decode(
    body: bytes, content_encoding: bytes | None, header_length: int | None, limit: int
) -> InferenceRequest:
    return decode_request(decoded_body(body, content_encoding, limit), header_length)


def _fits(declared: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """``shape`` has the declared size on every fixed (non-negative) dimension."""
    for want, got in zip(declared, shape, strict=True):  # noqa: SIM110 - no generator per request
        if want >= 0 and want != got:
            return False
    return True


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
        self._decode_executor: ThreadPoolExecutor | None = None
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
        if self._decode_executor is not None:
            self._decode_executor.shutdown(wait=False)

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
    def infer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: int | None,
        content_encoding: bytes | None,
        respond: Respond[T],
    ) -> T | Pending[T]:
        """Run one infer request; ``respond`` turns its outcome into the caller's answer.

        An answer known at once (a refused request) is returned as is; otherwise a
        ``Pending``, settled with the answer, failures included (``respond.failed``).
        Cancelling it (the client went away) withdraws the request from the batch queue and
        counts it as 499.
        """
        self.resolve(name, version)
        call = _InferCall(self, respond)
        try:
            self.check_ready()
            if content_encoding is None and len(body) < OFFLOAD_BODY_BYTES:
                call.decoded(decode_request(body, header_length))
                return call.answer()
            # A large or compressed body is decoded on a worker: inflating and parsing up
            # to the size limit must not stall every other connection.
            work = asyncio.get_running_loop().run_in_executor(
                self._decoder(), _decode, body, content_encoding, header_length,
                self.settings.max_request_bytes,
            )  # fmt: skip
            call.work = work
            work.add_done_callback(call.decoded_later)
            return call.answer()
        except InferenceError as error:
            return call.failed(error)
        except Exception as error:
            return call.crashed(error)

    def _decoder(self) -> ThreadPoolExecutor:
        if self._decode_executor is None:
            self._decode_executor = ThreadPoolExecutor(1, "kiln-decode")
        return self._decode_executor

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
            if len(shape) != len(spec.shape) or not _fits(spec.shape, shape):
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
        if len(feeds) == 1:
            return feeds, request.inputs[0].data.shape[0]
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


class _InferCall(Generic[T]):
    """One infer request on its way: decoded, queued for the model, encoded, answered.

    Callbacks rather than coroutines: no task per request, and no future between the
    batcher and the connection. The request is accounted for once: when its answer is made,
    or when it is withdrawn.
    """

    __slots__ = ("binary", "names", "pending", "plane", "request_id", "respond", "started", "work")

    def __init__(self, plane: DataPlane, respond: Respond[T]) -> None:
        self.plane = plane
        self.respond = respond
        self.started = time.perf_counter()
        self.pending: Pending[T] | None = None
        self.work: asyncio.Future[Any] | Ticket | None = None
        self.request_id: str | None = None
        self.names: tuple[str, ...] = ()
        self.binary: list[bool] = []
        plane.metrics.request_started()

    def decoded(self, request: InferenceRequest) -> None:
        """Check the request against the model and queue it (raises ``InferenceError``)."""
        plane = self.plane
        assert plane._batcher is not None
        feeds, rows = plane._feeds(request)
        self.names, self.binary = plane._requested_outputs(request)
        self.request_id = request.id
        self.work = plane._batcher.submit(feeds, self.names, rows, self.computed)

    def answer(self) -> Pending[T]:
        """What the caller waits on; cancelling it withdraws the request."""
        pending: Pending[T] = Pending(self.withdraw)
        self.pending = pending
        return pending

    def decoded_later(self, work: asyncio.Future[InferenceRequest]) -> None:
        self._step(lambda: self.decoded(work.result()))

    def computed(self, outcome: Outcome) -> None:
        # The ticket refers back to this call (``on_done``): let go of it, so that the
        # request's objects are freed at once, not left for the cycle collector.
        self.work = None
        self._step(lambda: self._encoded(outcome))

    def _step(self, step: Callable[[], T | None]) -> None:
        """Take the next step unless the request was withdrawn; its answer, or its failure
        made into one, settles the pending answer (a step that queues work answers None)."""
        pending = self.pending
        if pending is None or pending.done:
            return
        try:
            answer = step()
        except InferenceError as error:
            answer = self.failed(error)
        except Exception as error:
            answer = self.crashed(error)
        if answer is not None:
            pending.settle(answer)

    def _encoded(self, outcome: Outcome) -> T:
        if isinstance(outcome, Exception):
            raise outcome
        settings = self.plane.settings
        outputs = [
            OutputTensor(name, array, flag)
            for name, array, flag in zip(self.names, outcome, self.binary, strict=True)
        ]
        body, json_length = encode_response(
            settings.model_name, settings.model_version, self.request_id, outputs
        )
        self.plane.metrics.request_finished(200, time.perf_counter() - self.started)
        return self.respond.ok(body, json_length)

    def failed(self, error: InferenceError) -> T:
        self.plane.metrics.request_finished(error.status, time.perf_counter() - self.started)
        return self.respond.failed(error)

    def crashed(self, error: Exception) -> T:
        log.error("inference failed for model %s", self.plane.settings.model_name, exc_info=error)
        return self.failed(InferenceError(500, f"inference failed: {error}"))

    def withdraw(self) -> None:
        work, self.work = self.work, None  # a withdrawn ticket waits in the queue a while
        if work is not None:
            work.cancel()
        self.plane.metrics.request_finished(CLIENT_CLOSED, time.perf_counter() - self.started)

"""``kiln-server serve``: bring a model up behind the HTTP server and take it down gracefully.

Order: listen first (liveness answers while the model loads), load the model and warm it up
off the event loop, then report ready. SIGTERM/SIGINT: report not ready, stop accepting,
finish in-flight requests, close keep-alive connections, exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

import numpy as np
from prometheus_client import disable_created_metrics

from kiln_server.app import create_app
from kiln_server.baseline import BaselineError, load_baseline
from kiln_server.batching import Batcher, RowsObserver
from kiln_server.dataplane import DataPlane
from kiln_server.drift import DriftMonitor, drift_input
from kiln_server.http_server import HttpServer, ServerState
from kiln_server.metrics import ServerMetrics
from kiln_server.runtime import ModelLoadError, OnnxModel
from kiln_server.settings import ServeSettings

log = logging.getLogger("kiln_server.server")

# A call expected to take less than this runs on the event loop: a thread hop costs more.
_INLINE_CALL_SECONDS = 0.0002
_WARM_UP_REPEATS = 5


def _drift_monitor(settings: ServeSettings, model: OnnxModel) -> DriftMonitor | None:
    if not os.path.exists(settings.baseline_path):
        return None
    baseline = load_baseline(settings.baseline_path)
    name, columns = drift_input(baseline, model.signature.inputs)
    return DriftMonitor(baseline, name, columns, settings.drift_window_rows)


def _load(settings: ServeSettings) -> tuple[OnnxModel, DriftMonitor | None, bool]:
    """Load, warm up and time the model (runs on a worker thread)."""
    model = OnnxModel(settings.model_path, device=settings.device, threads=settings.ort_threads)
    drift = _drift_monitor(settings, model)
    model.time_run(1, _WARM_UP_REPEATS)
    rows = settings.max_batch_size if model.signature.batchable else 1
    seconds = model.time_run(rows, _WARM_UP_REPEATS)
    run_inline = settings.device == "cpu" and seconds < _INLINE_CALL_SECONDS
    log.info(
        "model %s loaded on %s (%s); %d-row call %.1f us; ORT calls run %s",
        settings.model_name,
        settings.device,
        ", ".join(model.providers),
        rows,
        seconds * 1e6,
        "on the event loop" if run_inline else "on a worker thread",
    )
    return model, drift, run_inline


def _observe_drift(drift: DriftMonitor | None) -> RowsObserver | None:
    if drift is None:
        return None
    name = drift.input_name

    def observe(feeds: dict[str, np.ndarray]) -> None:
        rows = feeds.get(name)
        if rows is not None:
            drift.observe(rows)

    return observe


def _settle_garbage_collector() -> None:
    """Once the model is loaded, everything alive (libraries, the session, the server) lives
    as long as the process: freeze it, so the collections that request churn triggers do
    not walk it again and again (unfrozen, collections took up to a fifth of the CPU of a
    small request here)."""
    gc.collect()
    gc.freeze()


class ModelServer:
    """One serve process: HTTP server, data plane and the model's lifecycle."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics(settings.model_name, settings.model_version, settings.device)
        self.dataplane = DataPlane(settings, self.metrics)
        self.http = HttpServer(
            ServerState(
                handler=create_app(self.dataplane),
                max_body=settings.max_request_bytes,
                max_buffered_bytes=settings.request_body_budget,
                keep_alive_timeout=settings.keep_alive_timeout,
                max_connections=settings.max_connections,
                min_body_rate=settings.min_body_rate,
                body_grace=settings.body_grace,
            )
        )
        self._batcher: Batcher | None = None

    async def start(self) -> None:
        await self.http.start(self.settings.host, self.settings.port)
        log.info("listening on %s:%d", self.settings.host, self.http.port)

    async def load(self) -> bool:
        """Load and warm up the model; on failure readiness reports why. True when ready."""
        settings = self.settings
        try:
            model, drift, run_inline = await asyncio.to_thread(_load, settings)
        except (ModelLoadError, BaselineError, OSError, ValueError) as error:
            log.error("model %s cannot be served: %s", settings.model_name, error)
            self.dataplane.fail(str(error))
            return False
        except Exception as error:
            log.exception("model %s failed to load", settings.model_name)
            self.dataplane.fail(f"loading failed: {error}")
            return False
        metrics = self.metrics

        def on_batch(rows: int, seconds: float) -> None:
            metrics.batch_size.observe(rows)
            metrics.compute_duration.observe(seconds)

        observe = _observe_drift(drift)
        self._batcher = Batcher(
            model.run,
            max_batch_size=settings.max_batch_size,
            max_queue_delay=settings.max_queue_delay_ms / 1000.0,
            max_queued_requests=settings.max_queued_requests,
            mergeable=model.signature.batchable,
            run_inline=run_inline,
            on_batch=on_batch,
            on_queued=metrics.queue_duration.observe,
            on_rows=observe,
        )
        self.dataplane.activate(model, self._batcher, drift)
        _settle_garbage_collector()
        log.info("model %s is ready", settings.model_name)
        return True

    async def shutdown(self) -> None:
        self.dataplane.stop()
        await self.http.drain(self.settings.shutdown_timeout)
        if self._batcher is not None:
            self._batcher.close()


async def serve(settings: ServeSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = ModelServer(settings)
    await server.start()
    loading = loop.create_task(server.load())
    await stop.wait()
    log.info("signal received: draining")
    loading.cancel()
    await server.shutdown()
    log.info("stopped")


def run(settings: ServeSettings) -> None:
    # The *_created series double the exposition size and no consumer reads them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        import uvloop
    except ImportError:  # the fast loop is optional (e.g. on Windows)
        asyncio.run(serve(settings))
        return
    uvloop.run(serve(settings))

"""The operator process behind ``kiln-operator``: connect, start the controllers, serve
probes and metrics, stop cleanly.

kopf hosts the process (signal handling, the liveness endpoint, logging) and registers no
resource handlers: Kiln's own controllers (:mod:`kiln_operator.controller`) watch with
server-side label selectors and reconcile through their work queues. They run as tasks
started by kopf's startup handler and cancelled by its cleanup handler. Everything is built
on a fresh :class:`kopf.OperatorRegistry` inside :func:`build_registry`, never on kopf's
module-level default, so importing this module registers nothing and two operators in one
test process cannot see each other.

Several replicas may run at once: every write is idempotent or guarded by a
resourceVersion, so they never duplicate a run or a version (they only share the work).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
import prometheus_client

from kiln_operator import kube
from kiln_operator.accelerators import load_accelerator_map
from kiln_operator.controller.context import OperatorContext, Settings
from kiln_operator.handlers import inferenceservice as inferenceservice_handlers
from kiln_operator.handlers import modelversion as modelversion_handlers
from kiln_operator.handlers import trainingjob as trainingjob_handlers
from kiln_operator.options import OperatorOptions, gpu_variant
from kiln_operator.scrape import Scraper

log = logging.getLogger("kiln.operator")


@dataclass
class Shutdown:
    """How the process stops: setting ``flag`` stops kopf; ``failed`` says a controller
    stopped by itself."""

    flag: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False

    def fail(self) -> None:
        self.failed = True
        self.flag.set()


def build_registry(
    options: OperatorOptions | None = None, shutdown: Shutdown | None = None
) -> kopf.OperatorRegistry:
    """A registry whose startup handler starts Kiln's controllers.

    The accelerator map is read here, so a broken file stops the operator before it
    touches anything; the API client is connected when kopf starts its event loop. A
    controller that stops by itself (a bug: they retry every API failure) calls
    ``on_failure``, which stops the process, so that its pod restarts instead of looking
    healthy while nothing reconciles.
    """
    options = options or OperatorOptions()
    shutdown = shutdown or Shutdown()
    registry = kopf.OperatorRegistry()
    accelerators = load_accelerator_map(options.accelerator_map)
    settings = Settings(
        resync_seconds=options.resync_seconds,
        workers=options.workers,
        model_server_image=options.model_server_image,
        model_server_gpu_image=options.model_server_gpu_image
        or gpu_variant(options.model_server_image),
        validation_deadline_seconds=options.validation_deadline_seconds,
        model_server_pull_secrets=options.model_server_pull_secrets,
    )
    namespaces = None if options.all_namespaces else list(options.namespaces)
    running: list[asyncio.Task[None]] = []
    clients: list[kube.Kube] = []
    scrapers: list[Scraper] = []

    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def start_controllers(**_: Any) -> None:
        client = await kube.Kube.connect()
        clients.append(client)
        ctx = OperatorContext.of(client, accelerators, settings)
        scrapers.append(ctx.scraper)
        for controller in [
            trainingjob_handlers.controller(ctx),
            modelversion_handlers.controller(ctx),
            inferenceservice_handlers.controller(ctx),
        ]:
            task = asyncio.create_task(
                controller.run(client, namespaces), name=f"{controller.kind} controller"
            )
            task.add_done_callback(functools.partial(_report_stop, shutdown))
            running.append(task)

    @kopf.on.cleanup(registry=registry)
    async def stop_controllers(**_: Any) -> None:
        for task in running:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*running, return_exceptions=True)
        for client in clients:
            await client.close()
        for scraper in scrapers:
            await scraper.close()
        shutdown.flag.set()  # kopf waits for every task, its own waiter on this flag too

    return registry


def _report_stop(shutdown: Shutdown, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    log.error("%s stopped: %r; stopping the operator", task.get_name(), task.exception())
    shutdown.fail()


def _settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING
    settings.networking.error_backoffs = [1, 2, 5, 10]
    return settings


class ControllerStopped(Exception):
    """A controller ended by itself; the operator stopped."""


async def run_operator(options: OperatorOptions) -> None:
    """Run the operator until it is told to stop (SIGTERM/SIGINT).

    Raises :class:`ControllerStopped` when it stopped because a controller did.
    """
    log_format = {
        "plain": kopf.LogFormat.PLAIN,
        "full": kopf.LogFormat.FULL,
        "json": kopf.LogFormat.JSON,
    }[options.log_format]
    kopf.configure(verbose=options.verbose, log_format=log_format)
    shutdown = Shutdown()
    registry = build_registry(options, shutdown)  # first: a broken configuration stops us here
    if options.metrics_port:
        prometheus_client.start_http_server(options.metrics_port)
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    log.info(
        "starting kiln-operator (%s)",
        "all namespaces" if options.all_namespaces else ", ".join(options.namespaces),
    )
    await kopf.operator(
        registry=registry,
        settings=_settings(),
        clusterwide=options.all_namespaces,
        namespaces=options.namespaces,
        standalone=True,
        liveness_endpoint=liveness,
        stop_flag=shutdown.flag,
    )
    if shutdown.failed:
        raise ControllerStopped("a controller stopped; see the log above")

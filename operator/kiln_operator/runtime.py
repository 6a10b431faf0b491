"""Start kopf with Kiln's handlers: the process-level wiring behind ``kiln-operator``.

Handlers are registered on a fresh :class:`kopf.OperatorRegistry` inside
:func:`build_registry`, never on kopf's module-level default registry, so importing this
module registers nothing and two operators in one test process cannot see each other.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import prometheus_client

from kiln_operator import API_GROUP, API_VERSION, kube
from kiln_operator.accelerators import load_accelerator_map
from kiln_operator.cli import OperatorOptions
from kiln_operator.handlers import trainingjob as trainingjob_handlers
from kiln_operator.reconcilers.trainingjob import TrainingJobContext, crash_point_from_environment

log = logging.getLogger("kiln.operator")

#: Kinds whose reconcilers are still to come: their events are only logged for now.
LOGGED_KINDS = ("modelversions", "inferenceservices")


def build_registry(options: OperatorOptions | None = None) -> kopf.OperatorRegistry:
    """Register Kiln's handlers on a registry of their own.

    The accelerator map is read here, so a broken file stops the operator before it
    touches anything; the API client is connected when kopf starts its event loop.
    """
    options = options or OperatorOptions()
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    training = TrainingJobContext(
        accelerators=load_accelerator_map(options.accelerator_map),
        resync_seconds=options.resync_seconds,
        crash_point=crash_point_from_environment(),
    )

    @kopf.on.startup(registry=registry)
    async def connect(**_: Any) -> None:
        training.client = await kube.Kube.connect()

    @kopf.on.cleanup(registry=registry)
    async def disconnect(**_: Any) -> None:
        if training.queue is not None:
            training.queue.close()
        if training.client is not None:
            await training.client.close()

    trainingjob_handlers.register(registry, training)
    for plural in LOGGED_KINDS:
        kopf.on.event(API_GROUP, API_VERSION, plural, registry=registry)(_log_event)
    return registry


def _log_event(type: str | None, name: str, namespace: str | None, resource: Any, **_: Any) -> None:
    log.info("observed %s %s %s/%s", type or "existing", resource.plural, namespace, name)


def _settings(options: OperatorOptions) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # The CRD schemas prune unknown status fields, so kopf's bookkeeping lives in
    # annotations under Kiln's own prefix (Argo CD ignores annotations absent from git).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kiln.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kiln.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    return settings


async def run_operator(options: OperatorOptions) -> None:
    """Run the operator until it is told to stop (SIGTERM/SIGINT)."""
    log_format = {
        "plain": kopf.LogFormat.PLAIN,
        "full": kopf.LogFormat.FULL,
        "json": kopf.LogFormat.JSON,
    }[options.log_format]
    kopf.configure(verbose=options.verbose, log_format=log_format)
    registry = build_registry(options)  # first: a broken configuration stops us here
    if options.metrics_port:
        prometheus_client.start_http_server(options.metrics_port)
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    log.info(
        "starting kiln-operator (%s)",
        "all namespaces" if options.all_namespaces else ", ".join(options.namespaces),
    )
    await kopf.operator(
        registry=registry,
        settings=_settings(options),
        clusterwide=options.all_namespaces,
        namespaces=options.namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        liveness_endpoint=liveness,
    )

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

from kiln_operator import API_GROUP, API_VERSION
from kiln_operator.cli import OperatorOptions

log = logging.getLogger("kiln.operator")

#: The plural resource names of the three kinds, as the CRDs declare them.
KINDS = ("trainingjobs", "modelversions", "inferenceservices")


def build_registry() -> kopf.OperatorRegistry:
    """Register Kiln's handlers on a registry of their own."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    for plural in KINDS:
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
    if options.metrics_port:
        prometheus_client.start_http_server(options.metrics_port)
    liveness = f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
    log.info(
        "starting kiln-operator (%s)",
        "all namespaces" if options.all_namespaces else ", ".join(options.namespaces),
    )
    await kopf.operator(
        registry=build_registry(),
        settings=_settings(options),
        clusterwide=options.all_namespaces,
        namespaces=options.namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        liveness_endpoint=liveness,
    )

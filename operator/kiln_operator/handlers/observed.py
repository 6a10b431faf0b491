"""Kinds whose reconcilers are still to come (InferenceService): their objects are only
followed and logged for now, through the same controller core, so the operator already
watches them the way their reconcilers will."""

from __future__ import annotations

from kiln_operator import kube
from kiln_operator.controller.queue import Key
from kiln_operator.controller.runner import Controller
from kiln_operator.controller.watches import for_kind
from kiln_operator.objectlog import object_log

FOLLOWED: tuple[kube.Resource, ...] = (kube.INFERENCE_SERVICES,)


def controllers() -> list[Controller]:
    return [_logging_controller(resource) for resource in FOLLOWED]


def _logging_controller(resource: kube.Resource) -> Controller:
    async def log_observed(key: Key) -> float | None:
        object_log(resource.kind, *key).info("observed; no reconciler for this kind yet")
        return None

    return Controller(kind=resource.kind, reconcile=log_observed, watches=[for_kind(resource)])

"""The InferenceService controller: what wakes a reconcile of an InferenceService.

Its own events; those of its Deployments and Services (filtered by the
``kiln.dev/inferenceservice`` label at the API server, mapped to the owner through the
annotation of the same name); and those of ModelVersions (those carrying a
``kiln.dev/model`` label), mapped to the InferenceServices of the same namespace that serve
that model, so that a newly validated version is picked up at once. That last mapping
needs to know which model each InferenceService serves: :class:`ServedModels` remembers it
from the InferenceService watch (names only, no objects).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from kiln_operator import kube, naming
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.queue import Key
from kiln_operator.controller.runner import Controller
from kiln_operator.controller.watches import Watch, for_kind, maps, owns_all
from kiln_operator.reconcilers import inferenceservice

Obj = dict[str, Any]


class ServedModels:
    """Which model each InferenceService serves, learnt from its watch events."""

    def __init__(self) -> None:
        self._model_of: dict[Key, str] = {}

    def observe(self, isvc: Obj) -> Iterable[Key]:
        """Remember ``isvc``'s model; the key to reconcile is its own."""
        meta = isvc.get("metadata") or {}
        if not meta.get("name"):
            return []
        key = (meta.get("namespace") or "", meta["name"])
        model = ((isvc.get("spec") or {}).get("model") or {}).get("name")
        if model and not meta.get("deletionTimestamp"):
            self._model_of[key] = str(model)
        else:
            self._model_of.pop(key, None)
        return [key]

    def serving(self, model_version: Obj) -> Iterable[Key]:
        """The InferenceServices of ``model_version``'s namespace that serve its model."""
        namespace = (model_version.get("metadata") or {}).get("namespace")
        model = (model_version.get("spec") or {}).get("model")
        return sorted(
            key for key, served in self._model_of.items() if key[0] == namespace and served == model
        )


def controller(ctx: OperatorContext) -> Controller:
    served = ServedModels()
    own = for_kind(kube.INFERENCE_SERVICES)
    watches: list[Watch] = [
        Watch(own.resource, served.observe),
        *owns_all(
            (kube.DEPLOYMENTS, kube.SERVICES),
            naming.INFERENCE_SERVICE_LABEL,
            naming.INFERENCE_SERVICE_ANNOTATION,
        ),
        maps(kube.MODEL_VERSIONS, served.serving, label_selector=naming.MODEL_LABEL),
    ]
    return Controller(
        kind="InferenceService",
        reconcile=functools.partial(inferenceservice.reconcile, ctx),
        watches=watches,
        workers=ctx.settings.workers,
    )

"""The ModelVersion controller: what wakes a reconcile of a ModelVersion.

The ModelVersion's own events, and those of its validation Jobs and their pods (filtered by
the ``kiln.dev/modelversion`` label at the API server, mapped to the owner through the
annotation of the same name, which holds the full name when the label had to be shortened).
"""

from __future__ import annotations

import functools

from kiln_operator import kube, naming
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.runner import Controller
from kiln_operator.controller.watches import for_kind, owns_all
from kiln_operator.reconcilers import modelversion


def controller(ctx: OperatorContext) -> Controller:
    return Controller(
        kind="ModelVersion",
        reconcile=functools.partial(modelversion.reconcile, ctx),
        watches=[
            for_kind(kube.MODEL_VERSIONS),
            *owns_all(
                (kube.JOBS, kube.PODS),
                naming.MODEL_VERSION_OWNER_LABEL,
                naming.MODEL_VERSION_ANNOTATION,
            ),
        ],
        workers=ctx.settings.workers,
    )

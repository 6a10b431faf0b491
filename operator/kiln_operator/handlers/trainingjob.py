"""The TrainingJob controller: what wakes a reconcile of a TrainingJob.

Level-triggered: the TrainingJob's own events (including the initial list after a
restart), events of its Jobs and pods (filtered by the ``kiln.dev/trainingjob`` label at
the API server, mapped to the owner through the ``kiln.dev/trainingjob`` annotation, which
holds the full name when the label had to be shortened) and the reconcile's own requested
re-runs (next schedule, periodic resync, backoff) all lead to the same reconcile, one at a
time per TrainingJob (:mod:`kiln_operator.controller.runner`).
"""

from __future__ import annotations

import functools

from kiln_operator import kube, naming
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.runner import Controller
from kiln_operator.controller.watches import for_kind, owns_all
from kiln_operator.reconcilers import trainingjob


def controller(ctx: OperatorContext) -> Controller:
    return Controller(
        kind="TrainingJob",
        reconcile=functools.partial(trainingjob.reconcile, ctx),
        watches=[
            for_kind(kube.TRAINING_JOBS),
            *owns_all(
                (kube.JOBS, kube.PODS), naming.TRAINING_JOB_LABEL, naming.TRAINING_JOB_ANNOTATION
            ),
        ],
        workers=ctx.settings.workers,
    )

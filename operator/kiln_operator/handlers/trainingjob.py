"""kopf handlers for TrainingJobs: every event becomes a reconcile of the TrainingJob.

Level-triggered: the TrainingJob's own events (including the initial listing after a
restart), events of its Jobs and pods (mapped to the owner through the
``kiln.dev/trainingjob`` annotation) and the reconcile's own requested re-runs (next
schedule, periodic resync, transient errors) all lead to the same reconcile, serialised
per TrainingJob by a :class:`~kiln_operator.workqueue.WorkQueue`. Handlers never raise:
kopf would retry with its own backoff and write its own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kiln_operator import API_GROUP, API_VERSION, kube, naming
from kiln_operator.decisions.retry import retry_delay
from kiln_operator.metrics import RECONCILE_SECONDS, RECONCILES
from kiln_operator.objectlog import object_log
from kiln_operator.reconcilers import trainingjob
from kiln_operator.workqueue import Key, WorkQueue


def register(registry: kopf.OperatorRegistry, ctx: trainingjob.TrainingJobContext) -> WorkQueue:
    """Register the TrainingJob handlers on ``registry``; returns their work queue."""
    failures: dict[Key, int] = {}

    async def reconcile_key(key: Key) -> float | None:
        with RECONCILE_SECONDS.labels("TrainingJob").time():
            try:
                outcome = await trainingjob.reconcile(ctx, key)
            except Exception as error:
                transient = kube.is_transient(error)
                count = failures[key] = failures.get(key, 0) + 1
                delay = retry_delay(transient, count)
                log = object_log("TrainingJob", *key)
                if transient or isinstance(error, kube.ApiError):
                    RECONCILES.labels("TrainingJob", "requeued").inc()
                    log.warning("reconcile failed: %s; retrying in %.0fs", error, delay)
                else:
                    RECONCILES.labels("TrainingJob", "error").inc()
                    log.exception("reconcile failed; retrying in %.0fs", delay)
                return delay
        failures.pop(key, None)
        RECONCILES.labels("TrainingJob", "ok").inc()
        return outcome.requeue_after

    queue = WorkQueue(reconcile_key)
    ctx.queue = queue

    @kopf.on.event(API_GROUP, API_VERSION, "trainingjobs", registry=registry)
    async def training_job_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
        key = (namespace or "", name)
        if type == "DELETED":
            queue.forget(key)
            failures.pop(key, None)
            return
        await queue.run(key)

    labelled = {naming.TRAINING_JOB_LABEL: kopf.PRESENT}

    @kopf.on.event("batch", "v1", "jobs", labels=labelled, registry=registry)
    async def run_job_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        await _owner_reconcile(queue, body, namespace)

    @kopf.on.event("", "v1", "pods", labels=labelled, registry=registry)
    async def run_pod_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        await _owner_reconcile(queue, body, namespace)

    return queue


async def _owner_reconcile(
    queue: WorkQueue, body: Mapping[str, Any], namespace: str | None
) -> None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    owner = annotations.get(naming.TRAINING_JOB_ANNOTATION)
    if owner and namespace:
        await queue.run((namespace, owner))

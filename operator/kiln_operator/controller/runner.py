"""One controller: its watches feed a work queue, a few workers reconcile what it holds.

A kind plugs in with a :class:`Controller`: its name, its watches
(:mod:`kiln_operator.controller.watches`) and a reconcile function that takes a key and
returns when to look again: seconds until something is due, a :class:`Recheck` when
nothing is due and it only wants to be sure, or None. Watch events are changes, the first
list of a watch only a recheck: the work queue hands out every change before any recheck.
Everything else is shared by all kinds and lives
here once: mapping watch events to keys, coalescing a burst of events into one reconcile,
bounded concurrency, per-key backoff after failures, the metrics of reconciles, and the
rule that a failed reconcile never stops the controller.

Whether a failure is temporary is decided by :func:`kiln_operator.kube.is_transient`; a
temporary one (a timeout, a 5xx, a 409 from a stale resourceVersion) backs off from half
a second, one only a human can fix (RBAC, a refused request) from thirty. Both are retried,
because the fix never announces itself with an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from kiln_operator import kube
from kiln_operator.controller.queue import Backoff, Key, ShutDown, WorkQueue
from kiln_operator.controller.watches import Obj, Watch, follow
from kiln_operator.metrics import QUEUE_DEPTH, RECONCILE_SECONDS, RECONCILES, WATCH_EVENTS
from kiln_operator.objectlog import object_log

log = logging.getLogger("kiln.operator")


@dataclass(frozen=True)
class Recheck:
    """Look again after ``seconds`` only to be sure, nothing being due then (the periodic
    resync): it waits behind every change queued meanwhile."""

    seconds: float


Reconcile = Callable[[Key], Awaitable[float | Recheck | None]]

#: Watch events for one key within this window are one add: the object and its children
#: usually change together (a Job and its pod, a status write and its own echo).
COALESCE_SECONDS: Final = 0.1
#: Backoff after an error that a retry alone cannot fix.
PERMANENT_BACKOFF: Final = Backoff(base=30.0, cap=300.0)


@dataclass
class Controller:
    """The reconciler of one kind and the watches that wake it."""

    kind: str
    reconcile: Reconcile
    watches: Sequence[Watch]
    workers: int = 4
    coalesce_seconds: float = COALESCE_SECONDS
    queue: WorkQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = WorkQueue()

    def observe(self, watch: Watch, event_type: str, obj: Obj) -> None:
        """A watched object changed: queue the keys it maps to."""
        WATCH_EVENTS.labels(self.kind, watch.resource.plural).inc()
        for key in watch.keys(obj):
            if watch.resource.kind == self.kind and event_type == "DELETED":
                self.queue.discard(key)
            # A list (the start, or after the watch expired) shows no change, only state.
            self.queue.add_after(key, self.coalesce_seconds, background=event_type == "LISTED")

    async def run(self, client: kube.Kube, namespaces: Sequence[str] | None) -> None:
        """Watch (``namespaces``, or every namespace when None) and reconcile until
        cancelled."""
        scopes: Sequence[str | None] = namespaces if namespaces else [None]
        tasks = [
            asyncio.create_task(
                follow(client, watch, scope, functools.partial(self.observe, watch)),
                name=f"watch {self.kind} {watch.description} {scope or '*'}",
            )
            for watch in self.watches
            for scope in scopes
        ]
        tasks += [
            asyncio.create_task(self._work(), name=f"reconcile {self.kind} #{index}")
            for index in range(self.workers)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shut_down()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            changes = self.queue.waiting_changes()
            QUEUE_DEPTH.labels(self.kind, "change").set(changes)
            QUEUE_DEPTH.labels(self.kind, "recheck").set(len(self.queue) - changes)
            try:
                await self._reconcile_once(key)
            finally:
                self.queue.done(key)

    async def _reconcile_once(self, key: Key) -> None:
        objlog = object_log(self.kind, *key)
        with RECONCILE_SECONDS.labels(self.kind).time():
            try:
                requeue_after = await self.reconcile(key)
            except kube.Conflict as error:
                RECONCILES.labels(self.kind, "requeued").inc()
                delay = self.queue.add_rate_limited(key)
                objlog.info("%s; re-reading in %.1fs", error, delay)
                return
            except Exception as error:
                transient = kube.is_transient(error)
                delay = self.queue.add_rate_limited(key, None if transient else PERMANENT_BACKOFF)
                if transient or isinstance(error, kube.ApiError):
                    RECONCILES.labels(self.kind, "requeued").inc()
                    objlog.warning("reconcile failed: %s; retrying in %.0fs", error, delay)
                else:
                    RECONCILES.labels(self.kind, "error").inc()
                    objlog.exception("reconcile failed; retrying in %.0fs", delay)
                return
        RECONCILES.labels(self.kind, "ok").inc()
        self.queue.forget(key)
        if isinstance(requeue_after, Recheck):
            self.queue.add_after(key, requeue_after.seconds, background=True)
        elif requeue_after is not None:
            self.queue.add_after(key, requeue_after)

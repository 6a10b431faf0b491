"""What a controller watches, declared, and the loop that follows one watch.

A controller declares its watches the way controller-runtime's builder does
(``For(kind).Owns(child).Watches(other, mapper)``): :func:`for_kind`, :func:`owns` and
:func:`maps` each name a resource, a label selector **the API server applies** (so the
operator never receives, let alone keeps, objects that are not Kiln's) and a pure mapping
from an observed object to the keys of the objects to reconcile.

:func:`follow` lists once, then watches from the list's resourceVersion, resumes from the
last version it saw when the server ends a watch or the connection drops, and lists again
only when the version has expired (410). Every object it observes (listed or watched,
deleted included) is handed to ``observe``; the first list is what makes a restarted
operator look at every object again. No object is cached: reconciles read what they need.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kiln_operator import kube
from kiln_operator.controller.queue import Key

log = logging.getLogger("kiln.operator")

Obj = dict[str, Any]
Mapper = Callable[[Obj], Iterable[Key]]

#: Seconds to wait before watching again after a failure, by consecutive failures.
RETRY_DELAYS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: How long the server keeps one watch open before we open the next.
WATCH_SECONDS: Final = 300


@dataclass(frozen=True)
class Watch:
    """One watched resource: its API server-side filter and the keys its objects map to."""

    resource: kube.Resource
    keys: Mapper
    label_selector: str | None = None

    @property
    def description(self) -> str:
        selector = f" [{self.label_selector}]" if self.label_selector else ""
        return f"{self.resource.plural}{selector}"


def for_kind(resource: kube.Resource) -> Watch:
    """The controller's own kind: each object maps to itself."""
    return Watch(resource, _self_key)


def owns(resource: kube.Resource, owner_label: str, owner_annotation: str) -> Watch:
    """Children carrying ``owner_label`` (filtered at the server); each maps to the owner
    named, in full, by its ``owner_annotation`` in the child's namespace."""

    def owner(obj: Obj) -> Iterable[Key]:
        meta = obj.get("metadata") or {}
        name = (meta.get("annotations") or {}).get(owner_annotation)
        namespace = meta.get("namespace")
        return [(namespace, name)] if name and namespace else []

    return Watch(resource, owner, label_selector=owner_label)


def owns_all(
    resources: Iterable[kube.Resource], owner_label: str, owner_annotation: str
) -> list[Watch]:
    """:func:`owns` for each of ``resources`` (e.g. a kind's Jobs and their pods)."""
    return [owns(resource, owner_label, owner_annotation) for resource in resources]


def maps(resource: kube.Resource, mapper: Mapper, label_selector: str | None = None) -> Watch:
    """Other objects whose changes concern the controller's objects, through ``mapper``."""
    return Watch(resource, mapper, label_selector=label_selector)


def _self_key(obj: Obj) -> Iterable[Key]:
    meta = obj.get("metadata") or {}
    return [(meta.get("namespace") or "", meta["name"])] if meta.get("name") else []


async def follow(
    client: kube.Kube,
    watch: Watch,
    namespace: str | None,
    observe: Callable[[str, Obj], None],
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> None:
    """Hand every change of ``watch`` in ``namespace`` (None: all) to ``observe``, forever.

    ``observe`` gets the event type ("LISTED" for objects of a list) and the object. It
    returns only when cancelled.
    """
    where = namespace or "all namespaces"
    version: str | None = None
    failures = 0
    while True:
        try:
            if version is None:
                listing = await client.listing(watch.resource, namespace, watch.label_selector)
                for item in listing.items:
                    observe("LISTED", item)
                version = listing.resource_version
            async for event in client.watch(
                watch.resource, namespace, version, watch.label_selector, WATCH_SECONDS
            ):
                version = event.object.get("metadata", {}).get("resourceVersion") or version
                failures = 0
                if event.type != "BOOKMARK":
                    observe(event.type, event.object)
        except kube.Expired:
            log.info("watch of %s in %s expired; listing again", watch.description, where)
            version = None
        except kube.ApiError as error:
            failures += 1
            delay = retry_delays[min(failures, len(retry_delays)) - 1]
            log.warning(
                "watch of %s in %s failed: %s; retrying in %.1fs",
                watch.description,
                where,
                error,
                delay,
            )
            if not kube.is_transient(error) or error.status != 0:
                version = None  # refused, not dropped: start over with a list
            await asyncio.sleep(delay)

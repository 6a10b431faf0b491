"""Post Events the way client-go's event recorder does: repeats become one Event.

An Event is identified by the object it is about (its uid), its type and its reason, and
named after them, so the same notice posted again, by this process after a restart or by
another replica, finds the Event that is already there and raises its ``count`` and
``lastTimestamp`` (and takes the newest message) instead of adding one more object.
``kubectl describe`` then shows ``x5 over 10m``. A small cache of counts saves the read
before each repeat. An Event that cannot be posted is logged, never fatal.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Final

from kiln_operator import kube
from kiln_operator.builders.event import aggregated_event_name, desired_event
from kiln_operator.conditions import EventType
from kiln_operator.objectlog import object_log

log = logging.getLogger("kiln.operator")

#: Events whose counts are remembered (the oldest are forgotten first).
CACHE_SIZE: Final = 4096


class EventRecorder:
    """Posts (and aggregates) Events through one API client."""

    def __init__(self, client: kube.Kube, cache_size: int = CACHE_SIZE) -> None:
        self._client = client
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._cache_size = cache_size

    async def post(
        self, involved: dict[str, Any], type_: EventType, reason: str, message: str, now: str
    ) -> None:
        meta = involved["metadata"]
        namespace = meta["namespace"]
        name = aggregated_event_name(involved, type_, reason)
        try:
            count = self._counts.get((namespace, name))
            if count is None:
                event = desired_event(involved, type_, reason, message, now, name=name)
                try:
                    await self._client.create(kube.EVENTS, event, namespace)
                    self._remember(namespace, name, 1)
                    return
                except kube.AlreadyExists:
                    existing = await self._client.get_or_none(kube.EVENTS, name, namespace)
                    count = int((existing or {}).get("count") or 0)
            await self._repeat(involved, type_, reason, message, now, name, count)
        except kube.ApiError as error:
            object_log(involved.get("kind", "object"), namespace, meta["name"]).warning(
                "could not post event %s: %s", reason, error
            )

    async def _repeat(
        self,
        involved: dict[str, Any],
        type_: EventType,
        reason: str,
        message: str,
        now: str,
        name: str,
        count: int,
    ) -> None:
        namespace = involved["metadata"]["namespace"]
        patch = {"count": count + 1, "lastTimestamp": now, "message": message[:1024]}
        try:
            await self._client.merge_patch(kube.EVENTS, name, namespace, patch)
        except kube.NotFound:
            # Expired (events live an hour) since we last saw it: start a new one.
            event = desired_event(involved, type_, reason, message, now, name=name)
            await self._client.create(kube.EVENTS, event, namespace)
            self._remember(namespace, name, 1)
            return
        self._remember(namespace, name, count + 1)

    def _remember(self, namespace: str, name: str, count: int) -> None:
        self._counts[(namespace, name)] = count
        self._counts.move_to_end((namespace, name))
        while len(self._counts) > self._cache_size:
            self._counts.popitem(last=False)

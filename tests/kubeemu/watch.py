"""Watch streams: newline-delimited JSON events, bookmarks, timeouts and 410 Expired.

A watch answers HTTP 200 at once and then writes one JSON event per line as changes happen.
A watch from a resourceVersion older than the history window gets a single ERROR event
carrying the `410 Expired` Status, exactly as a real API server answers it.

Bookmarks follow kube-apiserver v1.28's watch cache: a watch that names a resourceVersion
(and allows bookmarks) gets one about every minute and one two seconds before its timeout,
carrying the version of the newest change to the resource, and only when that change came
after the watch started (past the events it replayed). A watch without a resourceVersion is
served from etcd and gets none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.kubeemu import table
from tests.kubeemu.api import Api
from tests.kubeemu.errors import ApiError
from tests.kubeemu.resources import ResourceType
from tests.kubeemu.selectors import Predicate
from tests.kubeemu.store import Obj, Watcher


@dataclass(frozen=True)
class WatchRequest:
    """What one watch asked for, parsed from its query."""

    rt: ResourceType
    accepts: Predicate
    since: int | None
    bookmarks: bool
    initial_events: bool
    as_table: bool
    include_object: str
    deadline: float | None
    #: No resourceVersion given: a real server serves it from etcd, not its watch cache.
    from_storage: bool = False


def _line(event_type: str, obj: Any) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


class WatchStreams:
    """Serves every open watch of one API server."""

    def __init__(self, api: Api, bookmark_interval: float) -> None:
        self.api = api
        self.bookmark_interval = bookmark_interval
        self._stopping = False
        # Serialised events by stored object: fifty watchers of one change encode it once.
        self._encoded: dict[tuple[int, str], tuple[Obj, bytes]] = {}

    def stop(self) -> None:
        self._stopping = True
        self.api.store.close_all_watches()

    async def serve(
        self, request: web.Request, watch: WatchRequest, log_start: Callable[[], None]
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        store = self.api.store
        try:
            watcher = store.watch(watch.rt.storage_key, watch.accepts, watch.since)
            # Where the watch cache counts this watch as started: past every event it
            # replays (of any object of the resource). Live events do not move it.
            start = max(watch.since or 0, store.last_event_version(watch.rt.storage_key))
        except ApiError as error:
            log_start()
            await response.prepare(request)
            await response.write(_line("ERROR", error.status()))
            await response.write_eof()
            return response
        log_start()
        try:
            await response.prepare(request)
            await self._stream(response, watcher, watch, start)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(watch.rt.storage_key, watcher)
        return response

    async def _stream(
        self, response: web.StreamResponse, watcher: Watcher, watch: WatchRequest, start: int
    ) -> None:
        store = self.api.store
        if watch.initial_events and watch.bookmarks:
            initial = [
                self._event_line(watch, item) for item in _drain(watcher) if item is not None
            ]
            initial.append(self._bookmark(watch.rt, store.resource_version, initial_end=True))
            await response.write(b"".join(initial))
        key = watch.rt.storage_key
        bookmarks = watch.bookmarks and not watch.from_storage
        next_bookmark = self._next_bookmark(watch, time.monotonic()) if bookmarks else None
        while not self._stopping:
            now = time.monotonic()
            wake = next_bookmark if next_bookmark is not None else now + 3600
            if watch.deadline is not None:
                wake = min(wake, watch.deadline)
            try:
                item = await asyncio.wait_for(watcher.queue.get(), max(wake - now, 0))
            except TimeoutError:
                now = time.monotonic()
                if next_bookmark is not None and now >= next_bookmark:
                    # Every event up to now has been written, so the newest change is safe
                    # to resume from; the cache sends nothing the watch started past.
                    newest = store.last_event_version(key)
                    if newest > start:
                        await response.write(self._bookmark(watch.rt, newest))
                    next_bookmark = self._next_bookmark(watch, now)
                if watch.deadline is not None and now >= watch.deadline:
                    return
                continue
            if item is None:
                return
            lines = [self._event_line(watch, item)]
            for queued in _drain(watcher):
                if queued is None:
                    await response.write(b"".join(lines))
                    return
                lines.append(self._event_line(watch, queued))
            await response.write(b"".join(lines))

    def _next_bookmark(self, watch: WatchRequest, now: float) -> float | None:
        """When the next bookmark is due: within a minute, and two seconds before the end."""
        due = now + self.bookmark_interval
        if watch.deadline is not None:
            due = min(due, watch.deadline - 2.0)
        return due if due >= now else None

    def _event_line(self, watch: WatchRequest, item: tuple[str, Obj]) -> bytes:
        event_type, obj = item
        served = self.api.served(watch.rt, obj)
        if watch.as_table:
            rows = table.render(
                watch.rt,
                [served],
                {"resourceVersion": obj["metadata"]["resourceVersion"]},
                watch.include_object,
            )
            return _line(event_type, rows)
        if served is not obj:
            return _line(event_type, served)
        cached = self._encoded.get((id(obj), event_type))
        if cached is not None and cached[0] is obj:
            return cached[1]
        line = _line(event_type, obj)
        if len(self._encoded) > 20000:
            self._encoded.clear()
        self._encoded[(id(obj), event_type)] = (obj, line)
        return line

    def _bookmark(self, rt: ResourceType, rv: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _line("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})


def _drain(watcher: Watcher) -> list[tuple[str, Obj] | None]:
    """Everything already queued, without waiting."""
    items: list[tuple[str, Obj] | None] = []
    while not watcher.queue.empty():
        item = watcher.queue.get_nowait()
        items.append(item)
        if item is None:
            break
    return items

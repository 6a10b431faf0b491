"""Watch streams: newline-delimited JSON events, bookmarks, timeouts and 410 Expired.

A watch answers HTTP 200 at once and then writes one JSON event per line as changes happen.
A watch from a resourceVersion older than the history window gets a single ERROR event
carrying the `410 Expired` Status, exactly as a real API server answers it.
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
        except ApiError as error:
            log_start()
            await response.prepare(request)
            await response.write(_line("ERROR", error.status()))
            await response.write_eof()
            return response
        log_start()
        try:
            await response.prepare(request)
            await self._stream(response, watcher, watch)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(watch.rt.storage_key, watcher)
        return response

    async def _stream(
        self, response: web.StreamResponse, watcher: Watcher, watch: WatchRequest
    ) -> None:
        store = self.api.store
        if watch.initial_events and watch.bookmarks:
            initial = [
                self._event_line(watch, item) for item in _drain(watcher) if item is not None
            ]
            initial.append(self._bookmark(watch.rt, store.resource_version, initial_end=True))
            await response.write(b"".join(initial))
        next_bookmark = time.monotonic() + self.bookmark_interval
        while not self._stopping:
            now = time.monotonic()
            wake = next_bookmark if watch.bookmarks else now + 3600
            if watch.deadline is not None:
                wake = min(wake, watch.deadline)
            try:
                item = await asyncio.wait_for(watcher.queue.get(), max(wake - now, 0))
            except TimeoutError:
                if watch.bookmarks:
                    # Every event up to now has been written, so the current version is safe.
                    await response.write(self._bookmark(watch.rt, store.resource_version))
                    next_bookmark = time.monotonic() + self.bookmark_interval
                if watch.deadline is not None and time.monotonic() >= watch.deadline:
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

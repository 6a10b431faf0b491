"""Object storage with one global resourceVersion, a bounded event history and watchers.

Everything runs on the server's single event loop, so each method is atomic with respect to
requests. Stored objects are never mutated after they are stored: every write stores a new
dict, which lets watch events and list answers share them without copying.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.kubeemu.errors import ApiError, expired

StorageKey = tuple[str, str]
ObjectKey = tuple[str, str]  # (namespace or "", name)
Obj = dict[str, Any]

# etcd refuses a value larger than this (its default --max-request-bytes).
MAX_OBJECT_BYTES = 1572864
# How many events per resource type a watch can resume from; older ones answer 410 Expired.
HISTORY_WINDOW = 5000
# A first resourceVersion well above 1, so that clients resuming from "1" get 410 as on a
# real cluster whose etcd has long moved on.
FIRST_RESOURCE_VERSION = 100


@dataclass(frozen=True)
class Event:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    object: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    """One open watch: a queue of events that passed its filter."""

    accepts: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)

    def offer(self, event: Event) -> None:
        new_matches = self.accepts(event.object)
        old_matches = event.old is not None and self.accepts(event.old)
        if event.type == "DELETED":
            if new_matches or old_matches:
                self.queue.put_nowait(("DELETED", event.object))
        elif event.type == "ADDED":
            if new_matches:
                self.queue.put_nowait(("ADDED", event.object))
        elif new_matches and old_matches:
            self.queue.put_nowait(("MODIFIED", event.object))
        elif new_matches:
            self.queue.put_nowait(("ADDED", event.object))
        elif old_matches:
            self.queue.put_nowait(("DELETED", event.object))


@dataclass
class _Bucket:
    """All objects of one group+resource, with their recent history."""

    objects: dict[ObjectKey, Obj] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=lambda: deque(maxlen=HISTORY_WINDOW))
    window_start: int = 0
    watchers: set[Watcher] = field(default_factory=set)


class Store:
    """The etcd of the emulator."""

    def __init__(self) -> None:
        self._rv = FIRST_RESOURCE_VERSION
        self._buckets: dict[StorageKey, _Bucket] = {}
        self._by_uid: dict[str, tuple[StorageKey, ObjectKey]] = {}
        self._dependents: dict[str, set[tuple[StorageKey, ObjectKey]]] = {}
        self._in_namespace: dict[str, set[tuple[StorageKey, str]]] = {}

    @property
    def resource_version(self) -> int:
        return self._rv

    def bucket_exists(self, key: StorageKey) -> bool:
        return key in self._buckets

    def ensure_bucket(self, key: StorageKey) -> None:
        if key not in self._buckets:
            self._buckets[key] = _Bucket(window_start=self._rv)

    def drop_bucket(self, key: StorageKey) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            return
        for watcher in bucket.watchers:
            watcher.queue.put_nowait(None)
        for obj in bucket.objects.values():
            self._unindex(key, obj)

    def get(self, key: StorageKey, namespace: str, name: str) -> Obj | None:
        bucket = self._buckets.get(key)
        return None if bucket is None else bucket.objects.get((namespace, name))

    def items(self, key: StorageKey, namespace: str | None = None) -> list[Obj]:
        """Objects sorted by namespace and name, as etcd's key order lists them."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return []
        keys = sorted(bucket.objects)
        if namespace is not None:
            keys = [k for k in keys if k[0] == namespace]
        return [bucket.objects[k] for k in keys]

    def items_at(self, key: StorageKey, rv: int, namespace: str | None = None) -> list[Obj]:
        """The objects as they were at resourceVersion `rv`, rebuilt from the history.

        Raises 410 Expired when `rv` is older than the history window.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            return []
        if rv >= self._rv:
            return self.items(key, namespace)
        self.check_not_expired(key, rv)
        state = dict(bucket.objects)
        for event in reversed(bucket.history):
            if event.resource_version <= rv:
                break
            where = _object_key(event.object)
            if event.type == "ADDED":
                state.pop(where, None)
            elif event.old is not None:
                state[where] = event.old
        keys = sorted(k for k in state if namespace is None or k[0] == namespace)
        return [state[k] for k in keys]

    def namespaced_objects(self, namespace: str) -> list[tuple[StorageKey, Obj]]:
        """Everything stored in one namespace, whatever its kind."""
        found = []
        for key, name in sorted(self._in_namespace.get(namespace, ())):
            obj = self.get(key, namespace, name)
            if obj is not None:
                found.append((key, obj))
        return found

    def by_uid(self, uid: str) -> tuple[StorageKey, Obj] | None:
        where = self._by_uid.get(uid)
        if where is None:
            return None
        obj = self.get(where[0], *where[1])
        return None if obj is None else (where[0], obj)

    def dependents_of(self, uid: str) -> list[tuple[StorageKey, Obj]]:
        found = []
        for key, object_key in sorted(self._dependents.get(uid, ())):
            obj = self.get(key, *object_key)
            if obj is not None:
                found.append((key, obj))
        return found

    def all_with_owner_references(self) -> list[tuple[StorageKey, Obj]]:
        found = []
        for owner_uid in list(self._dependents):
            found.extend(self.dependents_of(owner_uid))
        return found

    def write(self, key: StorageKey, obj: Obj, old: Obj | None) -> Obj:
        """Store a created or changed object under a fresh resourceVersion; returns it."""
        if len(json.dumps(obj, separators=(",", ":"))) > MAX_OBJECT_BYTES:
            raise ApiError(500, "etcdserver: request is too large")
        self._rv += 1
        stored = _with_resource_version(obj, self._rv)
        bucket = self._buckets[key]
        object_key = _object_key(stored)
        if old is not None:
            self._unindex(key, old)
        bucket.objects[object_key] = stored
        self._index(key, stored)
        self._publish(bucket, Event(self._rv, "MODIFIED" if old else "ADDED", stored, old))
        return stored

    def remove(self, key: StorageKey, obj: Obj) -> Obj:
        """Delete an object for good; the DELETED event carries a fresh resourceVersion."""
        self._rv += 1
        bucket = self._buckets[key]
        bucket.objects.pop(_object_key(obj), None)
        self._unindex(key, obj)
        final = _with_resource_version(obj, self._rv)
        self._publish(bucket, Event(self._rv, "DELETED", final, obj))
        return final

    def watch(self, key: StorageKey, accepts: Callable[[Obj], bool], since: int | None) -> Watcher:
        """Open a watch. `since=None` starts with the current state as ADDED events."""
        bucket = self._buckets[key]
        watcher = Watcher(accepts)
        if since is None:
            for object_key in sorted(bucket.objects):
                obj = bucket.objects[object_key]
                if accepts(obj):
                    watcher.queue.put_nowait(("ADDED", obj))
        else:
            self.check_not_too_new(since)
            if since < bucket.window_start:
                raise expired(f"too old resource version: {since} ({bucket.window_start})")
            for event in bucket.history:
                if event.resource_version > since:
                    watcher.offer(event)
        bucket.watchers.add(watcher)
        return watcher

    def last_event_version(self, key: StorageKey) -> int:
        """The resourceVersion of the newest change to this resource (0 if none was seen)."""
        bucket = self._buckets.get(key)
        if bucket is None or not bucket.history:
            return 0
        return bucket.history[-1].resource_version

    def check_not_expired(self, key: StorageKey, since: int) -> None:
        bucket = self._buckets[key]
        if since < bucket.window_start:
            raise expired(f"too old resource version: {since} ({bucket.window_start})")

    def check_not_too_new(self, rv: int) -> None:
        """A version this server never issued: a real server gives up waiting for it."""
        if rv > self._rv:
            raise ApiError(
                504,
                f"Timeout: Too large resource version: {rv}, current: {self._rv}",
                reason="Timeout",
                details={
                    "causes": [
                        {
                            "reason": "ResourceVersionTooLarge",
                            "message": "Too large resource version",
                        }
                    ],
                    "retryAfterSeconds": 1,
                },
            )

    def unwatch(self, key: StorageKey, watcher: Watcher) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.watchers.discard(watcher)

    def close_all_watches(self) -> None:
        for bucket in self._buckets.values():
            for watcher in bucket.watchers:
                watcher.queue.put_nowait(None)

    def watcher_count(self) -> int:
        return sum(len(b.watchers) for b in self._buckets.values())

    def _publish(self, bucket: _Bucket, event: Event) -> None:
        full = len(bucket.history) == bucket.history.maxlen
        bucket.history.append(event)
        if full:
            # As the watch cache answers once it has dropped events: the oldest version a
            # watch can resume from is the one just before the oldest event still held.
            bucket.window_start = bucket.history[0].resource_version - 1
        for watcher in bucket.watchers:
            watcher.offer(event)

    def _index(self, key: StorageKey, obj: Obj) -> None:
        meta = obj["metadata"]
        where = (key, _object_key(obj))
        self._by_uid[meta["uid"]] = where
        if meta.get("namespace"):
            self._in_namespace.setdefault(meta["namespace"], set()).add((key, meta["name"]))
        for ref in meta.get("ownerReferences") or ():
            uid = ref.get("uid") if isinstance(ref, dict) else None
            if isinstance(uid, str):
                self._dependents.setdefault(uid, set()).add(where)

    def _unindex(self, key: StorageKey, obj: Obj) -> None:
        meta = obj["metadata"]
        where = (key, _object_key(obj))
        self._by_uid.pop(meta["uid"], None)
        members = self._in_namespace.get(meta.get("namespace") or "")
        if members is not None:
            members.discard((key, meta["name"]))
            if not members:
                del self._in_namespace[meta["namespace"]]
        for ref in meta.get("ownerReferences") or ():
            uid = ref.get("uid") if isinstance(ref, dict) else None
            if isinstance(uid, str) and uid in self._dependents:
                self._dependents[uid].discard(where)
                if not self._dependents[uid]:
                    del self._dependents[uid]


def _object_key(obj: Obj) -> ObjectKey:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _with_resource_version(obj: Obj, rv: int) -> Obj:
    meta: dict[str, Any] = {}
    placed = False
    for key, value in obj["metadata"].items():
        if key == "resourceVersion":
            continue
        meta[key] = value
        if key == "uid":
            meta["resourceVersion"] = str(rv)
            placed = True
    if not placed:
        meta["resourceVersion"] = str(rv)
    return {**obj, "metadata": meta}

"""Serialise reconciles per object and run them again later when asked to.

kopf calls handlers for the TrainingJob itself and for each of its Jobs and pods, possibly
at the same time; reconciles of one TrainingJob must not interleave (two of them could both
decide to start a run). A reconcile may also ask to run again after a delay: at the next
scheduled time, after a transient error, or simply to re-check the world periodically, which
keeps the operator level-triggered after missed events and restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("kiln.operator")

Key = tuple[str, str]
T = TypeVar("T")


class WorkQueue:
    """Per-key locks and delayed re-runs of one reconcile function."""

    def __init__(self, reconcile: Callable[[Key], Awaitable[float | None]]) -> None:
        self._reconcile = reconcile
        self._locks: dict[Key, asyncio.Lock] = {}
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def run(self, key: Key) -> None:
        """Reconcile ``key`` now (after any reconcile of it in progress) and schedule the
        re-run it asks for."""
        async with self.lock(key):
            delay = await self._reconcile(key)
        if delay is not None:
            self.requeue(key, delay)

    async def exclusive(self, key: Key, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` while holding ``key``'s lock (for entry points besides events)."""
        async with self.lock(key):
            return await work()

    def requeue(self, key: Key, delay: float) -> None:
        """Run ``key`` again after ``delay`` seconds, unless an earlier re-run is pending."""
        due = time.monotonic() + max(delay, 0.0)
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(delay, 0.0), self._fire, key)
        self._timers[key] = (due, handle)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its pending re-run and its lock."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        task = asyncio.get_running_loop().create_task(self.run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

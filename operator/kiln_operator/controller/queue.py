"""A work queue of object keys with client-go's semantics, for one controller.

- **Coalescing.** A key is queued at most once: while it waits, more adds of it are one
  add (the *dirty* set). While it is being reconciled (the *processing* set) an add only
  marks it dirty, and it is queued again when that reconcile is done. So a burst of events
  for one object becomes one reconcile, and one object is never reconciled twice at once.
- **Delayed adds.** ``add_after`` keeps the earliest pending time per key: the next
  schedule, a periodic resync and a backoff never pile up timers.
- **Changes before rechecks.** An add is a *change* (an event, a time something is due, a
  retry) unless it says it is ``background`` (a recheck only to be sure: the resync, the
  first list after a start). Workers take every waiting change before any recheck, and a
  change to a key whose recheck waits moves it ahead. So with a thousand rechecks queued
  a user's edit waits for the reconciles in progress, not for the backlog
  (controller-runtime's priority queue puts its initial list and resyncs last the same way).
- **Per-key exponential backoff with a cap.** ``add_rate_limited`` waits
  ``base * 2**failures`` (at most ``cap``) for that key; ``forget`` resets it after a
  success (client-go's ``ItemExponentialFailureRateLimiter``).
- **Bounded concurrency** comes from the number of workers calling :meth:`get`.

Everything runs on one asyncio event loop; no method blocks except :meth:`get`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

Key = tuple[str, str]

DEFAULT_BASE_DELAY: Final = 0.5
DEFAULT_MAX_DELAY: Final = 300.0


class ShutDown(Exception):
    """The queue was shut down: workers stop."""


@dataclass(frozen=True)
class Backoff:
    """Per-key exponential backoff: ``base * 2**(failures - 1)`` seconds, at most ``cap``."""

    base: float = DEFAULT_BASE_DELAY
    cap: float = DEFAULT_MAX_DELAY

    def delay(self, failures: int) -> float:
        exponent = min(max(failures - 1, 0), 62)  # past any cap long before 2**62
        return float(min(self.base * 2**exponent, self.cap))


class WorkQueue:
    """Keys to reconcile, each queued once, handed to workers one at a time."""

    def __init__(
        self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._queue: deque[Key] = deque()
        self._background: deque[Key] = deque()
        self._dirty: set[Key] = set()
        #: Dirty keys every add of which (since the last get) was a background one.
        self._only_background: set[Key] = set()
        self._processing: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, _Timer] = {}
        self._ready = asyncio.Event()
        self._shut_down = False
        #: Adds accepted (for metrics and tests): coalesced adds are not counted.
        self.queued = 0

    # -- adding --------------------------------------------------------------------------

    def add(self, key: Key, background: bool = False) -> None:
        """Reconcile ``key`` soon: once, however often it is added before it runs; after
        every waiting change if every add of it is ``background``."""
        if self._shut_down:
            return
        if key in self._dirty:
            if not background and key in self._only_background:
                self._only_background.discard(key)
                if key not in self._processing:
                    self._background.remove(key)
                    self._queue.append(key)
            return
        self._dirty.add(key)
        if background:
            self._only_background.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._lane(key).append(key)
        self.queued += 1
        self._ready.set()

    def add_after(self, key: Key, delay: float, background: bool = False) -> None:
        """Add ``key`` after ``delay`` seconds, unless an earlier add of it is pending; a
        pending background add that a change joins becomes a change."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key, background)
            return
        due = self._clock() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending.due <= due:
                pending.background = pending.background and background
                return
            pending.handle.cancel()
            background = pending.background and background
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = _Timer(due, handle, background)

    def add_rate_limited(self, key: Key, backoff: Backoff | None = None) -> float:
        """Add ``key`` after its next backoff delay (it failed again); returns the delay.

        ``backoff`` overrides the queue's own for this failure (a slower one for errors
        only a human can fix); the failure count is the key's either way.
        """
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = (backoff or self.backoff).delay(failures)
        self.add_after(key, delay)
        return delay

    def failures(self, key: Key) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        """``key`` succeeded: its next failure starts the backoff from the beginning."""
        self._failures.pop(key, None)

    def discard(self, key: Key) -> None:
        """The object is gone: drop its pending delayed add and its failure count."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending.handle.cancel()
        self._failures.pop(key, None)

    # -- working -------------------------------------------------------------------------

    async def get(self) -> Key:
        """The next key to reconcile; call :meth:`done` with it afterwards."""
        while not (self._queue or self._background):
            if self._shut_down:
                raise ShutDown
            self._ready.clear()
            await self._ready.wait()
        key = (self._queue or self._background).popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        self._only_background.discard(key)
        return key

    def done(self, key: Key) -> None:
        """The reconcile of ``key`` ended: queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._lane(key).append(key)
            self.queued += 1
            self._ready.set()

    def __len__(self) -> int:
        return len(self._queue) + len(self._background)

    def waiting_changes(self) -> int:
        """Keys waiting with a change (the rest wait only for a recheck)."""
        return len(self._queue)

    def shut_down(self) -> None:
        """Stop handing out keys; waiting workers get :class:`ShutDown`."""
        self._shut_down = True
        for timer in self._timers.values():
            timer.handle.cancel()
        self._timers.clear()
        self._queue.clear()
        self._background.clear()
        self._ready.set()

    def _lane(self, key: Key) -> deque[Key]:
        return self._background if key in self._only_background else self._queue

    def _fire(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        self.add(key, background=timer is not None and timer.background)


@dataclass
class _Timer:
    """A pending delayed add: when, its handle, and whether it is only a recheck."""

    due: float
    handle: asyncio.TimerHandle
    background: bool

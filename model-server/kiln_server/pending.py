"""An answer to come, cheaper than an asyncio future on the per-request path.

Settling a future schedules each of its callbacks on the event loop: one more handle and one
more pass of the loop for every request, only to call the connection that writes the
answer. A ``Pending`` hands the value to its one reader at once. Its reader (the HTTP
connection) calls ``cancel`` when the client has gone; the producer's ``on_cancel`` then
withdraws the work, and a later ``settle`` is ignored. Code that wants to ``await`` the
answer (the bench's ASGI peer, tests) still can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class Pending(Generic[T]):
    """One answer, settled once by its producer and read once by its reader."""

    __slots__ = ("_deliver", "_on_cancel", "_value", "_waiting", "done")

    def __init__(self, on_cancel: Callable[[], None] | None = None) -> None:
        self._on_cancel = on_cancel
        self._deliver: Callable[[T], None] | None = None
        self._value: T | None = None
        self._waiting = False  # settled before anyone read it
        self.done = False  # settled or cancelled

    def settle(self, value: T) -> None:
        """Give the answer; ignored once settled or cancelled."""
        if self.done:
            return
        self.done = True
        self._on_cancel = None  # the producer usually holds this: no cycle left for the GC
        deliver = self._deliver
        if deliver is None:
            self._value, self._waiting = value, True
        else:
            self._deliver = None
            deliver(value)

    def then(self, deliver: Callable[[T], None]) -> None:
        """Hand the answer to ``deliver`` when it is settled (now, if it already is)."""
        if self._waiting:
            value = self._value
            self._value, self._waiting = None, False
            deliver(cast(T, value))
        elif not self.done:
            self._deliver = deliver

    def cancel(self) -> bool:
        """Nobody will read the answer: withdraw its work. False when already settled."""
        if self.done:
            return False
        self.done = True
        self._deliver = None
        on_cancel, self._on_cancel = self._on_cancel, None
        if on_cancel is not None:
            on_cancel()
        return True

    def __await__(self) -> Generator[Any, None, T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.then(lambda value: None if future.done() else future.set_result(value))
        try:
            return (yield from future.__await__())
        except asyncio.CancelledError:
            self.cancel()
            raise

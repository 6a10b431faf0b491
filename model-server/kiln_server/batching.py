"""Dynamic batching: concurrent predict calls merged along dimension 0 into one ONNX call.

A ``Batcher`` wraps a synchronous ``run(output_names, feeds)``. It is created inside the
running event loop and keeps one call in progress at a time: while ONNX Runtime works, new
requests queue; when it returns, everything compatible that queued meanwhile (same input
names, trailing shapes and dtypes, same requested outputs) goes into the next call, up to
``max_batch_size`` rows. An idle server runs a lone request at once.

``max_queue_delay`` (default 0: none) only applies under load (the previous call merged
several requests): the batcher then waits up to that long for a batch to fill before starting
it. This trades latency for fuller batches, as Triton's ``max_queue_delay_microseconds`` does;
it pays off for costly models under open-loop traffic, and it costs throughput when a fixed
set of clients each wait for their answer (the batch never fills, so every call waits).

A request withdrawn before its call starts (``Ticket.cancel``: the client went away) is
dropped from the queue, not computed.

The queue is bounded: past ``max_queued_requests`` waiting requests, ``predict`` refuses
with a 503 at once, so an overloaded server sheds load instead of growing memory and latency
without limit (clients and load balancers retry elsewhere).

Cheap calls run on the event loop itself (a thread hop costs more than they do); expensive
ones run on a dedicated worker thread, since ONNX Runtime releases the GIL while it computes.
"Cheap" was measured at ``max_batch_size`` rows, so a single request larger than that runs
on the worker even for a cheap model: it must not stall every connection (and the health
probes) while it computes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from kiln_server.errors import unavailable

log = logging.getLogger("kiln_server.batching")
RunFunction = Callable[[Sequence[str], dict[str, np.ndarray]], list[np.ndarray]]
BatchObserver = Callable[[int, float], None]
RowsObserver = Callable[[dict[str, np.ndarray]], None]
QueueObserver = Callable[[float], None]


# One request's share of a batch: its outputs, or the error that request alone caused.
Outcome = list[np.ndarray] | Exception
OutcomeCallback = Callable[[Outcome], None]


@dataclass(slots=True)
class Ticket:
    """One queued request. ``cancel`` withdraws it: if its call has not started, it is
    dropped from the queue, and its callback is never called."""

    key: Hashable
    feeds: dict[str, np.ndarray]
    output_names: tuple[str, ...]
    rows: int
    on_done: OutcomeCallback
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(slots=True)
class _BatchResult:
    outcomes: list[Outcome]  # one per request, in batch order
    rows: int
    compute_seconds: float


class Batcher:
    """Merges concurrent ``submit`` (or ``predict``) calls; see the module docstring."""

    def __init__(
        self,
        run: RunFunction,
        *,
        max_batch_size: int,
        max_queue_delay: float,
        max_queued_requests: int,
        mergeable: bool,
        run_inline: bool,
        on_batch: BatchObserver,
        on_queued: QueueObserver,
        on_rows: RowsObserver | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._run = run
        self._max_rows = max(1, max_batch_size)
        self._delay = max(0.0, max_queue_delay)
        self._max_queued = max(1, max_queued_requests)
        self._mergeable = mergeable
        self._run_inline = run_inline
        # Threads start on first use: an inline-only batcher never starts one.
        self._executor = ThreadPoolExecutor(1, "kiln-ort")
        self._on_batch = on_batch
        self._on_queued = on_queued
        self._on_rows = on_rows
        self._queue: deque[Ticket] = deque()
        self._busy = False
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._under_load = False

    def submit(
        self,
        feeds: dict[str, np.ndarray],
        output_names: tuple[str, ...],
        rows: int,
        on_done: OutcomeCallback,
    ) -> Ticket:
        """Queue one request; ``on_done`` gets its outputs (in ``output_names`` order) or its
        error, on the event loop, as soon as its call returns: no future, no extra hop."""
        if len(self._queue) >= self._max_queued:
            raise unavailable(
                f"the server is overloaded: {len(self._queue)} requests are already waiting "
                "for the model; retry later"
            )
        key: Hashable
        if rows < 0:  # the caller found no common batch dimension: never merge this one
            key, rows = object(), 1
        else:
            key = (
                output_names,
                tuple([(name, array.shape[1:], array.dtype) for name, array in feeds.items()]),
            )
        ticket = Ticket(key, feeds, output_names, rows, on_done)
        self._queue.append(ticket)
        if not self._busy and not self._scheduled:
            # call_soon, not a direct call: requests read in this loop iteration join the batch
            self._scheduled = True
            self._loop.call_soon(self._dispatch)
        elif self._timer is not None and self._queued_rows_like_head() >= self._max_rows:
            # the batch being waited for is full: start it now rather than at the deadline
            self._timer.cancel()
            self._timer = None
            self._loop.call_soon(self._dispatch)
        return ticket

    def predict(
        self, feeds: dict[str, np.ndarray], output_names: tuple[str, ...], rows: int
    ) -> asyncio.Future[list[np.ndarray]]:
        """``submit`` for callers that await: cancelling the future withdraws the request."""
        future: asyncio.Future[list[np.ndarray]] = self._loop.create_future()

        def settle(outcome: Outcome) -> None:
            if future.done():
                return
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        ticket = self.submit(feeds, output_names, rows, settle)
        future.add_done_callback(lambda done: ticket.cancel() if done.cancelled() else None)
        return future

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._executor.shutdown(wait=True)

    def _take_batch(self) -> list[Ticket]:
        """The next batch; requests withdrawn meanwhile (their client left) are dropped."""
        queue = self._queue
        while queue and queue[0].cancelled:
            queue.popleft()
        if not queue:
            return []
        head = queue.popleft()
        batch = [head]
        if not self._mergeable:
            return batch
        rows = head.rows
        kept: deque[Ticket] = deque()
        while self._queue and rows < self._max_rows:
            item = self._queue.popleft()
            if item.cancelled:
                continue
            if item.key == head.key and rows + item.rows <= self._max_rows:
                batch.append(item)
                rows += item.rows
            else:
                kept.append(item)
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _queued_rows_like_head(self) -> int:
        head = self._queue[0]
        return sum(item.rows for item in self._queue if item.key == head.key)

    def _dispatch(self) -> None:
        self._scheduled = False
        self._timer = None
        if self._busy or not self._queue:
            return
        if self._delay and self._under_load and self._mergeable:
            waited = time.perf_counter() - self._queue[0].enqueued
            if waited < self._delay and self._queued_rows_like_head() < self._max_rows:
                self._timer = self._loop.call_later(self._delay - waited, self._dispatch)
                self._scheduled = True
                return
        batch = self._take_batch()
        if not batch:
            return
        self._busy = True
        self._under_load = len(batch) > 1
        started = time.perf_counter()
        for item in batch:
            self._on_queued(started - item.enqueued)
        if self._run_inline and sum(item.rows for item in batch) <= self._max_rows:
            self._finish(batch, self._execute(batch))
        else:
            work = self._loop.run_in_executor(self._executor, self._execute, batch)
            work.add_done_callback(lambda done: self._finish(batch, done.result()))

    def _execute(self, batch: list[Ticket]) -> _BatchResult:
        """Merge, run and split one batch (on the worker thread when there is one)."""
        head = batch[0]
        total = sum(item.rows for item in batch)
        start = time.perf_counter()
        if len(batch) == 1:
            outcomes = self._run_alone(batch)
            return _BatchResult(outcomes, total, time.perf_counter() - start)
        try:
            feeds = {
                name: np.concatenate([item.feeds[name] for item in batch]) for name in head.feeds
            }
            merged = self._run(head.output_names, feeds)
        except Exception:
            # One bad request (an index out of range, say) must not fail the requests it was
            # merged with: run each alone, so only the culprit gets the error.
            outcomes = self._run_alone(batch)
            return _BatchResult(outcomes, total, time.perf_counter() - start)
        compute = time.perf_counter() - start
        if any(output.shape[:1] != (total,) for output in merged):
            # The signature promised batch-major outputs but the model disagrees: fall back
            # to one call per request rather than hand out wrong slices.
            self._mergeable = False
            outcomes = self._run_alone(batch)
            return _BatchResult(outcomes, total, time.perf_counter() - start)
        self._observe_rows(feeds)
        results: list[Outcome] = []
        offset = 0
        for item in batch:
            end = offset + item.rows
            results.append([output[offset:end] for output in merged])
            offset = end
        return _BatchResult(results, total, compute)

    def _run_alone(self, batch: list[Ticket]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for item in batch:
            try:
                outcomes.append(self._run(item.output_names, item.feeds))
            except Exception as error:
                outcomes.append(error)
                continue
            self._observe_rows(item.feeds)
        return outcomes

    def _observe_rows(self, feeds: dict[str, np.ndarray]) -> None:
        """Hand served inputs to the observer (drift); its failure must not fail the requests
        or leave the batcher busy forever."""
        if self._on_rows is None:
            return
        try:
            self._on_rows(feeds)
        except Exception:
            log.exception("the rows observer failed; the requests are answered regardless")

    def _finish(self, batch: list[Ticket], result: _BatchResult) -> None:
        self._busy = False
        self._on_batch(result.rows, result.compute_seconds)
        for item, outcome in zip(batch, result.outcomes, strict=True):
            if item.cancelled:  # the client went away while its call ran
                continue
            try:
                item.on_done(outcome)
            except Exception:
                log.exception("a batch callback failed; the other requests are answered")
        if self._queue and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._dispatch)

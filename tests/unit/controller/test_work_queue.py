"""The work queue and controller every kind shares: a burst of events is one reconcile, one
object is never reconciled twice at once, failures back off per object up to a cap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kiln_operator import kube
from kiln_operator.controller.queue import Backoff, Key, ShutDown, WorkQueue
from kiln_operator.controller.runner import Controller
from kiln_operator.controller.watches import for_kind, owns

A: Key = ("ml", "a")
B: Key = ("ml", "b")


async def test_adds_of_a_waiting_key_are_one_item() -> None:
    queue = WorkQueue()
    for _ in range(100):
        queue.add(A)
    queue.add(B)
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == [A, B]


async def test_a_key_added_while_it_is_processed_waits_for_that_reconcile() -> None:
    queue = WorkQueue()
    queue.add(A)
    key = await queue.get()
    queue.add(A)
    queue.add(A)
    assert len(queue) == 0, "a key in processing was handed out a second time"
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == A
    queue.done(A)
    assert len(queue) == 0


async def test_a_delayed_add_keeps_the_earliest_time() -> None:
    queue = WorkQueue()
    queue.add_after(A, 60)
    queue.add_after(A, 0.01)
    queue.add_after(A, 30)
    assert await asyncio.wait_for(queue.get(), 1) == A


async def test_discarding_a_key_cancels_its_delayed_add() -> None:
    queue = WorkQueue()
    queue.add_after(A, 0.01)
    queue.discard(A)
    await asyncio.sleep(0.05)
    assert len(queue) == 0


async def test_backoff_grows_per_key_and_forget_resets_it() -> None:
    queue = WorkQueue(Backoff(base=1, cap=8))
    delays = [queue.add_rate_limited(A) for _ in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]
    assert queue.add_rate_limited(B) == 1, "one key's failures delayed another"
    queue.forget(A)
    assert queue.add_rate_limited(A) == 1
    queue.shut_down()


async def test_a_shut_down_queue_stops_its_workers() -> None:
    queue = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(ShutDown):
        await waiting


def tj(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": name}}


async def test_a_burst_of_events_for_one_object_is_one_reconcile() -> None:
    reconciled: list[Key] = []

    async def reconcile(key: Key) -> float | None:
        reconciled.append(key)
        return None

    controller = Controller("TrainingJob", reconcile, [for_kind(kube.TRAINING_JOBS)], workers=2)
    worker = asyncio.create_task(controller._work())
    for _ in range(100):
        controller.observe(controller.watches[0], "MODIFIED", tj("a"))
    controller.observe(controller.watches[0], "MODIFIED", tj("b"))
    await asyncio.sleep(0.3)
    controller.queue.shut_down()
    await worker
    assert sorted(reconciled) == [A, B]


async def test_a_childs_event_reconciles_the_owner_it_names() -> None:
    watch = owns(kube.JOBS, "kiln.dev/trainingjob", "kiln.dev/trainingjob")
    child = {"metadata": {"namespace": "ml", "name": "a-r1", "annotations": {}}}
    assert list(watch.keys(child)) == []
    child["metadata"]["annotations"]["kiln.dev/trainingjob"] = "a"
    assert list(watch.keys(child)) == [A]
    assert watch.label_selector == "kiln.dev/trainingjob", "filtered at the API server"


async def test_a_failing_reconcile_is_retried_with_backoff_and_never_stops_the_worker() -> None:
    attempts: list[float] = []

    async def reconcile(key: Key) -> float | None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise kube.Unavailable("get", "/x", 503, {"message": "try later"})
        return None

    controller = Controller("TrainingJob", reconcile, [], workers=1, coalesce_seconds=0)
    controller.queue.backoff = Backoff(base=0.05, cap=1)
    worker = asyncio.create_task(controller._work())
    controller.queue.add(A)
    await asyncio.sleep(0.5)
    controller.queue.shut_down()
    await worker
    assert len(attempts) == 3
    assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] - 0.01
    assert controller.queue.failures(A) == 0, "a success forgets the failures"


async def test_a_bug_in_a_reconcile_backs_off_slowly_but_keeps_the_key() -> None:
    async def reconcile(key: Key) -> float | None:
        raise KeyError("status")

    controller = Controller("TrainingJob", reconcile, [], workers=1, coalesce_seconds=0)
    worker = asyncio.create_task(controller._work())
    controller.queue.add(A)
    await asyncio.sleep(0.05)
    assert controller.queue.failures(A) == 1
    assert A in controller.queue._timers, "the failed key was dropped, not retried"
    assert controller.queue._timers[A][0] - asyncio.get_running_loop().time() > 20
    controller.queue.shut_down()
    await worker

"""The work queue and controller every kind shares: a burst of events is one reconcile, one
object is never reconciled twice at once, failures back off per object up to a cap, and a
change never waits behind rechecks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kiln_operator import kube
from kiln_operator.controller.queue import Backoff, Key, ShutDown, WorkQueue
from kiln_operator.controller.runner import Controller, Recheck
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


def rechecks(count: int) -> list[Key]:
    return [("ml", f"idle-{n}") for n in range(count)]


async def test_a_change_is_handed_out_before_every_waiting_recheck() -> None:
    queue = WorkQueue()
    for key in rechecks(500):
        queue.add(key, background=True)
    queue.add(A)
    assert (len(queue), queue.waiting_changes()) == (501, 1)
    assert await queue.get() == A
    assert await queue.get() == ("ml", "idle-0"), "rechecks keep their order"


async def test_a_change_to_a_key_waiting_for_its_recheck_moves_it_ahead_once() -> None:
    queue = WorkQueue()
    for key in [A, *rechecks(3), B]:
        queue.add(key, background=True)
    queue.add(B)
    queue.add(B, background=True)
    assert len(queue) == 5, "the moved key is queued twice"
    assert [await queue.get() for _ in range(5)] == [B, A, *rechecks(3)]


async def test_a_change_during_a_reconcile_comes_back_ahead_of_rechecks() -> None:
    queue = WorkQueue()
    queue.add(A)
    assert await queue.get() == A
    queue.add(A, background=True)
    for key in rechecks(3):
        queue.add(key, background=True)
    queue.add(A)
    queue.done(A)
    assert await queue.get() == A


async def test_a_recheck_added_during_a_reconcile_comes_back_as_a_recheck() -> None:
    queue = WorkQueue()
    queue.add(A)
    assert await queue.get() == A
    queue.add(A, background=True)
    queue.add(B, background=True)
    queue.done(A)
    assert queue.waiting_changes() == 0
    assert [await queue.get(), await queue.get()] == [B, A]


async def test_a_change_joining_a_pending_recheck_timer_fires_as_a_change() -> None:
    queue = WorkQueue()
    for key in rechecks(3):
        queue.add(key, background=True)
    queue.add_after(A, 0.01, background=True)
    queue.add_after(A, 5.0)  # later: the earlier timer stays, but now carries a change
    await asyncio.sleep(0.05)
    assert queue.waiting_changes() == 1
    assert await queue.get() == A


async def test_an_earlier_recheck_does_not_demote_a_pending_change() -> None:
    queue = WorkQueue()
    queue.add_after(A, 5.0)
    queue.add_after(A, 0.01, background=True)
    await asyncio.sleep(0.05)
    assert (len(queue), queue.waiting_changes()) == (1, 1)


async def test_a_controller_serves_a_watch_event_before_listed_objects_and_rechecks() -> None:
    order: list[Key] = []

    async def reconcile(key: Key) -> float | Recheck | None:
        order.append(key)
        return Recheck(60.0)

    watch = for_kind(kube.TRAINING_JOBS)
    controller = Controller("TrainingJob", reconcile, [watch], workers=1, coalesce_seconds=0)
    for n in range(20):
        controller.observe(watch, "LISTED", tj(f"idle-{n}"))
    controller.observe(watch, "MODIFIED", tj("a"))
    worker = asyncio.create_task(controller._work())
    await asyncio.sleep(0.1)
    timers = dict(controller.queue._timers)
    controller.queue.shut_down()
    await worker
    assert order[0] == A
    assert sorted(order[1:]) == sorted(rechecks(20))
    assert len(timers) == 21
    assert all(timer.background for timer in timers.values()), "a recheck became a change"


async def test_a_reconcile_returning_a_recheck_is_requeued_in_the_background() -> None:
    both = asyncio.Event()

    async def reconcile(key: Key) -> float | Recheck | None:
        if key == B:
            both.set()  # the worker requeues B before it next waits
        return Recheck(60.0) if key == A else 60.0

    controller = Controller("TrainingJob", reconcile, [], workers=1, coalesce_seconds=0)
    controller.queue.add(A)
    controller.queue.add(B)
    worker = asyncio.create_task(controller._work())
    await asyncio.wait_for(both.wait(), 1)
    timers = dict(controller.queue._timers)
    controller.queue.shut_down()
    await worker
    assert {key: timer.background for key, timer in timers.items()} == {A: True, B: False}


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
    assert controller.queue._timers[A].due - asyncio.get_running_loop().time() > 20
    controller.queue.shut_down()
    await worker

"""Reconciles of one object never overlap, other objects proceed, and re-runs come back at
the earliest time asked for."""

from __future__ import annotations

import asyncio

from kiln_operator.workqueue import Key, WorkQueue


async def test_reconciles_of_one_key_never_overlap_while_other_keys_proceed() -> None:
    active: dict[Key, int] = {}
    most: dict[Key, int] = {}
    order: list[Key] = []

    async def reconcile(key: Key) -> float | None:
        active[key] = active.get(key, 0) + 1
        most[key] = max(most.get(key, 0), active[key])
        await asyncio.sleep(0.01)
        order.append(key)
        active[key] -= 1
        return None

    queue = WorkQueue(reconcile)
    a, b = ("ns", "a"), ("ns", "b")
    await asyncio.gather(*(queue.run(a) for _ in range(5)), queue.run(b))
    assert most == {a: 1, b: 1}
    assert order.index(b) < 4, "b waited for all of a's reconciles"


async def test_a_requested_re_run_happens_and_the_earliest_request_wins() -> None:
    ran = asyncio.Event()
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def reconcile(key: Key) -> float | None:
        calls.append(loop.time() - start)
        ran.set()
        return None

    queue = WorkQueue(reconcile)
    queue.requeue(("ns", "a"), 30.0)
    queue.requeue(("ns", "a"), 0.05)
    queue.requeue(("ns", "a"), 10.0)  # later than the pending one: ignored
    await asyncio.wait_for(ran.wait(), 2.0)
    await asyncio.sleep(0.1)
    assert len(calls) == 1
    assert calls[0] < 1.0
    queue.close()


async def test_a_forgotten_key_does_not_come_back() -> None:
    calls: list[Key] = []

    async def reconcile(key: Key) -> float | None:
        calls.append(key)
        return None

    queue = WorkQueue(reconcile)
    queue.requeue(("ns", "gone"), 0.01)
    queue.forget(("ns", "gone"))
    await asyncio.sleep(0.05)
    assert calls == []

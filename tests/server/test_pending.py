"""``Pending``, the answer-to-come between the data plane and a connection: delivered once,
at once, whichever side comes first; cancelled, it withdraws its work and ignores a late
answer; awaited, it behaves like a future."""

from __future__ import annotations

import asyncio

import pytest

from kiln_server.pending import Pending


def test_an_answer_settled_after_the_reader_came_is_delivered_at_once() -> None:
    pending: Pending[str] = Pending()
    got: list[str] = []
    pending.then(got.append)
    assert got == []
    pending.settle("answer")
    assert got == ["answer"]
    pending.settle("second")
    assert got == ["answer"], "a second settle must be ignored"


def test_an_answer_settled_before_the_reader_came_is_delivered_when_it_comes() -> None:
    pending: Pending[str] = Pending()
    pending.settle("answer")
    got: list[str] = []
    pending.then(got.append)
    assert got == ["answer"]


def test_cancelling_withdraws_the_work_once_and_a_late_answer_is_dropped() -> None:
    withdrawn: list[bool] = []
    pending: Pending[str] = Pending(lambda: withdrawn.append(True))
    got: list[str] = []
    pending.then(got.append)
    assert pending.cancel() is True
    assert pending.cancel() is False
    pending.settle("late")
    assert withdrawn == [True]
    assert got == []


def test_a_settled_answer_cannot_be_cancelled() -> None:
    withdrawn: list[bool] = []
    pending: Pending[str] = Pending(lambda: withdrawn.append(True))
    pending.settle("answer")
    assert pending.cancel() is False
    assert withdrawn == []


async def test_awaiting_gives_the_answer() -> None:
    pending: Pending[str] = Pending()
    asyncio.get_running_loop().call_later(0.01, pending.settle, "answer")
    assert await pending == "answer"


async def test_cancelling_the_awaiting_task_withdraws_the_work() -> None:
    withdrawn: list[bool] = []
    pending: Pending[str] = Pending(lambda: withdrawn.append(True))

    async def wait() -> str:
        return await pending

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert withdrawn == [True]

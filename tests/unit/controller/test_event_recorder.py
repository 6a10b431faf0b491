"""Events are aggregated like client-go's recorder: one Event per object, type and reason,
whose count and lastTimestamp grow; a restarted process (an empty cache) continues it."""

from __future__ import annotations

from typing import Any

from kiln_operator.controller.recorder import EventRecorder
from tests.unit.trainingjob.factories import training_job
from tests.unit.trainingjob.test_trainingjob_reconcile_failures import FakeKube


def events(api: FakeKube) -> list[dict[str, Any]]:
    return [obj for (plural, _, _), obj in api.objects.items() if plural == "events"]


async def test_a_repeated_notice_raises_the_count_of_one_event() -> None:
    api = FakeKube()
    client: Any = api
    recorder = EventRecorder(client)
    tj = training_job()
    for second in range(3):
        await recorder.post(tj, "Warning", "RunRejected", f"refused #{second}", f"t{second}")
    await recorder.post(tj, "Normal", "RunStarted", "started", "t9")
    by_reason = {event["reason"]: event for event in events(api)}
    rejected, started = by_reason["RunRejected"], by_reason["RunStarted"]
    assert (rejected["count"], rejected["lastTimestamp"]) == (3, "t2")
    assert rejected["firstTimestamp"] == "t0"
    assert rejected["message"] == "refused #2"
    assert started["count"] == 1


async def test_a_restarted_recorder_continues_the_existing_event() -> None:
    api = FakeKube()
    client: Any = api
    tj = training_job()
    await EventRecorder(client).post(tj, "Warning", "RunRejected", "one", "t0")
    await EventRecorder(client).post(tj, "Warning", "RunRejected", "two", "t1")
    (event,) = events(api)
    assert event["count"] == 2


async def test_an_expired_event_is_posted_anew() -> None:
    api = FakeKube()
    client: Any = api
    recorder = EventRecorder(client)
    tj = training_job()
    await recorder.post(tj, "Warning", "RunRejected", "one", "t0")
    api.objects = {key: obj for key, obj in api.objects.items() if key[0] != "events"}
    await recorder.post(tj, "Warning", "RunRejected", "two", "t1")
    (event,) = events(api)
    assert (event["count"], event["message"]) == (1, "two")

"""A request's objects are freed as soon as it is answered, refused or withdrawn: none of
them is left in a reference cycle for the garbage collector, whose passes over a busy
server's young objects would otherwise cost every request (and hold its tensors meanwhile)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from kiln_server.app import App
from kiln_server.http_server import HttpRequest, HttpResponse
from kiln_server.pending import Pending
from kiln_server.server import ModelServer
from kiln_server.settings import ServeSettings

_INFER = "/v2/models/tabular/infer"
_HEADERS = {b"host": b"test"}


def _body() -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}
    return orjson.dumps({"inputs": [tensor]})


@pytest.fixture
async def app(tabular_dir: str) -> AsyncIterator[App]:
    server = ModelServer(ServeSettings(model_dir=tabular_dir, model_name="tabular", threads=1))
    assert await server.load()
    handler = server.http.state.handler
    assert isinstance(handler, App)
    yield handler
    await server.shutdown()


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _kiln_objects_left_in_cycles() -> list[str]:
    """The server's own objects that only the cycle collector could free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    left = sorted({type(item).__qualname__ for item in gc.garbage if _is_kiln(item)})
    gc.garbage.clear()
    gc.set_debug(0)
    return left


def _is_kiln(item: object) -> bool:
    return type(item).__module__.startswith("kiln_server")


async def _answer(outcome: HttpResponse | Pending[HttpResponse]) -> HttpResponse:
    return outcome if isinstance(outcome, HttpResponse) else await outcome


@pytest.mark.usefixtures("no_automatic_gc")
async def test_answered_requests_leave_nothing_for_the_cycle_collector(app: App) -> None:
    outcomes = [app(HttpRequest("POST", _INFER, _HEADERS, _body())) for _ in range(16)]
    responses = [await _answer(outcome) for outcome in outcomes]
    assert [response.status for response in responses] == [200] * 16
    del outcomes, responses
    assert _kiln_objects_left_in_cycles() == []


@pytest.mark.usefixtures("no_automatic_gc")
async def test_refused_requests_leave_nothing_for_the_cycle_collector(app: App) -> None:
    refused = app(HttpRequest("POST", _INFER, _HEADERS, b'{"inputs": 3}'))
    wrong_shape = app(HttpRequest("POST", _INFER, _HEADERS, _body().replace(b"8]", b"9]")))
    statuses = [(await _answer(refused)).status, (await _answer(wrong_shape)).status]
    assert statuses == [400, 400]
    del refused, wrong_shape
    assert _kiln_objects_left_in_cycles() == []


@pytest.mark.usefixtures("no_automatic_gc")
async def test_withdrawn_requests_leave_nothing_for_the_cycle_collector(app: App) -> None:
    kept = app(HttpRequest("POST", _INFER, _HEADERS, _body()))
    withdrawn = [app(HttpRequest("POST", _INFER, _HEADERS, _body())) for _ in range(4)]
    for outcome in withdrawn:
        assert isinstance(outcome, Pending)
        assert outcome.cancel(), "the request was answered before its client went away"
    assert (await _answer(kept)).status == 200
    await asyncio.sleep(0)  # the batcher's next pass drops the withdrawn tickets
    del kept, withdrawn, outcome
    assert _kiln_objects_left_in_cycles() == []

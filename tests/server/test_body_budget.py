"""The HTTP layer's budget for request bodies held in memory across all connections: past it
a request gets 503, and every way a request can end gives its bytes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from kiln_server.http_server import (
    HttpRequest,
    HttpResponse,
    HttpServer,
    ServerState,
    json_response,
)
from kiln_server.settings import ServeSettings

MAX_BODY = 8_000
BUDGET = 10_000


class HeldHandler:
    """Answers each request only when the test lets it go, so its body stays held."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived = 0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.arrived += 1
        await self.release.wait()
        return json_response(200, {"size": len(request.body)})


@pytest.fixture
async def served() -> AsyncIterator[tuple[HttpServer, HeldHandler]]:
    handler = HeldHandler()
    server = HttpServer(
        ServerState(
            handler=handler, max_body=MAX_BODY, keep_alive_timeout=5, max_buffered_bytes=BUDGET
        )
    )
    await server.start("127.0.0.1", 0)
    yield server, handler
    handler.release.set()
    await server.drain(1.0)


def post(size: int) -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"a" * size


async def status_of(reader: asyncio.StreamReader) -> int:
    """Read one whole response; its status code."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.startswith("content-length"))
    await asyncio.wait_for(reader.readexactly(length), 5)
    return int(lines[0].split()[1])


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition did not hold within 5 s")


async def test_bodies_past_the_budget_are_503_and_answered_ones_free_their_bytes(
    served: tuple[HttpServer, HeldHandler],
) -> None:
    server, handler = served
    first_reader, first = await asyncio.open_connection("127.0.0.1", server.port)
    first.write(post(6_000))
    await until(lambda: handler.arrived == 1)
    assert server.state.buffered_bytes == 6_000

    second_reader, second = await asyncio.open_connection("127.0.0.1", server.port)
    second.write(post(6_000))
    assert await status_of(second_reader) == 503
    assert await asyncio.wait_for(second_reader.read(), 5) == b""  # and closed
    assert server.state.buffered_bytes == 6_000

    handler.release.set()
    assert await status_of(first_reader) == 200
    await until(lambda: server.state.buffered_bytes == 0)
    third_reader, third = await asyncio.open_connection("127.0.0.1", server.port)
    third.write(post(6_000))
    assert await status_of(third_reader) == 200
    for writer in (first, second, third):
        await close(writer)


async def test_every_ending_of_a_request_gives_its_bytes_back(
    served: tuple[HttpServer, HeldHandler],
) -> None:
    server, handler = served
    handler.release.set()
    # answered, pipelined, over the size limit, and cut off half-way through the body
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(post(100) + post(200) + post(300))
    assert [await status_of(reader) for _ in range(3)] == [200, 200, 200]
    await close(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(b"%x\r\n%s\r\n" % (5_000, b"a" * 5_000) * 2)
    assert await status_of(reader) == 413
    await close(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(post(4_000)[:-1_000])
    await until(lambda: server.state.buffered_bytes > 0)
    await close(writer)
    await until(lambda: server.state.buffered_bytes == 0)
    assert not server.state.connections or all(c.idle for c in server.state.connections)


@pytest.mark.parametrize(
    ("max_request_bytes", "max_buffered_bytes", "budget"),
    [(1_000, 0, 4_000), (1_000, 2_500, 2_500), (1_000, 10, 1_000)],
    ids=["default-four-requests", "explicit", "never-below-one-request"],
)
def test_the_body_budget_follows_the_settings(
    max_request_bytes: int, max_buffered_bytes: int, budget: int
) -> None:
    settings = ServeSettings(
        model_dir="m",
        model_name="m",
        max_request_bytes=max_request_bytes,
        max_buffered_bytes=max_buffered_bytes,
    )
    assert settings.request_body_budget == budget

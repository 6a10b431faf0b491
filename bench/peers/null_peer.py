"""The ceiling: a server that parses a V2 infer request and answers without a model.

It does what every server must do per request and nothing more: read the HTTP request, parse
the JSON body (or the JSON header of a binary body) with orjson and write a fixed V2 answer for
that many rows. Two HTTP layers run it, so the benchmark shows what each costs on its own:

    python null_peer.py uvicorn PORT   # a raw ASGI app on uvicorn (httptools + uvloop)
    python null_peer.py granian PORT   # the same ASGI app on granian (Rust HTTP layer)
    python null_peer.py kiln PORT      # a handler on kiln-server's own HTTP layer

Any GET answers ``{"ready": true}`` (the driver's readiness probe).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

_HEADER_LENGTH = b"inference-header-content-length"
_READY = orjson.dumps({"ready": True})
_ANSWERS: dict[int, bytes] = {}


def answer(body: bytes, header_length: bytes | None) -> bytes:
    """The fixed V2 answer for the rows of the request in ``body``."""
    document = orjson.loads(body if header_length is None else body[: int(header_length)])
    rows = int(document["inputs"][0]["shape"][0])
    cached = _ANSWERS.get(rows)
    if cached is None:
        cached = orjson.dumps(
            {
                "model_name": "null",
                "outputs": [
                    {"name": "probabilities", "datatype": "FP32", "shape": [rows, 2],
                     "data": [0.5] * (2 * rows)}
                ],
            }
        )  # fmt: skip
        _ANSWERS[rows] = cached
    return cached


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


async def read_body(receive: Receive) -> bytes:
    """The whole request body of an ASGI HTTP request."""
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if scope["method"] == "GET":
        payload = _READY
    else:
        header_length = None
        for name, value in scope["headers"]:
            if name == _HEADER_LENGTH:
                header_length = value
        payload = answer(body, header_length)
    await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    layer, port = sys.argv[1], int(sys.argv[2])
    if layer == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
            log_level="warning", access_log=False, lifespan="off",
        )  # fmt: skip
    elif layer == "granian":
        from granian import Granian  # type: ignore[import-not-found]
        from granian.constants import Interfaces  # type: ignore[import-not-found]

        Granian(
            "null_peer:asgi_app", address="127.0.0.1", port=port, interface=Interfaces.ASGI,
            workers=1, log_access=False,
        ).serve()  # fmt: skip
    elif layer == "kiln":
        import asyncio

        import uvloop

        from kiln_server.http_server import HttpRequest, HttpResponse, HttpServer, ServerState

        def handler(request: HttpRequest) -> HttpResponse:
            if request.method == "GET":
                return HttpResponse(200, _READY)
            return HttpResponse(200, answer(request.body, request.headers.get(_HEADER_LENGTH)))

        async def serve() -> None:
            server = HttpServer(ServerState(handler, 64 << 20, 75.0, 256 << 20))
            await server.start("127.0.0.1", port)
            await asyncio.Event().wait()

        uvloop.run(serve())
    else:
        raise SystemExit(f"unknown HTTP layer {layer!r}: uvicorn, granian or kiln")


if __name__ == "__main__":
    main()

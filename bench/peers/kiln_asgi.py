"""kiln-server's data plane and endpoints behind uvicorn, as a raw ASGI app (no framework).

The experiment of the HTTP-layer decision (bench/README.md): the same ``App`` and
``DataPlane`` that ``kiln-server serve`` runs, with uvicorn (httptools + uvloop) in place of
kiln-server's own HTTP/1.1 layer.

    python kiln_asgi.py MODEL_DIR MODEL_NAME PORT [--threads N]
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

import uvicorn
from null_peer import read_body  # type: ignore[import-not-found]  # beside this file
from prometheus_client import disable_created_metrics

from kiln_server.http_server import HttpRequest, HttpResponse
from kiln_server.server import ModelServer
from kiln_server.settings import ServeSettings


def build(settings: ServeSettings) -> Any:
    server = ModelServer(settings)
    app = server.http.state.handler

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await server.load()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = await read_body(receive)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers[name] = value
        request = HttpRequest(scope["method"], scope["path"], headers, body)
        outcome = app(request)
        response: HttpResponse = await outcome if inspect.isawaitable(outcome) else outcome
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(b"content-type", response.content_type), *response.headers],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    return asgi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("model_name")
    parser.add_argument("port", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    disable_created_metrics()  # type: ignore[no-untyped-call]
    settings = ServeSettings(
        model_dir=args.model_dir, model_name=args.model_name, threads=args.threads
    )
    uvicorn.run(
        build(settings), host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False, lifespan="on",
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""CPU cost of one infer request between the HTTP layer and ONNX Runtime, without sockets.

kiln-server's endpoints, data plane and batcher (the objects ``kiln-server serve`` runs) take
rounds of ``--conc`` tabular requests handed over at once, as the HTTP layer hands them over
under load; the figure is the event loop thread's CPU time per request (``thread_time``,
so other processes sharing the core move it less than wall-clock figures), best of
``--reps`` rounds. It covers decoding, validation, batching, the ONNX Runtime call, encoding
and metrics, and leaves out what the null servers of the sitting measure (HTTP parsing,
socket reads and writes).

    python bench/request_cost.py [--work /tmp/kiln-bench] [--conc 64] [--reps 150]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from prometheus_client import disable_created_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from driver import make_body  # type: ignore[import-not-found]  # noqa: E402
from make_models import build  # type: ignore[import-not-found]  # noqa: E402

from kiln_server.http_server import HttpRequest, HttpResponse  # noqa: E402
from kiln_server.server import ModelServer  # noqa: E402
from kiln_server.settings import ServeSettings  # noqa: E402


async def cost(
    model_dir: str, body: bytes, header_length: int | None, conc: int, reps: int
) -> float:
    server = ModelServer(ServeSettings(model_dir=model_dir, model_name="tabular", threads=1))
    if not await server.load():
        raise SystemExit("the model did not load")
    app = server.http.state.handler
    headers = {b"host": b"bench", b"content-length": b"%d" % len(body)}
    if header_length is not None:
        headers[b"inference-header-content-length"] = b"%d" % header_length

    async def one_round() -> None:
        outcomes = [
            app(HttpRequest("POST", "/v2/models/tabular/infer", headers, body)) for _ in range(conc)
        ]
        for outcome in outcomes:
            response = outcome if isinstance(outcome, HttpResponse) else await outcome
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {response.body[:200]!r}")

    for _ in range(200):  # warm up
        await one_round()
    best = float("inf")
    for _ in range(reps):
        started = time.thread_time()
        for _ in range(10):
            await one_round()
        best = min(best, (time.thread_time() - started) / (10 * conc))
    await server.shutdown()
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", default=os.environ.get("KILN_BENCH_WORK", "/tmp/kiln-bench"))
    parser.add_argument("--conc", type=int, default=64)
    parser.add_argument("--reps", type=int, default=150)
    args = parser.parse_args()
    disable_created_metrics()  # type: ignore[no-untyped-call]
    models = os.path.join(args.work, "models")
    build(models)
    model_dir = os.path.join(models, "tabular")
    import uvloop

    with tempfile.TemporaryDirectory() as bodies:
        for encoding in ("json", "binary"):
            path = os.path.join(bodies, encoding)
            header_length = make_body("tabular", 1, encoding, path)
            with open(path, "rb") as source:
                body = source.read()
            micros = uvloop.run(cost(model_dir, body, header_length, args.conc, args.reps))
            print(f"tabular b1 {encoding}, {args.conc} at a time: {micros:.1f} us of CPU a request")


if __name__ == "__main__":
    main()

"""What the HTTP layer refuses or stops doing for clients that misbehave or go away: a body
trickled below the minimum rate, connections past the cap, interim responses to clients that
must not get them (yet), requests without exactly one Host, encoded slashes, work for a
client that has disconnected, and large bodies decoded where they would stall the loop."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from tests.server import models
from tests.server.raw_http import BODY, RawClient, peer_has_closed_or_answered, post
from tests.server.server_process import ServerProcess, metric_value, serving

pytestmark = pytest.mark.server

SLOW_FEATURES = 1024


@pytest.fixture(scope="module")
def strict_server(tabular_dir: str) -> Iterator[ServerProcess]:
    """Small limits, so that each defence is reached quickly."""
    with serving(
        tabular_dir, "tabular",
        "--max-request-bytes", "4096", "--max-buffered-bytes", "4096",
        "--min-body-rate", "1000", "--body-grace", "0.5", "--max-connections", "3",
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def large_body_server(tabular_dir: str) -> Iterator[ServerProcess]:
    """A server of its own for bodies of many MB: the memory they leave with the allocator
    must not count against the shared server's idle footprint (test_lifecycle)."""
    with serving(tabular_dir, "tabular", "--threads", "1") as server:
        yield server


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A model slow enough (tens of ms a row, on one worker thread) to hold requests back."""
    directory = str(tmp_path_factory.mktemp("slow"))
    models.slow(directory, size=SLOW_FEATURES, layers=64)
    with serving(directory, "slow", "--threads", "1", "--max-batch-size", "1") as server:
        yield server


def slow_body(rows: int) -> bytes:
    data = np.full((rows, SLOW_FEATURES), 0.5, dtype=np.float32).reshape(-1).tolist()
    return json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, SLOW_FEATURES],
                     "data": data}]}
    ).encode()  # fmt: skip


def padded(size: int) -> bytes:
    """A valid tabular infer body of exactly ``size`` bytes (JSON allows the padding)."""
    return BODY + b" " * (size - len(BODY))


def head_of(length: int) -> bytes:
    return (
        b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length
    )


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        time.sleep(0.01)


# --- a body trickled below the minimum rate -----------------------------------------------
def test_a_body_trickled_below_the_minimum_rate_gets_408_and_gives_back_its_budget(
    strict_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    trickler = connect(strict_server.port)
    body = padded(3000)
    trickler.send(head_of(len(body)) + body[:2500])
    # Its 2,500 bytes hold the budget (4,096): another 3,000-byte body does not fit.
    assert strict_server.request("POST", "/v2/models/tabular/infer", padded(3000)).status == 503
    started = time.monotonic()
    status = None
    while time.monotonic() - started < 10:
        try:
            trickler.send(b" ")  # one byte every 0.1 s: 10 bytes a second, under 1,000
        except OSError:
            break
        if peer_has_closed_or_answered(trickler):
            break
        time.sleep(0.1)
    status, headers, answer = trickler.read_response()
    assert status == 408
    assert headers["connection"] == "close"
    assert "slower than 1000 bytes a second" in json.loads(answer)["error"]
    # The grace (0.5 s) plus what 2,500 bytes buy at 1,000 bytes a second: about 3 s.
    assert time.monotonic() - started < 8
    reply = strict_server.request("POST", "/v2/models/tabular/infer", padded(3000))
    assert reply.status == 200


def test_a_body_that_keeps_the_minimum_rate_is_served(
    strict_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(strict_server.port)
    body = padded(3000)
    client.send(head_of(len(body)))
    for start in range(0, 3000, 500):  # 500 bytes every 0.2 s: 2,500 a second for 1.2 s
        client.send(body[start : start + 500])
        time.sleep(0.2)
    assert client.read_response()[0] == 200


# --- the connection cap -------------------------------------------------------------------
def test_connections_past_the_cap_get_503_and_are_closed(
    strict_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    held = [connect(strict_server.port) for _ in range(3)]
    for client in held:  # each is accepted and served
        client.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_response()[0] == 200
    extra = connect(strict_server.port)
    status, headers, body = extra.read_response()
    assert status == 503
    assert headers["connection"] == "close"
    assert "3 connections open" in json.loads(body)["error"]
    assert extra.closed_by_peer()
    held[0].close()
    time.sleep(0.1)
    again = connect(strict_server.port)
    again.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert again.read_response()[0] == 200


# --- 100 Continue -------------------------------------------------------------------------
def test_an_http_1_0_client_never_gets_100_continue(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(
        f"POST /v2/models/tabular/infer HTTP/1.0\r\nContent-Length: {len(BODY)}\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
        + BODY
    )
    status, headers, _ = client.read_response()
    assert status == 200
    assert headers["connection"] == "close"


def test_100_continue_waits_for_the_answer_to_the_request_before_it(
    slow_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(slow_server.port)
    second = slow_body(1)
    client.send(
        post("/v2/models/slow/infer", slow_body(8))
        + f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(second)}\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    status, _, body = client.read_response()
    assert status == 200, "the interim response came before the previous request's answer"
    assert json.loads(body)["outputs"][0]["shape"] == [8, SLOW_FEATURES]
    assert client.read_response()[0] == 100
    client.send(second)
    status, _, body = client.read_response()
    assert status == 200
    assert json.loads(body)["outputs"][0]["shape"] == [1, SLOW_FEATURES]


# --- Host ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"GET /v2/health/live HTTP/1.1\r\n\r\n", "needs a Host header"),
        (b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"),
    ],
    ids=["missing", "duplicate"],
)
def test_an_http_1_1_request_without_exactly_one_host_is_400(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient], head: bytes, message: str
) -> None:
    client = connect(tabular_server.port)
    client.send(head)
    status, _, body = client.read_response()
    assert status == 400
    assert message in json.loads(body)["error"]
    assert client.closed_by_peer()


def test_an_http_1_0_request_may_leave_out_host(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
    assert client.read_response()[0] == 200


# --- encoded slashes ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2%2Fhealth%2Flive", "no such endpoint: /v2%2Fhealth%2Flive"),
        ("/v2/models%2Ftabular/ready", "no such endpoint: /v2/models%2Ftabular/ready"),
        ("/v2/models/tabular%2Fready", "unknown model 'tabular/ready'"),
    ],
)
def test_an_encoded_slash_stays_inside_its_path_segment(
    tabular_server: ServerProcess, path: str, message: str
) -> None:
    reply = tabular_server.get(path)
    assert reply.status == 404
    assert reply.json()["error"].startswith(message)


def test_a_model_name_with_an_encoded_slash_is_an_unknown_model(
    tabular_server: ServerProcess,
) -> None:
    reply = tabular_server.get("/v2/models/tab%2Fular/ready")
    assert reply.status == 404
    assert reply.json()["error"].startswith("unknown model 'tab/ular'")


# --- a client that goes away ---------------------------------------------------------------
def test_a_client_that_disconnects_has_its_queued_request_dropped_not_computed(
    slow_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    before = slow_server.metrics()
    computed_before = metric_value(before, "kiln_inference_batch_size_sum", model="slow") or 0
    busy = connect(slow_server.port)
    busy.send(post("/v2/models/slow/infer", slow_body(16)))  # keeps the model busy a while
    in_flight = 'kiln_inference_requests_in_flight{model="slow",version=""}'
    until(lambda: f"{in_flight} 1.0" in slow_server.metrics())
    leaving = connect(slow_server.port)
    leaving.send(post("/v2/models/slow/infer", slow_body(1)))
    until(lambda: f"{in_flight} 2.0" in slow_server.metrics())
    leaving.close()
    assert busy.read_response()[0] == 200
    until(lambda: f"{in_flight} 0.0" in slow_server.metrics())
    time.sleep(0.3)  # the model would have had time for the dropped row by now
    after = slow_server.metrics()
    assert metric_value(after, "kiln_inference_requests_total", model="slow", code="499") == 1
    computed = metric_value(after, "kiln_inference_batch_size_sum", model="slow") or 0
    assert computed - computed_before == 16, "the disconnected client's row was computed"


# --- large bodies ---------------------------------------------------------------------------
def test_a_large_body_is_decoded_off_the_event_loop(large_body_server: ServerProcess) -> None:
    """While a 16 MB JSON body is decoded, a liveness probe sent after it is answered first.

    The JSON parse itself (one orjson call) still holds the GIL, for about 10 ms a MB; the
    conversion to numpy that follows hands it back every 65,536 elements."""
    count = 8_000_000
    body = (
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,8],"data":['
        + b",".join([b"0"] * count)
        + b"]}]}"
    )
    answered: dict[str, float] = {}
    big = socket.create_connection(("127.0.0.1", large_body_server.port), timeout=60)
    probe = socket.create_connection(("127.0.0.1", large_body_server.port), timeout=60)
    try:

        def read_big() -> None:
            reply = big.recv(65536)
            answered["big"] = time.monotonic()
            answered["big_status"] = float(reply.split(b" ", 2)[1])

        reader = threading.Thread(target=read_big)
        big.sendall(
            b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )
        reader.start()
        time.sleep(0.05)  # the server has the whole body and is decoding it
        probe.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b'{"live":true}' in probe.recv(65536)
        answered["probe"] = time.monotonic()
        reader.join(60)
    finally:
        big.close()
        probe.close()
    assert answered["big_status"] == 400  # 8,000,000 elements for a [1, 8] shape
    # Decoded on the loop, the probe would be answered right after the 400, not well before.
    assert answered["big"] - answered["probe"] > 0.1, "the probe waited for the decode"


def test_a_large_json_tensor_decodes_exactly_as_a_small_one(
    large_body_server: ServerProcess,
) -> None:
    rows = 20_000  # 160,000 elements: converted in several slices
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, (rows, 8)).astype(np.float32)
    flat = large_body_server.infer(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 8],
                     "data": x.reshape(-1).tolist()}]}
    )  # fmt: skip
    nested = large_body_server.infer(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 8],
                     "data": x.tolist()}]}
    )  # fmt: skip
    few = large_body_server.infer(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 8],
                     "data": x[:2].tolist()}]}
    )  # fmt: skip
    assert flat.status == nested.status == few.status == 200
    flat_out = np.array(flat.json()["outputs"][0]["data"])
    assert flat_out.tolist() == nested.json()["outputs"][0]["data"]
    np.testing.assert_allclose(flat_out[:6], few.json()["outputs"][0]["data"], rtol=1e-5)

"""HTTP/1.1 behaviour on raw sockets: keep-alive, pipelining, chunked bodies, 100-continue,
size limits and malformed requests."""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from tests.server.raw_http import BODY, RawClient, peer_has_closed, post
from tests.server.server_process import ServerProcess, serving

pytestmark = pytest.mark.server

LIMIT = 4096


@pytest.fixture(scope="module")
def small_limit_server(tabular_dir: str) -> Iterator[ServerProcess]:
    with serving(tabular_dir, "tabular", "--max-request-bytes", str(LIMIT)) as server:
        yield server


def test_keep_alive_serves_many_requests_on_one_connection(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    for _ in range(5):
        client.send(post("/v2/models/tabular/infer", BODY))
        status, headers, _ = client.read_response()
        assert status == 200
        assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    batch = b"".join(
        post("/v2/models/tabular/infer", json.dumps(
            {"id": str(i), "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8],
                                       "data": [float(i)] * 8}]}).encode())
        for i in range(10)
    ) + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"  # fmt: skip
    client.send(batch)
    ids = [json.loads(client.read_response()[2])["id"] for _ in range(10)]
    assert ids == [str(i) for i in range(10)]
    assert client.read_response()[2] == b'{"live":true}'


def test_chunked_request_bodies_are_reassembled(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    chunks = [BODY[:10], BODY[10:50], BODY[50:]]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    client.send(
        b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + encoded
    )
    status, _, body = client.read_response()
    assert status == 200
    assert json.loads(body)["outputs"][0]["shape"] == [1, 3]


def test_expect_100_continue_gets_an_interim_response(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(
        f"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    assert client.read_response()[0] == 100
    client.send(BODY)
    assert client.read_response()[0] == 200


def test_a_declared_length_over_the_limit_is_413_before_the_body(
    small_limit_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(small_limit_server.port)
    client.send(
        f"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT + 1}\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    status, headers, body = client.read_response()
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body) == {"error": f"request body of {LIMIT + 1} bytes exceeds {LIMIT}"}
    assert client.closed_by_peer()


def test_a_client_still_sending_a_refused_body_reads_the_413(
    small_limit_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    """Closing at once would reset the connection under the client's feet (the unread body
    turns into a TCP reset), destroying the answer before the client reads it."""
    for _ in range(5):
        client = connect(small_limit_server.port)
        request = post("/v2/models/tabular/infer", b"x" * (2 * 1024 * 1024))
        with contextlib.suppress(OSError):  # the server may stop reading: that is fine
            client.send(request)
        status, _, body = client.read_response()
        assert status == 413
        assert "exceeds 4096" in json.loads(body)["error"]


def test_a_chunked_body_growing_over_the_limit_is_413(
    small_limit_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(small_limit_server.port)
    chunk = b"x" * 1024
    client.send(
        b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"400\r\n" + chunk + b"\r\n" for _ in range(5))
    )
    status, _, body = client.read_response()
    assert status == 413
    assert "exceeds 4096 bytes" in json.loads(body)["error"]


def test_a_gzip_body_that_decodes_past_the_limit_is_413(
    small_limit_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    bomb = gzip.compress(b"0" * (LIMIT * 256))
    assert len(bomb) < LIMIT
    client = connect(small_limit_server.port)
    client.send(post("/v2/models/tabular/infer", bomb, "Content-Encoding: gzip\r\n"))
    status, _, body = client.read_response()
    assert status == 413
    assert json.loads(body) == {
        "error": f"the gzip request body decodes to more than {LIMIT} bytes"
    }


@pytest.mark.parametrize(
    ("encoding", "body", "status", "message"),
    [
        ("br", BODY, 415, "Content-Encoding 'br' is not supported; use gzip, deflate or identity"),
        ("gzip", b"not gzip at all", 400, "the gzip request body cannot be decoded"),
        ("gzip", gzip.compress(BODY)[:-12], 400, "the gzip request body is truncated"),
        ("identity", BODY, 200, None),
        ("deflate", zlib.compress(BODY), 200, None),
    ],
    ids=["unsupported", "corrupt", "truncated", "identity", "deflate"],
)
def test_content_encodings_are_decoded_or_refused_by_name(
    tabular_server: ServerProcess,
    connect: Callable[[int], RawClient],
    encoding: str,
    body: bytes,
    status: int,
    message: str | None,
) -> None:
    client = connect(tabular_server.port)
    client.send(post("/v2/models/tabular/infer", body, f"Content-Encoding: {encoding}\r\n"))
    got_status, _, reply = client.read_response()
    assert got_status == status
    if message is not None:
        assert json.loads(reply)["error"].startswith(message)


def test_bodies_held_past_the_buffer_budget_get_503(
    tabular_dir: str, connect: Callable[[int], RawClient]
) -> None:
    with serving(tabular_dir, "tabular", "--max-request-bytes", "4000",
                 "--max-buffered-bytes", "5000") as server:  # fmt: skip
        slow = connect(server.port)
        slow.send(post("/v2/models/tabular/infer", b"x" * 3_500)[:-500])  # 3,000 bytes held
        for _ in range(50):  # until the server holds the slow body (400s until then)
            client = connect(server.port)
            client.send(post("/v2/models/tabular/infer", b"x" * 2_500))
            status, _, body = client.read_response()
            if status == 503:
                break
            time.sleep(0.1)
        assert status == 503
        assert "limit is 5000; retry later" in json.loads(body)["error"]
        slow.close()
        time.sleep(0.2)
        assert server.request("POST", "/v2/models/tabular/infer", BODY).status == 200


def test_malformed_http_is_400_and_the_connection_closes(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(b"NOT HTTP AT ALL\r\n\r\n")
    status, _, body = client.read_response()
    assert status == 400
    assert "malformed HTTP request" in json.loads(body)["error"]
    assert client.closed_by_peer()


def test_http_1_0_without_keep_alive_closes_after_the_answer(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
    status, headers, _ = client.read_response()
    assert status == 200
    assert headers["connection"] == "close"
    assert client.closed_by_peer()


def test_query_strings_and_percent_encoding_route_like_plain_paths(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    assert tabular_server.get("/v2/models/tab%75lar/ready?x=1").status == 200


def test_absolute_form_request_targets_route_like_their_path(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(b"GET http://x:8080/v2/models/tabular/ready?y=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_response()[0] == 200
    client.send(b"GET http://x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_response()[0] == 404


@pytest.fixture(scope="module")
def impatient_server(tabular_dir: str) -> Iterator[ServerProcess]:
    with serving(tabular_dir, "tabular", "--keep-alive-timeout", "0.3") as server:
        yield server


def test_silent_keep_alive_connections_are_closed_after_the_timeout(
    impatient_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(impatient_server.port)
    client.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_response()[0] == 200
    client.sock.settimeout(5)
    assert client.closed_by_peer()


def test_a_request_that_stops_arriving_half_way_is_dropped(
    impatient_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(impatient_server.port)
    client.send(
        b"POST /v2/models/tabular/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    )
    client.sock.settimeout(5)
    assert client.closed_by_peer()
    assert impatient_server.get("/v2/health/live").status == 200


def test_random_bytes_on_the_socket_never_take_the_server_down(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    rng = random.Random(7)
    for _ in range(50):
        client = connect(tabular_server.port)
        client.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n")
        client.close()
    assert tabular_server.get("/v2/health/ready").status == 200


def test_headers_over_the_limit_are_431_and_the_connection_closes(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(100))
    client.send(b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
    status, _, body = client.read_response()
    assert status == 431
    assert b"headers exceed" in body
    assert client.closed_by_peer()
    assert tabular_server.get("/v2/health/live").status == 200


def test_a_url_over_the_header_limit_is_431(
    tabular_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    client = connect(tabular_server.port)
    client.send(b"GET /v2/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.read_response()[0] == 431


def test_headers_trickled_byte_by_byte_are_cut_off_at_the_deadline(
    impatient_server: ServerProcess, connect: Callable[[int], RawClient]
) -> None:
    """Slowloris: each byte arrives before the idle timeout, the headers never end."""
    client = connect(impatient_server.port)
    client.send(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    while time.monotonic() - started < 4.0 and not peer_has_closed(client):
        client.send(b"X")
        time.sleep(0.1)
    assert peer_has_closed(client)
    assert impatient_server.get("/v2/health/live").status == 200

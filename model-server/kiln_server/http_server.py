"""A lean HTTP/1.1 server: an asyncio Protocol with httptools parsing.

What it does: keep-alive, pipelining (requests on one connection are answered strictly in
order, one at a time), Content-Length and chunked request bodies, a request size limit (413),
``Expect: 100-continue`` (answered only to HTTP/1.1 clients, and only once every earlier
request on the connection is answered), HEAD, 400 on malformed requests and on an HTTP/1.1
request without exactly one ``Host``, 431 when the request line and headers exceed
``MAX_HEADER_BYTES``, idle keep-alive timeout, a deadline for the headers (a client trickling
bytes never ends them: slowloris), a minimum rate for bodies once a grace period is over
(408: a trickled body cannot hold its connection and its share of the body budget for
long), a budget for request bodies held in memory across all connections (past it, 503:
many clients each sending a body just under the size limit cannot exhaust memory), a cap
on open connections (past it, a new one gets 503 and is closed), cancellation of the
answer being computed when its client disconnects, and a graceful drain for shutdown.

What it leaves to the handler: routing and every body. The path is handed over as sent,
percent-encoding included, so that ``%2F`` stays inside its segment: the handler splits the
path at ``/`` first and decodes each segment after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools
import orjson

from kiln_server.pending import Pending

log = logging.getLogger("kiln_server.http_server")

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_JSON = b"application/json"
# Pipelined requests buffered per connection before we stop reading from it.
_MAX_PIPELINED = 32
# The request line plus headers of one request; httptools itself sets no limit.
MAX_HEADER_BYTES = 64 * 1024


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str  # as sent, without the query: percent-encoding is the handler's to decode
    headers: dict[bytes, bytes]
    body: bytes


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_response(status: int, document: object) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(document))


def error_response(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, orjson.dumps({"error": message}))


# An answer now, or one to wait for: a Pending (the cheap way: no task, no future, the
# answer written as soon as it is settled), a future or a coroutine. Cancelling it is how
# the server says that the client has gone.
Handler = Callable[[HttpRequest], HttpResponse | Pending[HttpResponse] | Awaitable[HttpResponse]]


@dataclass
class ServerState:
    """What the listening server shares with its connections."""

    handler: Handler
    max_body: int
    # Also the time a request's line and headers may take to arrive, from its first byte.
    keep_alive_timeout: float
    # Request bodies held at once, summed over connections, from first byte until answered.
    max_buffered_bytes: int
    # Open connections; one more is answered 503 and closed.
    max_connections: int = 4096
    # Once a body has been expected for ``body_grace`` seconds, it must have averaged this
    # many bytes a second since (0: no minimum).
    min_body_rate: float = 16384.0
    body_grace: float = 5.0
    buffered_bytes: int = 0
    connections: set[HttpProtocol] = field(default_factory=set)
    draining: bool = False


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_message = False
        self._in_headers = False
        self._header_bytes = 0
        self._message_started = 0.0
        self._rejected = False
        self._requests: deque[tuple[HttpRequest, bool]] = deque()
        self._busy = False
        self._write_paused = False
        self._read_paused = False
        self._closing = False
        self._rejection: HttpResponse | None = None
        self._current: tuple[HttpRequest, bool] | None = None
        self._answer: Pending[HttpResponse] | asyncio.Future[HttpResponse] | None = None
        self._continue_due = False
        # When the body began to be expected, and how much of it had arrived by then.
        self._body_clock: float | None = None
        self._body_at_clock = 0
        self.last_active = time.monotonic()

    # --- connection lifecycle -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        state = self._state
        if len(state.connections) >= state.max_connections:
            self._closing = True
            message = f"the server has {len(state.connections)} connections open, its limit"
            self._transport.write(_rendered(error_response(503, message + "; retry later")))
            self._transport.close()
            return
        state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        self._closing = True
        unanswered = sum(len(request.body) for request, _ in self._requests)
        if self._answer is not None:
            self._answer.cancel()  # nobody is left to read it: stop computing it
            self._answer = None
        if self._current is not None:
            unanswered += len(self._current[0].body)
            self._current = None
        self._release(unanswered + (self._body_size if self._in_message else 0))
        self._body_size = 0
        self._requests.clear()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._next_request()

    def body_too_slow(self, now: float) -> bool:
        """The body being received has fallen below the minimum rate after its grace."""
        state = self._state
        clock = self._body_clock
        if clock is None or self._read_paused or state.min_body_rate <= 0:
            return False
        late = now - clock - state.body_grace
        return late > 0 and self._body_size - self._body_at_clock < late * state.min_body_rate

    def reject_slow_body(self) -> None:
        rate = self._state.min_body_rate
        self._reject(408, f"the request body arrived slower than {rate:.0f} bytes a second")

    @property
    def idle(self) -> bool:
        return not self._busy and not self._requests and not self._in_message

    def headers_overdue(self, started_before: float) -> bool:
        """A request began before ``started_before`` and its headers have not all arrived."""
        return self._in_headers and self._message_started < started_before

    @property
    def waiting_on_client(self) -> bool:
        """Nothing to answer: the connection is idle or a request is still arriving."""
        return not self._busy and not self._requests

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # --- parsing --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._closing or self._rejected:  # a rejected stream cannot resync: ignore the rest
            return
        self.last_active = time.monotonic()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            if not self._rejected:
                self._reject(400, f"malformed HTTP request: {error}")

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_headers = True
        self._header_bytes = 0
        self._message_started = time.monotonic()
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        if self._headers_too_large(len(url)):
            return
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_too_large(len(name) + len(value)):
            return
        key = name.lower()
        previous = self._headers.get(key)
        if previous is None:
            self._headers[key] = value
        elif key == b"host":
            self._reject(400, "the request has more than one Host header")
        else:
            self._headers[key] = previous + b", " + value

    def _headers_too_large(self, size: int) -> bool:
        if self._rejected:
            return True
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._reject(431, f"the request line and headers exceed {MAX_HEADER_BYTES} bytes")
            return True
        return False

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._rejected:
            return
        headers = self._headers
        http_11 = self._parser.get_http_version() == "1.1"
        if http_11 and b"host" not in headers:
            self._reject(400, "an HTTP/1.1 request needs a Host header")
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._state.max_body:
            self._reject(413, f"request body of {int(length)} bytes exceeds {self._state.max_body}")
            return
        expect = headers.get(b"expect")
        # HTTP/1.0 has no interim responses: its clients must not get one (RFC 9110 10.1.1).
        if http_11 and expect is not None and expect.lower() == b"100-continue":
            self._continue_due = True
            self._send_continue()
        else:
            self._start_body_clock()

    def _send_continue(self) -> None:
        """100 Continue, once every earlier request on the connection is answered: an
        interim response must not come before the final response of a previous request."""
        if self._busy or self._requests or self._transport is None:
            return
        self._continue_due = False
        self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._start_body_clock()

    def _start_body_clock(self) -> None:
        self._body_clock = time.monotonic()
        self._body_at_clock = self._body_size

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        state = self._state
        size = len(body)
        if self._body_size + size > state.max_body:
            self._reject(413, f"request body exceeds {state.max_body} bytes")
            return
        if state.buffered_bytes + size > state.max_buffered_bytes:
            self._reject(
                503,
                f"the server holds {state.buffered_bytes} bytes of request bodies, its limit "
                f"is {state.max_buffered_bytes}; retry later",
            )
            return
        self._body_size += size
        state.buffered_bytes += size
        self._body.append(body)

    def _release(self, size: int) -> None:
        self._state.buffered_bytes -= size

    def on_message_complete(self) -> None:
        self._in_message = False
        self._body_clock = None
        self._continue_due = False
        if self._rejected:
            return
        url = self._url
        if not url.startswith(b"/") and b"://" in url:
            # absolute-form ("POST http://host/v2/..."), which HTTP/1.1 servers must accept
            path_start = url.find(b"/", url.index(b"://") + 3)
            url = url[path_start:] if path_start >= 0 else b"/"
        query = url.find(b"?")
        if query >= 0:
            url = url[:query]
        path = url.decode("latin-1")
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        method = self._parser.get_method().decode("latin-1")
        request = HttpRequest(method, path, self._headers, body)
        self._requests.append((request, self._parser.should_keep_alive()))
        if len(self._requests) > _MAX_PIPELINED and self._transport and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        if not self._busy:
            self._next_request()

    def _reject(self, status: int, message: str) -> None:
        """Answer an unparseable or oversized request and close: the stream cannot resync."""
        if self._in_message:
            self._release(self._body_size)
        self._body_size = 0
        self._body = []
        self._rejected = True
        self._in_message = False
        self._in_headers = False
        self._body_clock = None
        self._continue_due = False
        self._rejection = error_response(status, message)
        self._requests.append((HttpRequest("REJECT", "", {}, b""), False))
        if not self._busy:
            self._next_request()

    # --- answering ------------------------------------------------------------------------
    def _next_request(self) -> None:
        while not self._busy and self._requests and not self._write_paused and not self._closing:
            request, keep_alive = self._requests.popleft()
            if self._read_paused and len(self._requests) <= _MAX_PIPELINED // 2:
                self._read_paused = False
                if self._transport is not None:
                    self._transport.resume_reading()
                if self._body_clock is not None:  # the body was held up by us, not the client
                    self._start_body_clock()
            if request.method == "REJECT" and self._rejection is not None:
                self._write(request, self._rejection, keep_alive=False)
                return
            try:
                outcome = self._state.handler(request)
            except Exception:
                log.exception("handler failed for %s %s", request.method, request.path)
                outcome = error_response(500, "internal server error")
            if isinstance(outcome, HttpResponse):
                self._write(request, outcome, keep_alive)
                continue
            self._busy = True
            self._current = (request, keep_alive)
            if isinstance(outcome, Pending):
                self._answer = outcome
                outcome.then(self._deliver)  # may deliver at once, which goes on from there
                continue
            answer = (
                outcome if isinstance(outcome, asyncio.Future) else asyncio.ensure_future(outcome)
            )
            self._answer = answer
            answer.add_done_callback(self._answered)
        if self._continue_due and not self._busy and not self._requests and not self._closing:
            self._send_continue()

    def _answered(self, done: asyncio.Future[HttpResponse]) -> None:
        current = self._current
        if current is None:  # the connection was lost; its body was released then
            return
        if done.cancelled():
            self._busy = False
            self._answer = None
            self._current = None
            self._release(len(current[0].body))
            return
        error = done.exception()
        if error is not None:
            request = current[0]
            log.error("handler failed for %s %s", request.method, request.path, exc_info=error)
            self._deliver(error_response(500, "internal server error"))
        else:
            self._deliver(done.result())

    def _deliver(self, response: HttpResponse) -> None:
        """Write the answer to the request being answered, then go on to the next."""
        self._busy = False
        self._answer = None
        current = self._current
        self._current = None
        assert current is not None
        self._write(current[0], response, current[1])
        self._next_request()

    def _write(self, request: HttpRequest, response: HttpResponse, keep_alive: bool) -> None:
        self._release(len(request.body))  # answered: the body is no longer held for it
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = keep_alive and not self._state.draining
        body = response.body
        head = _head(response, keep_alive)
        if request.method != "HEAD":
            if len(body) < 65536:
                head.append(body)
                transport.write(b"".join(head))
            else:
                transport.writelines([b"".join(head), body])
        else:
            transport.write(b"".join(head))
        self.last_active = time.monotonic()
        if not keep_alive:
            self._closing = True
            self._requests.clear()
            transport.close()


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def _status_line(status: int, content_type: bytes) -> bytes:
    """The head of a response up to its content length's value (cached per kind)."""
    line = _STATUS_LINES.get((status, content_type))
    if line is None:
        reason = _REASONS.get(status, b"Unknown")
        line = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: " % (
            status,
            reason,
            content_type,
        )
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[(status, content_type)] = line
    return line


def _head(response: HttpResponse, keep_alive: bool) -> list[bytes]:
    """The status line and headers of ``response``, up to and with the blank line."""
    head = [_status_line(response.status, response.content_type), b"%d\r\n" % len(response.body)]
    for name, value in response.headers:
        head.append(b"%s: %s\r\n" % (name, value))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return head


def _rendered(response: HttpResponse) -> bytes:
    """A complete response that closes its connection (for refusals before any request)."""
    return b"".join([*_head(response, keep_alive=False), response.body])


class HttpServer:
    """A listening socket plus its connections; ``drain`` is the graceful shutdown."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self.state), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.create_task(self._close_idle_connections())

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _close_idle_connections(self) -> None:
        state = self.state
        timeout = state.keep_alive_timeout
        period = max(0.05, min(1.0, timeout / 2, state.body_grace / 2))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            cutoff = now - timeout
            # Idle keep-alive connections, requests that stopped arriving half-way, and
            # headers trickled so slowly that they never end; bodies trickled get a 408.
            for connection in list(state.connections):
                if (
                    connection.waiting_on_client and connection.last_active < cutoff
                ) or connection.headers_overdue(cutoff):
                    connection.close()
                elif connection.body_too_slow(now):
                    connection.reject_slow_body()

    async def drain(self, grace_seconds: float) -> None:
        """Stop accepting, let in-flight requests finish, close keep-alive connections."""
        self.state.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace_seconds
        while self.state.connections and time.monotonic() < deadline:
            for connection in list(self.state.connections):
                if connection.idle:
                    connection.close()
            await asyncio.sleep(0.02)
        for connection in list(self.state.connections):
            connection.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()

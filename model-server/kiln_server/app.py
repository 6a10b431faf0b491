"""HTTP endpoints of the Open Inference Protocol v2, built by ``create_app``.

Endpoints only translate between HTTP and the data plane; ``InferenceError`` becomes
``{"error": "..."}`` with its status here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kiln_server.content_coding import decoded_body
from kiln_server.dataplane import DataPlane
from kiln_server.errors import InferenceError
from kiln_server.http_server import HttpRequest, HttpResponse, error_response, json_response
from kiln_server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

_HEADER_LENGTH = b"inference-header-content-length"
_CONTENT_ENCODING = b"content-encoding"
_BINARY = b"application/octet-stream"
_GET = ("GET", "HEAD")
_POST = ("POST",)

Endpoint = Callable[..., HttpResponse | Awaitable[HttpResponse]]


class MethodNotAllowed(InferenceError):
    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(405, f"method {method} is not allowed here; use {' or '.join(allowed)}")
        self.allowed = allowed


class App:
    """Routes requests to endpoints; an instance is the HTTP server's handler."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        try:
            return self._route(request)
        except MethodNotAllowed as error:
            response = error_response(error.status, error.message)
            response.headers.append((b"allow", ", ".join(error.allowed).encode()))
            return response
        except InferenceError as error:
            return error_response(error.status, error.message)

    def _route(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        path = request.path
        if path.endswith("/") and len(path) > 1:
            path = path.rstrip("/")
        parts = path.split("/")
        # parts[0] is "" (the path starts with "/")
        if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models":
            return self._model_route(request, parts[3:])
        if path == "/v2/health/live":
            self._allow(request, _GET)
            return json_response(200, {"live": True})
        if path == "/v2/health/ready":
            self._allow(request, _GET)
            self.dataplane.check_ready()
            return json_response(200, {"ready": True})
        if path == "/v2":
            self._allow(request, _GET)
            return json_response(200, self.dataplane.server_metadata())
        if path == "/metrics":
            self._allow(request, _GET)
            return HttpResponse(
                200, self.dataplane.metrics.exposition(), content_type=METRICS_CONTENT_TYPE
            )
        raise InferenceError(404, f"no such endpoint: {request.path}")

    def _model_route(
        self, request: HttpRequest, parts: list[str]
    ) -> HttpResponse | Awaitable[HttpResponse]:
        # parts: [model] [versions, v] [ready | infer]
        name = parts[0]
        version: str | None = None
        rest = parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            version = rest[1]
            rest = rest[2:]
        if not name or (version is not None and not version):
            raise InferenceError(404, f"no such endpoint: {request.path}")
        if not rest:
            self._allow(request, _GET)
            return json_response(200, self.dataplane.model_metadata(name, version))
        if rest == ["ready"]:
            self._allow(request, _GET)
            return json_response(200, self.dataplane.model_ready(name, version))
        if rest == ["infer"]:
            self._allow(request, _POST)
            return self._infer(request, name, version)
        raise InferenceError(404, f"no such endpoint: {request.path}")

    @staticmethod
    def _allow(request: HttpRequest, methods: tuple[str, ...]) -> None:
        if request.method not in methods:
            raise MethodNotAllowed(request.method, methods)

    async def _infer(self, request: HttpRequest, name: str, version: str | None) -> HttpResponse:
        raw_length = request.headers.get(_HEADER_LENGTH)
        header_length: int | None = None
        try:
            if raw_length is not None:
                if not raw_length.strip().isdigit():
                    raise InferenceError(
                        400, "Inference-Header-Content-Length must be a non-negative integer"
                    )
                header_length = int(raw_length)
            body = decoded_body(
                request.body,
                request.headers.get(_CONTENT_ENCODING),
                self.dataplane.settings.max_request_bytes,
            )
            body, json_length = await self.dataplane.infer(name, version, body, header_length)
        except InferenceError as error:
            return error_response(error.status, error.message)
        if json_length is None:
            return HttpResponse(200, body)
        return HttpResponse(
            200,
            body,
            content_type=_BINARY,
            headers=[(b"inference-header-content-length", b"%d" % json_length)],
        )


def create_app(dataplane: DataPlane) -> App:
    """The HTTP handler for one data plane."""
    return App(dataplane)

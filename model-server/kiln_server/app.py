"""HTTP endpoints of the Open Inference Protocol v2, built by ``create_app``.

Endpoints only translate between HTTP and the data plane; ``InferenceError`` becomes
``{"error": "..."}`` with its status here and nowhere else.
"""

from __future__ import annotations

from urllib.parse import unquote

from kiln_server.dataplane import DataPlane, Respond
from kiln_server.errors import InferenceError
from kiln_server.http_server import HttpRequest, HttpResponse, error_response, json_response
from kiln_server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from kiln_server.pending import Pending

_HEADER_LENGTH = b"inference-header-content-length"
_CONTENT_ENCODING = b"content-encoding"
_BINARY = b"application/octet-stream"
_GET = ("GET", "HEAD")
_POST = ("POST",)


class MethodNotAllowed(InferenceError):
    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(405, f"method {method} is not allowed here; use {' or '.join(allowed)}")
        self.allowed = allowed


class App:
    """Routes requests to endpoints; an instance is the HTTP server's handler."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        settings = dataplane.settings
        name = settings.model_name
        # The served model's infer paths as clients send them: routed without parsing.
        self._model_name = name
        self._infer_paths: dict[str, str | None] = {f"/v2/models/{name}/infer": None}
        if settings.model_version is not None:
            path = f"/v2/models/{name}/versions/{settings.model_version}/infer"
            self._infer_paths[path] = settings.model_version

    def __call__(self, request: HttpRequest) -> HttpResponse | Pending[HttpResponse]:
        try:
            path = request.path
            if request.method == "POST" and path in self._infer_paths:
                return self._infer(request, self._model_name, self._infer_paths[path])
            return self._route(request)
        except MethodNotAllowed as error:
            response = error_response(error.status, error.message)
            response.headers = ((b"allow", ", ".join(error.allowed).encode()),)
            return response
        except InferenceError as error:
            return error_response(error.status, error.message)

    def _route(self, request: HttpRequest) -> HttpResponse | Pending[HttpResponse]:
        path = request.path
        if path.endswith("/") and len(path) > 1:
            path = path.rstrip("/")
        # Split first, then decode: an encoded "/" (%2F) belongs to its segment.
        parts = path.split("/")
        if "%" in path:
            parts = [unquote(part) for part in parts]
            path = "/".join(part.replace("/", "%2F") for part in parts)
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
    ) -> HttpResponse | Pending[HttpResponse]:
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

    def _infer(
        self, request: HttpRequest, name: str, version: str | None
    ) -> HttpResponse | Pending[HttpResponse]:
        raw_length = request.headers.get(_HEADER_LENGTH)
        header_length: int | None = None
        if raw_length is not None:
            if not raw_length.strip().isdigit():
                return error_response(
                    400, "Inference-Header-Content-Length must be a non-negative integer"
                )
            header_length = int(raw_length)
        return self.dataplane.infer(
            name,
            version,
            request.body,
            header_length,
            request.headers.get(_CONTENT_ENCODING),
            _RESPOND,
        )


def _ok(body: bytes, json_length: int | None) -> HttpResponse:
    if json_length is None:
        return HttpResponse(200, body)
    return HttpResponse(
        200,
        body,
        content_type=_BINARY,
        headers=((b"inference-header-content-length", b"%d" % json_length),),
    )


def _failed(error: InferenceError) -> HttpResponse:
    return error_response(error.status, error.message)


_RESPOND = Respond(_ok, _failed)


def create_app(dataplane: DataPlane) -> App:
    """The HTTP handler for one data plane."""
    return App(dataplane)

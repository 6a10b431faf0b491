"""Stand-ins for the ``etcd`` and ``kube-apiserver`` binaries, to test the envtest launcher.

Called by two wrappers named like the binaries (``<python> control_plane.py etcd "$@"``) in a
temporary ``KUBEBUILDER_ASSETS`` folder, this script
accepts the launcher's flags and serves what the launcher and a client check: etcd's
``/health`` on plain HTTP, and on the API server's secure port ``/readyz``, ``/version``,
``/api/v1`` and one Namespace, over TLS that requires a client certificate from the
``--client-ca-file`` CA in the ``system:masters`` group, and only once etcd answers. It proves
the certificates, flags, readiness wait, kubeconfig and shutdown fit together; it is not
an API server.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

VERSION = "v1.30.0-fake"


def flags(argv: list[str]) -> dict[str, str]:
    parsed = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            parsed[key] = value
    return parsed


class Handler(BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}

    def do_GET(self) -> None:
        body = self.routes.get(self.path.split("?")[0])
        if callable(body):
            body = body(self)
        if body is None:
            self.answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        else:
            self.answer(200, body)

    def answer(self, code: int, body: Any) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.command} {self.path}\n")


def serve(server: HTTPServer) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def run_etcd(options: dict[str, str]) -> None:
    port = int(options["listen-client-urls"].rsplit(":", 1)[1])
    Path(options["data-dir"], "member").mkdir(parents=True, exist_ok=True)
    Handler.routes = {"/health": {"health": "true"}}
    serve(HTTPServer(("127.0.0.1", port), Handler))


def run_apiserver(options: dict[str, str]) -> None:
    etcd = options["etcd-servers"]

    def readyz(handler: Handler) -> str | None:
        with urllib.request.urlopen(f"{etcd}/health", timeout=2) as answer:
            healthy = json.loads(answer.read())["health"] == "true"
        certificate = handler.connection.getpeercert()  # the TLS socket's peer, verified
        subject = dict(item[0] for item in certificate["subject"])
        return "ok" if healthy and subject.get("organizationName") == "system:masters" else None

    Handler.routes = {
        "/readyz": readyz,
        "/version": {"gitVersion": VERSION},
        "/api/v1": {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [{"name": "namespaces", "kind": "Namespace", "namespaced": False}],
        },
        "/api/v1/namespaces/default": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "default"},
        },
    }
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=options["client-ca-file"])
    context.load_cert_chain(options["tls-cert-file"], options["tls-private-key-file"])
    context.verify_mode = ssl.CERT_REQUIRED
    server = HTTPServer((options["bind-address"], int(options["secure-port"])), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve(server)


def main() -> None:
    role, arguments = sys.argv[1], sys.argv[2:]  # the wrappers pass the binary's name first
    if "--version" in arguments:
        print(f"Kubernetes {VERSION}" if role == "kube-apiserver" else "etcd Version: 3.4.0-fake")
        return
    options = flags(arguments)
    if role == "etcd":
        run_etcd(options)
    else:
        run_apiserver(options)


if __name__ == "__main__":
    main()

"""Start ``kiln-server serve`` as a real process on a free loopback port, and talk to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ServerProcess:
    def __init__(self, model_dir: str, name: str, *args: str, env: Mapping[str, str] = ()):
        self.port = free_port()
        self.name = name
        command = [
            sys.executable, "-m", "kiln_server", "serve", "--model-dir", model_dir,
            "--model-name", name, "--host", "127.0.0.1", "--port", str(self.port), *args,
        ]  # fmt: skip
        environment = {**os.environ, **dict(env)}
        # A file, not a pipe: an unread pipe would block a chatty server.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._final_output = ""
        self.process = subprocess.Popen(
            command, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_live(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if self.get("/v2/health/live").status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("server never became live")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_live(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/v2/health/ready").status == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"server never became ready: {self.get('/v2/health/ready').body!r}")

    def wait_unready_reason(self, timeout: float = 30.0) -> Reply:
        """The readiness answer once loading has ended in failure."""
        self.wait_live(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.get("/v2/health/ready")
            if reply.status != 503 or b"is loading" not in reply.body:
                return reply
            time.sleep(0.05)
        raise TimeoutError("the model never finished loading")

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        connection: http.client.HTTPConnection | None = None,
    ) -> Reply:
        own = connection is None
        conn = connection or self.connection()
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            if own:
                conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_json(self, path: str, document: Any) -> Reply:
        return self.request("POST", path, json.dumps(document).encode(),
                            {"Content-Type": "application/json"})  # fmt: skip

    def infer(self, document: Any, version: str | None = None) -> Reply:
        prefix = f"/v2/models/{self.name}" + (f"/versions/{version}" if version else "")
        return self.post_json(prefix + "/infer", document)

    def metrics(self) -> str:
        return self.get("/metrics").body.decode()

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise
        finally:
            self._final_output = self.output()
            self._log.close()

    def output(self) -> str:
        if self._log.closed:
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


@contextmanager
def serving(model_dir: str, name: str, *args: str) -> Iterator[ServerProcess]:
    """A ready server for the block; stopped however the block ends."""
    server = ServerProcess(model_dir, name, *args)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def metric_value(exposition: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None if absent."""
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            return float(value)
    return None

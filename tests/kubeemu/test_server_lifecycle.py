"""The Emulator starts on a free port, serves while running, and stops promptly."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection

from tests.kubeemu import Emulator


def test_stop_ends_open_watches_promptly() -> None:
    emulator = Emulator()
    url = emulator.start()
    assert url == emulator.url
    assert url.startswith("http://127.0.0.1:")
    lines: list[bytes] = []

    def watch() -> None:
        connection = HTTPConnection("127.0.0.1", emulator.port, timeout=30)
        try:
            connection.request("GET", "/api/v1/namespaces?watch=1")
            lines.extend(connection.getresponse().read().splitlines())
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + 10
    while not any(record[2] == "watch=1" for record in emulator.request_log):
        assert time.monotonic() < deadline, "the watch never reached the server"
        time.sleep(0.01)
    began = time.monotonic()
    emulator.stop()
    watcher.join(timeout=10)
    assert not watcher.is_alive()
    assert time.monotonic() - began < 5
    assert len(lines) == 4  # the four namespaces that exist at start, then the end of stream
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", emulator.port)) != 0


def test_the_module_runs_the_server_in_the_foreground() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with subprocess.Popen(
        [sys.executable, "-m", "tests.kubeemu", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert f"http://127.0.0.1:{port}" in process.stdout.readline()
            connection = HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", "/api/v1/namespaces/default")
                assert connection.getresponse().status == 200
            finally:
                connection.close()
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0

"""Process lifecycle: environment configuration, warm-up before ready, graceful SIGTERM,
the idle memory budget, and memory that stays flat under sustained load."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import numpy as np
import pytest

from tests.server import models
from tests.server.server_process import Reply, ServerProcess

pytestmark = pytest.mark.server


def test_settings_come_from_kiln_environment_variables(tabular_dir: str) -> None:
    server = ServerProcess(
        tabular_dir, "ignored-by-flag", env={"KILN_MODEL_VERSION": "7", "KILN_THREADS": "1"}
    )
    try:
        server.wait_ready()
        assert server.get("/v2/models/ignored-by-flag").json()["versions"] == ["7"]
        assert server.get("/v2/models/ignored-by-flag/versions/7/ready").status == 200
    finally:
        server.stop()


def test_sigterm_finishes_in_flight_requests_then_exits(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = str(tmp_path_factory.mktemp("slow"))
    models.slow(directory, size=1024, layers=64)
    server = ServerProcess(directory, "slow", "--threads", "1")
    try:
        server.wait_ready()
        sigterm_while_a_request_is_in_flight(server)
    finally:
        server.stop()


def sigterm_while_a_request_is_in_flight(server: ServerProcess) -> None:
    x = np.ones((256, 1024), dtype=np.float32)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [256, 1024],
                        "data": x.reshape(-1).tolist()}]}  # fmt: skip
    replies: list[Reply] = []
    worker = threading.Thread(target=lambda: replies.append(server.infer(body)))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait until the request is being computed
        if 'kiln_inference_requests_in_flight{model="slow",version=""} 1.0' in server.metrics():
            break
        time.sleep(0.005)
    else:
        pytest.fail("the request never reached the server")
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port), timeout=2),
    ):
        pass  # no longer accepting
    worker.join(30)
    assert replies, "the in-flight request got no answer"
    assert replies[0].status == 200
    assert replies[0].json()["outputs"][0]["shape"] == [256, 1024]
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 25
    assert "draining" in server.output()


def test_an_idle_server_with_a_tabular_model_stays_under_150_mb(
    tabular_server: ServerProcess,
) -> None:
    with open(f"/proc/{tabular_server.process.pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert rss_kb < 150 * 1024, f"idle RSS is {rss_kb / 1024:.0f} MiB"


def resident_kib(server: ServerProcess) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_resident_memory_stays_flat_under_sustained_mixed_traffic(
    tabular_server: ServerProcess,
) -> None:
    """Good, bad and binary requests over fresh and kept-alive connections: after a warm-up
    round, further rounds must not grow the process (a leak would grow with each round)."""
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    good = json.dumps({"id": "r", "inputs": [{"name": "input", "datatype": "FP32",
                       "shape": [4, 8], "data": x.reshape(-1).tolist()}]}).encode()  # fmt: skip
    bad = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 8],
                      "data": [0.0]}]}).encode()  # fmt: skip
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 8],
                       "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
    path = "/v2/models/tabular/infer"

    def one_round() -> None:
        connection = tabular_server.connection()
        for _ in range(300):
            assert tabular_server.request("POST", path, good, connection=connection).status == 200
            assert tabular_server.request("POST", path, bad, connection=connection).status == 400
            binary = tabular_server.request(
                "POST", path, head + x.tobytes(),
                {"Inference-Header-Content-Length": str(len(head))}, connection=connection,
            )  # fmt: skip
            assert binary.status == 200
        connection.close()
        for _ in range(100):  # connections opened and dropped
            assert tabular_server.request("POST", path, good).status == 200

    one_round()
    settled = resident_kib(tabular_server)
    for _ in range(3):
        one_round()
    # ~3,900 requests after the warm-up: 2 MiB catches a leak of about 500 bytes a request.
    assert resident_kib(tabular_server) - settled < 2 * 1024


def test_a_second_sigterm_while_draining_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = str(tmp_path_factory.mktemp("slow-twice"))
    models.slow(directory, size=1024, layers=64)
    server = ServerProcess(directory, "slow", "--threads", "1")
    try:
        server.wait_ready()
        original = server.process.send_signal

        def signal_twice(signum: int) -> None:
            original(signum)
            time.sleep(0.01)
            original(signal.SIGINT)

        server.process.send_signal = signal_twice  # type: ignore[method-assign]
        sigterm_while_a_request_is_in_flight(server)
        assert server.output().count("signal received") == 1
    finally:
        server.process.send_signal = original  # type: ignore[method-assign]
        server.stop()


def test_the_module_entry_point_and_the_console_script_agree() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "kiln_server", "serve", "--help"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    flags = ("--max-batch-size", "--max-queue-delay-ms", "--max-queued-requests", "--device")
    for flag in (*flags, "KILN_THREADS", "KILN_MAX_QUEUED_REQUESTS"):
        assert flag in result.stdout

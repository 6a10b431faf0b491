"""The real ``kiln-operator`` as a separate process, for tests that need it running.

Cluster tests drive the operator the way a deployment does: its own process, its own
kubeconfig, one namespace to watch. Its output goes to a log file the test can read and
search; ``stop``/``kill``/``restart`` let crash tests interrupt it at any point. A log that
shows an unhandled exception is a failure even when every assertion passed, because an
operator that crashes inside a handler only looks healthy until the next retry.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port

#: Log lines that mean an exception escaped a handler or the operator itself.
UNHANDLED_EXCEPTION_PATTERNS = (
    re.compile(r"^Traceback \(most recent call last\)", re.MULTILINE),
    re.compile(r"Handler '[^']*' failed with an exception"),
    re.compile(r"Unhandled exception", re.IGNORECASE),
)

STOP_TIMEOUT = 20.0


def operator_command() -> list[str]:
    """The installed ``kiln-operator`` next to this interpreter, else on PATH."""
    beside_python = Path(sys.executable).parent / "kiln-operator"
    if beside_python.exists():
        return [str(beside_python)]
    on_path = shutil.which("kiln-operator")
    if on_path:
        return [on_path]
    return [sys.executable, "-m", "kiln_operator"]


def unhandled_exceptions(log_text: str) -> list[str]:
    """The log lines (with a little context) that show an escaped exception."""
    lines = log_text.splitlines()
    found = []
    for index, line in enumerate(lines):
        if any(pattern.search(line) for pattern in UNHANDLED_EXCEPTION_PATTERNS):
            found.append("\n".join(lines[index : index + 12]))
    return found


class OperatorProcess:
    """One ``kiln-operator --namespace NS`` process, logging to ``log_path``."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        """``command`` replaces the installed ``kiln-operator`` (e.g. a wrapper that injects
        a fault); the flags are the same."""
        self.kubeconfig = kubeconfig
        self.command = list(command) if command is not None else None
        self.namespace = namespace
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.metrics_port = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def replica(self, log_path: Path) -> OperatorProcess:
        """Another process with this one's command, flags and environment: a second replica
        must render the same objects, or the two fight over them."""
        return OperatorProcess(
            self.kubeconfig,
            self.namespace,
            log_path,
            extra_args=self.extra_args,
            env=self.extra_env,
            command=self.command,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @contextlib.contextmanager
    def running(self) -> Iterator[OperatorProcess]:
        """Started for the block; afterwards stopped, its log's tail printed (pytest shows
        captured output only for a failed test), and checked for unhandled exceptions."""
        self.start()
        try:
            yield self
        finally:
            self.stop()
            print(f"--- kiln-operator log ({self.log_path}), last lines:")
            print("\n".join(self.logs().splitlines()[-80:]))
        self.assert_no_unhandled_exceptions()

    def start(self) -> None:
        if self.is_running():
            raise RuntimeError(f"kiln-operator is already running (pid {self.pid})")
        self.metrics_port = free_port()
        argv = [
            *(self.command or operator_command()),
            "--namespace",
            self.namespace,
            "--liveness-port",
            "0",
            "--metrics-port",
            str(self.metrics_port),
            *self.extra_args,
        ]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.starts += 1
            log.write(f"--- kiln-operator start #{self.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code (None if not started).

        An operator that ignores SIGTERM is killed and reported: graceful shutdown is
        part of what the tests protect.
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(
                    f"kiln-operator did not exit within {timeout:.0f}s of SIGTERM; killed it.\n"
                    + self.logs()[-4000:]
                ) from None
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL, as a node failure or OOM kill would end it."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait()
        return process.returncode

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or SIGKILL with ``crash=True``), then start a fresh process."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def logs(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        """A mark for :meth:`wait_for_log` to search only what is logged after it."""
        return len(self.logs())

    def wait_for_log(self, pattern: str, timeout: float = 30.0, since: int = 0) -> str:
        """Wait until a log line matches ``pattern`` (a regex); return that line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.logs()[since:].splitlines():
                if regex.search(line):
                    return line
            if not self.is_running():
                raise AssertionError(
                    f"kiln-operator exited ({self._exit_code()}) before logging /{pattern}/:\n"
                    + self.logs()[-4000:]
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"kiln-operator did not log /{pattern}/ within {timeout:.0f}s:\n"
                    + self.logs()[-4000:]
                )
            time.sleep(0.1)

    def metrics(self, timeout: float = 15.0) -> str:
        """The Prometheus text the operator serves on its metrics port (waits for it)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    return str(answer.read().decode())
            except OSError as error:
                if not self.is_running() or time.monotonic() >= deadline:
                    raise AssertionError(f"no metrics at {url}: {error}") from error
                time.sleep(0.1)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def assert_no_unhandled_exceptions(self) -> None:
        found = unhandled_exceptions(self.logs())
        if found:
            raise AssertionError(
                f"kiln-operator logged {len(found)} unhandled exception(s) "
                f"(full log: {self.log_path}):\n\n" + "\n\n".join(found)
            )

    def _exit_code(self) -> str:
        code = self._process.returncode if self._process else None
        return f"exit code {code}"

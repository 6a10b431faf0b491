"""Settings of ``kiln-server serve``: one frozen value built from flags and ``KILN_*`` vars."""

from __future__ import annotations

import os
from dataclasses import dataclass


def default_threads() -> int:
    """Cores this process may run on (honours taskset and cgroup cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServeSettings:
    model_dir: str
    model_name: str
    model_version: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0
    max_queued_requests: int = 1024
    device: str = "cpu"
    threads: int = 0  # 0: one ONNX Runtime thread per available core
    max_request_bytes: int = 64 * 1024 * 1024
    max_buffered_bytes: int = 0  # 0: four requests of the largest size
    drift_window_rows: int = 2048
    keep_alive_timeout: float = 75.0
    max_connections: int = 4096
    min_body_rate: float = 16384.0  # bytes a second a body must average after the grace
    body_grace: float = 5.0
    shutdown_timeout: float = 30.0

    @property
    def model_path(self) -> str:
        return os.path.join(self.model_dir, "model.onnx")

    @property
    def baseline_path(self) -> str:
        return os.path.join(self.model_dir, "baseline.json")

    @property
    def request_body_budget(self) -> int:
        """Bytes of request bodies held at once, over all connections, before 503."""
        if self.max_buffered_bytes > 0:
            return max(self.max_buffered_bytes, self.max_request_bytes)
        return 4 * self.max_request_bytes

    @property
    def ort_threads(self) -> int:
        return self.threads if self.threads > 0 else default_threads()

"""What the command line asks of one operator process (parsed by :mod:`.cli`, used by
:mod:`.runtime`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MODEL_SERVER_IMAGE: Final = "ghcr.io/kiln-dev/kiln-server:0.1.0"


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    """The namespaces to watch (exact names); empty with ``all_namespaces``."""
    all_namespaces: bool = False
    liveness_port: int = 8080
    metrics_port: int = 9090
    accelerator_map: str | None = None
    log_format: str = "plain"
    verbose: bool = False
    resync_seconds: float = 60.0
    workers: int = 4
    """Reconciles of one kind that may run at once."""
    model_server_image: str = DEFAULT_MODEL_SERVER_IMAGE
    """The model-server image (validation Jobs, serving pods)."""
    validation_deadline_seconds: int = 600
    model_server_gpu_image: str | None = None
    """The model-server image built for CUDA (serving pods with an accelerator); None:
    the CPU image's tag with ``-gpu`` appended."""
    model_server_pull_secrets: tuple[str, ...] = ()
    """Secrets (in each object's namespace) for pulling the model-server images."""


def gpu_variant(image: str) -> str:
    """``repo:tag`` -> ``repo:tag-gpu`` (``repo`` -> ``repo:latest-gpu``); digests are kept
    as they are, since a digest names exactly one image."""
    if "@" in image:
        return image
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return f"{image}:latest-gpu"
    return f"{name}:{tag}-gpu"

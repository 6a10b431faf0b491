"""What every reconcile in one operator process shares: one context for all kinds.

The API client, the event recorder, the clock, the accelerator map and the settings the
command line chose. Reconcilers receive it as an argument; nothing in it is global, so two
operators in one test process never see each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from kiln_operator import kube
from kiln_operator.accelerators import AcceleratorMap
from kiln_operator.controller.recorder import EventRecorder
from kiln_operator.options import DEFAULT_MODEL_SERVER_IMAGE, gpu_variant
from kiln_operator.scrape import Scraper


@dataclass(frozen=True)
class Settings:
    """What the command line tunes for the reconcilers."""

    resync_seconds: float = 60.0
    """Look at every object again at least this often, even without events."""
    workers: int = 4
    """Reconciles of one kind that may run at once (of different objects)."""
    model_server_image: str = DEFAULT_MODEL_SERVER_IMAGE
    """The image with ``kiln-server`` as its entrypoint (validation Jobs, serving pods)."""
    validation_deadline_seconds: int = 600
    """How long a validation Job may take, pulls and retries included."""
    model_server_gpu_image: str = gpu_variant(DEFAULT_MODEL_SERVER_IMAGE)
    """The CUDA build of the model-server image (serving pods with an accelerator)."""
    model_server_pull_secrets: tuple[str, ...] = ()
    """Secrets for pulling the model-server images, named in validation and serving pods."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class OperatorContext:
    """The shared dependencies of every reconcile."""

    client: kube.Kube
    events: EventRecorder
    accelerators: AcceleratorMap = field(default_factory=AcceleratorMap)
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], dt.datetime] = _utc_now
    scraper: Scraper = field(default_factory=Scraper)

    @classmethod
    def of(
        cls,
        client: kube.Kube,
        accelerators: AcceleratorMap | None = None,
        settings: Settings | None = None,
    ) -> OperatorContext:
        return cls(
            client=client,
            events=EventRecorder(client),
            accelerators=accelerators or AcceleratorMap(),
            settings=settings or Settings(),
        )

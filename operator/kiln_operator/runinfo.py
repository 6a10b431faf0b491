"""Plain data about a run that decisions produce and builders consume.

Kept apart from both so that builders depend only on data, and decisions can name what they
ask builders for without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kiln_operator.api.trainingjob import RunTrigger

#: Where a `pvc://` output is mounted in training pods.
OUTPUT_MOUNT: Final = "/kiln/output"


@dataclass(frozen=True)
class RunStart:
    """A run to start: its identity and what asked for it."""

    name: str
    number: int
    trigger: RunTrigger
    spec_hash: str
    message: str
    scheduled_time: str | None = None
    request_value: str | None = None
    request_id: str | None = None
    """The id of the API run request this run answers."""
    generation: int | None = None
    """The TrainingJob's ``metadata.generation`` the run was started for."""


@dataclass(frozen=True)
class RunOutput:
    """Where one run writes: its URI, and for `pvc://` the claim mounted in the pod."""

    uri: str
    claim: str | None = None
    sub_path: str | None = None
    directory: str | None = None


def run_output(output_uri: str, run_name: str) -> RunOutput:
    """The run's own location under the TrainingJob's ``output.uri``.

    ``pvc://claim/models`` gives run ``r`` the URI ``pvc://claim/models/r`` and the directory
    ``/kiln/output/r`` in the pod (the claim mounted at ``/kiln/output`` with sub-path
    ``models``); other schemes get ``<uri>/r`` for the code to write to.
    """
    base = output_uri.rstrip("/")
    uri = f"{base}/{run_name}"
    if not base.startswith("pvc://"):
        return RunOutput(uri=uri)
    claim, _, path = base[len("pvc://") :].partition("/")
    return RunOutput(
        uri=uri,
        claim=claim,
        sub_path=path.strip("/") or None,
        directory=f"{OUTPUT_MOUNT}/{run_name}",
    )

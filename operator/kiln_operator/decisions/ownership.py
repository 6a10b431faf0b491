"""Which children belong to which TrainingJob: pure checks over metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiln_operator import naming


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj`` has an owner reference to the object with ``uid``."""
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def is_run_of(job: Mapping[str, Any], training_job: Mapping[str, Any]) -> bool:
    """Whether ``job`` counts as a run of ``training_job``: labelled with its name (the
    selector runs are read by) and owned by it."""
    labels = job["metadata"].get("labels") or {}
    meta = training_job["metadata"]
    labelled = labels.get(naming.TRAINING_JOB_LABEL) == naming.label_value(meta["name"])
    return labelled and owned_by(job, meta["uid"])


def run_selector(training_job: str) -> str:
    """The label selector of a TrainingJob's Jobs and pods (applied by the API server)."""
    return f"{naming.TRAINING_JOB_LABEL}={naming.label_value(training_job)}"


def model_selector(model: str) -> str:
    """The label selector of the ModelVersions registered for ``model``."""
    return f"{naming.MODEL_LABEL}={naming.label_value(model)}"

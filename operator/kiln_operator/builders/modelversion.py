"""The ModelVersion a successful run registers.

It is linked to its TrainingJob by labels and lineage, never owned by it: a registry entry
outlives the definition that trained it. The run and TrainingJob uid labels let a restarted
operator find a version it created just before it crashed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln_operator import naming


@dataclass(frozen=True)
class Registration:
    """Everything about a run that goes into its ModelVersion."""

    run: str
    artifact_uri: str
    sha256: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    baseline_uri: str | None = None
    lineage: Mapping[str, Any] = field(default_factory=dict)


def registration_labels(training_job: dict[str, Any], run: str, model: str) -> dict[str, str]:
    meta = training_job["metadata"]
    return {
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.MODEL_LABEL: model,
        naming.TRAINING_JOB_LABEL: naming.label_value(meta["name"]),
        naming.TRAINING_JOB_UID_LABEL: meta["uid"],
        naming.RUN_LABEL: run,
    }


def desired_model_version(
    training_job: dict[str, Any], model: str, version: int, registration: Registration
) -> dict[str, Any]:
    """ModelVersion ``<model>-v<version>`` for a run of ``training_job`` (not owned by it)."""
    meta = training_job["metadata"]
    lineage: dict[str, Any] = {
        "trainingJob": {"name": meta["name"], "uid": meta["uid"]},
        "run": registration.run,
    }
    for key in ("image", "dataset", "hyperparameters"):
        if registration.lineage.get(key):
            lineage[key] = registration.lineage[key]
    spec: dict[str, Any] = {
        "model": model,
        "version": version,
        "artifact": {"uri": registration.artifact_uri, "sha256": registration.sha256},
        "lineage": lineage,
    }
    if registration.metrics:
        spec["metrics"] = dict(registration.metrics)
    if registration.baseline_uri:
        spec["baseline"] = {"uri": registration.baseline_uri}
    labels = registration_labels(training_job, registration.run, model)
    labels[naming.MODEL_VERSION_LABEL] = str(version)
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {
            "name": naming.model_version_name(model, version),
            "namespace": meta["namespace"],
            "labels": labels,
        },
        "spec": spec,
    }

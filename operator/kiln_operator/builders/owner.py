"""Owner references and the labels every child of a TrainingJob carries."""

from __future__ import annotations

from typing import Any

from kiln_operator import naming


def controller_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """An owner reference that makes ``owner`` the controller of the child (GC deletes it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def training_labels(training_job: dict[str, Any], run_name: str) -> dict[str, str]:
    """Labels of a run's Job, pods and Service. Never copies the parent's labels, so
    ``app.kubernetes.io/instance`` and ``argocd.argoproj.io/*`` stay on the parent only."""
    return {
        naming.NAME_LABEL: "kiln-training",
        naming.COMPONENT_LABEL: "training-run",
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.TRAINING_JOB_LABEL: naming.label_value(training_job["metadata"]["name"]),
        naming.RUN_LABEL: run_name,
    }

"""Whether a successful run becomes a ModelVersion, and which version number it takes.

The gate compares the run's metrics with ``register.minMetrics``/``maxMetrics``. Version
numbers are allocated by creating ``<model>-v<n>`` with ``n`` one above the highest version
the model has (skipping a name another model's object holds); an AlreadyExists answer means
another writer took ``n`` and the caller re-reads. That gives no duplicates and no gaps,
even with two operator replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kiln_operator import naming
from kiln_operator.api.trainingjob import Registration
from kiln_operator.decisions.runs import NOT_REGISTERED, REGISTERED, RunRow

BELOW_MIN_METRICS = "BelowMinMetrics"
ABOVE_MAX_METRICS = "AboveMaxMetrics"


@dataclass(frozen=True)
class GateVerdict:
    """``passed``, or the reason and a message naming every metric that failed."""

    passed: bool
    reason: str = ""
    message: str = ""


def registration_gate(registration: Registration, metrics: Mapping[str, float]) -> GateVerdict:
    low: list[str] = []
    high: list[str] = []
    for name, minimum in sorted((registration.min_metrics or {}).items()):
        value = metrics.get(name)
        if value is None:
            low.append(f"{name} is missing from the result (minimum {_num(minimum)})")
        elif value < minimum:
            low.append(f"{name} {_num(value)} < minimum {_num(minimum)}")
    for name, maximum in sorted((registration.max_metrics or {}).items()):
        value = metrics.get(name)
        if value is None:
            high.append(f"{name} is missing from the result (maximum {_num(maximum)})")
        elif value > maximum:
            high.append(f"{name} {_num(value)} > maximum {_num(maximum)}")
    if not low and not high:
        return GateVerdict(True)
    reason = BELOW_MIN_METRICS if low else ABOVE_MAX_METRICS
    return GateVerdict(False, reason, "not registered: " + "; ".join(low + high))


def model_versions_of(model: str, model_versions: Iterable[Mapping[str, Any]]) -> list[int]:
    """The version numbers ``model`` has, whoever created them."""
    versions = []
    for mv in model_versions:
        spec = mv.get("spec") or {}
        version = spec.get("version")
        if spec.get("model") == model and isinstance(version, int):
            versions.append(version)
    return versions


def next_version(model: str, model_versions: Iterable[Mapping[str, Any]]) -> int:
    """One above the highest version of ``model`` (1 for a new model), past any number
    whose name ``<model>-v<n>`` an object of another model already holds: creating that
    name could never succeed, and retrying it would loop."""
    known = list(model_versions)
    taken = {str((mv.get("metadata") or {}).get("name")) for mv in known}
    version = max(model_versions_of(model, known), default=0) + 1
    while naming.model_version_name(model, version) in taken:
        version += 1
    return version


def _num(value: float) -> str:
    return f"{value:g}"


def registration_step(
    row: RunRow, registration: Registration, existing: str | None
) -> RunRow | None:
    """The verdict for a succeeded run awaiting registration, or None: create its version.

    ``existing`` names a ModelVersion already labelled with this run (created before a
    crash, or by another replica): adopting it is what prevents a duplicate.
    """
    if existing is not None:
        return replace(
            row, model_version=existing, reason=REGISTERED, message=f"registered {existing}"
        )
    if not registration.enabled:
        return replace(
            row,
            reason=NOT_REGISTERED,
            message="succeeded; registration is disabled (register.enabled)",
        )
    verdict = registration_gate(registration, row.metrics or {})
    if not verdict.passed:
        return replace(row, reason=verdict.reason, message=verdict.message)
    return None


def registered_version_of(
    run: str, training_job_uid: str, model_versions: Iterable[Mapping[str, Any]]
) -> str | None:
    """The ModelVersion that run ``run`` of the TrainingJob with that uid registered."""
    for mv in model_versions:
        labels = (mv.get("metadata") or {}).get("labels") or {}
        if (
            labels.get(naming.RUN_LABEL) == run
            and labels.get(naming.TRAINING_JOB_UID_LABEL) == training_job_uid
        ):
            return str(mv["metadata"]["name"])
    return None

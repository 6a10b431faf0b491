"""Which ModelVersion an InferenceService's spec asks for, or why none can be served.

A pinned ``{name, version}`` must name a Ready (validated) ModelVersion of the model; one
that is missing, still validating or failed is reported with its own reason, and whatever
serves keeps serving. ``{name, select}`` follows :func:`select_version`; the versions it
passed over are kept for status with their reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln_operator.api.inferenceservice import ModelRef
from kiln_operator.conditions import find_condition
from kiln_operator.decisions.selection import Skipped, select_version

Obj = Mapping[str, Any]

VERSION_NOT_FOUND = "VersionNotFound"
VERSION_NOT_VALIDATED = "VersionNotValidated"
VERSION_FAILED = "VersionFailedValidation"
NO_VERSION_PASSES = "NoVersionPassesPolicy"


@dataclass(frozen=True)
class Target:
    """A version to serve: its number and its ModelVersion's name."""

    version: int
    model_version: str
    #: The training run it came from (``spec.lineage.run``), for the audit trail.
    run: str = ""

    @property
    def described(self) -> str:
        """``iris-v2`` or ``iris-v2 (run iris-r2-1a2b3c4d)``."""
        return f"{self.model_version} (run {self.run})" if self.run else self.model_version


def _run_of(mv: Obj) -> str:
    return str(((mv.get("spec") or {}).get("lineage") or {}).get("run") or "")


@dataclass(frozen=True)
class Resolution:
    """The version the spec resolves to now, or the reason there is none."""

    target: Target | None
    reason: str = ""
    message: str = ""
    skipped: tuple[Skipped, ...] = ()
    #: True when the reason will pass by itself (a version still validating).
    waiting: bool = False


def resolve(
    model: ModelRef, model_versions: Sequence[Obj], serving: Obj | None = None
) -> Resolution:
    """Resolve ``model`` against the ModelVersions of the namespace (``serving``: the
    ModelVersion serving now, which ``mustBeatServing`` compares with)."""
    if model.select is not None:
        selection = select_version(model_versions, model.name, model.select, serving)
        if selection.chosen is not None:
            chosen = selection.chosen
            mv = next(m for m in model_versions if m["metadata"]["name"] == chosen.name)
            target = Target(chosen.version, chosen.name, _run_of(mv))
            return Resolution(target, skipped=selection.skipped)
        if not selection.skipped:
            message = f"no ModelVersion of model {model.name} exists yet"
        else:
            newest = selection.skipped[0]
            message = (
                f"no Ready ModelVersion of model {model.name} passes the selection policy "
                f"(newest: {newest.name}: {newest.reason})"
            )
        return Resolution(None, NO_VERSION_PASSES, message, selection.skipped)
    pinned = [
        mv
        for mv in model_versions
        if (mv.get("spec") or {}).get("model") == model.name
        and (mv.get("spec") or {}).get("version") == model.version
        and not mv["metadata"].get("deletionTimestamp")
    ]
    if not pinned:
        return Resolution(
            None,
            VERSION_NOT_FOUND,
            f"no ModelVersion of model {model.name} has version {model.version} "
            f"(it needs the label kiln.dev/model={model.name})",
        )
    mv = pinned[0]
    name = mv["metadata"]["name"]
    status = mv.get("status") or {}
    phase = status.get("phase")
    if phase == "Failed":
        validated = find_condition(status.get("conditions") or [], "Validated") or {}
        detail = validated.get("message") or "see its status"
        return Resolution(None, VERSION_FAILED, f"ModelVersion {name} failed validation: {detail}")
    ready = find_condition(status.get("conditions") or [], "Ready") or {}
    if phase != "Ready" or ready.get("status") != "True":
        return Resolution(
            None,
            VERSION_NOT_VALIDATED,
            f"ModelVersion {name} is not validated yet (phase {phase or 'unknown'})",
            waiting=True,
        )
    return Resolution(Target(int(model.version or 0), name, _run_of(mv)))

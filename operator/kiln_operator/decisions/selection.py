"""Which version of a model to serve: the newest Ready version that passes a policy.

One pure function, :func:`select_version`, shared by every caller (the InferenceService
reconciler follows ``spec.model.select`` with it). Rules, each giving the reason a version
is skipped:

- only Ready (validated) versions of the model, not being deleted, are candidates;
- ``minMetrics`` / ``maxMetrics``: each named metric must be present and within its bound;
- ``requireApproval``: ``spec.approved`` must be true;
- ``mustBeatServing``: on each named metric the candidate must be strictly better than the
  serving version (``better: higher`` or ``lower``). The serving version itself always
  passes (it need not beat itself), a candidate missing the metric fails, and a serving
  version missing it (or none serving) leaves nothing to beat.

Versions newer than the one chosen are reported as skipped, with their reasons, newest
first; older versions are not looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kiln_operator.api.inferenceservice import SelectionPolicy
from kiln_operator.conditions import is_true


@dataclass(frozen=True)
class Candidate:
    """The facts of one ModelVersion that selection looks at."""

    name: str
    version: int
    ready: bool
    approved: bool
    metrics: Mapping[str, float]

    @classmethod
    def of(cls, model_version: Mapping[str, Any]) -> Candidate:
        spec = model_version.get("spec") or {}
        status = model_version.get("status") or {}
        ready = status.get("phase") == "Ready" and is_true(status.get("conditions") or [], "Ready")
        return cls(
            name=model_version["metadata"]["name"],
            version=int(spec.get("version") or 0),
            ready=ready and not model_version["metadata"].get("deletionTimestamp"),
            approved=bool(spec.get("approved")),
            metrics=dict(spec.get("metrics") or {}),
        )


@dataclass(frozen=True)
class Skipped:
    """A version newer than the chosen one, and why the policy passed it over."""

    name: str
    version: int
    reason: str


@dataclass(frozen=True)
class Selection:
    chosen: Candidate | None
    skipped: tuple[Skipped, ...]


def select_version(
    model_versions: Iterable[Mapping[str, Any]],
    model: str,
    policy: SelectionPolicy,
    serving: Mapping[str, Any] | None = None,
) -> Selection:
    """The newest version of ``model`` among ``model_versions`` that passes ``policy``
    (``serving``: the version serving now, for ``mustBeatServing``)."""
    current = Candidate.of(serving) if serving is not None else None
    candidates = sorted(
        (Candidate.of(mv) for mv in model_versions if (mv.get("spec") or {}).get("model") == model),
        key=lambda candidate: candidate.version,
        reverse=True,
    )
    skipped: list[Skipped] = []
    for candidate in candidates:
        reason = rejection(candidate, policy, current)
        if reason is None:
            return Selection(candidate, tuple(skipped))
        skipped.append(Skipped(candidate.name, candidate.version, reason))
    return Selection(None, tuple(skipped))


def rejection(
    candidate: Candidate, policy: SelectionPolicy, serving: Candidate | None
) -> str | None:
    """Why ``candidate`` fails ``policy`` (the first rule it breaks), or None."""
    if not candidate.ready:
        return "not Ready (not validated)"
    for name, bound in sorted((policy.min_metrics or {}).items()):
        value = candidate.metrics.get(name)
        if value is None:
            return f"metric {name} missing (minMetrics needs >= {bound:g})"
        if value < bound:
            return f"{name} {value:g} is below the minimum {bound:g}"
    for name, bound in sorted((policy.max_metrics or {}).items()):
        value = candidate.metrics.get(name)
        if value is None:
            return f"metric {name} missing (maxMetrics needs <= {bound:g})"
        if value > bound:
            return f"{name} {value:g} is above the maximum {bound:g}"
    if policy.require_approval and not candidate.approved:
        return "not approved (requireApproval)"
    if serving is None or serving.name == candidate.name:
        return None
    for comparison in policy.must_beat_serving or []:
        name = comparison.metric
        theirs = serving.metrics.get(name)
        if theirs is None:
            continue
        ours = candidate.metrics.get(name)
        if ours is None:
            return f"metric {name} missing, so it cannot beat serving {serving.name}"
        better = ours > theirs if comparison.better == "higher" else ours < theirs
        if not better:
            word = "higher" if comparison.better == "higher" else "lower"
            return (
                f"{name} {ours:g} does not beat serving {serving.name} ({theirs:g}; "
                f"{word} is better)"
            )
    return None

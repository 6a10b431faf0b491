"""Status conditions as every Kiln kind writes them.

A condition is keyed by ``type``; ``lastTransitionTime`` changes only when ``status`` flips,
so rewriting the same verdict (or a new message for it) never looks like a transition, and a
reconcile that finds nothing new produces a byte-identical list: no status write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


#: The type of an Event that reports a condition or a transition.
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Verdict:
    """What one check concluded: the condition's type, status, reason and message."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def set_condition(
    current: Sequence[Mapping[str, Any]], verdict: Verdict, generation: int, now: str
) -> list[dict[str, Any]]:
    """``current`` with ``verdict`` applied (added, or replacing its type in place)."""
    previous = find_condition(current, verdict.type)
    transition = now
    if previous is not None and previous.get("status") == verdict.status:
        transition = str(previous.get("lastTransitionTime") or now)
    condition = {
        "type": verdict.type,
        "status": verdict.status,
        "reason": verdict.reason,
        "message": verdict.message,
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
    updated = [dict(c) for c in current]
    for index, existing in enumerate(updated):
        if existing.get("type") == verdict.type:
            updated[index] = condition
            return updated
    updated.append(condition)
    return updated


def set_conditions(
    current: Sequence[Mapping[str, Any]], verdicts: Iterable[Verdict], generation: int, now: str
) -> list[dict[str, Any]]:
    conditions = [dict(c) for c in current]
    for verdict in verdicts:
        conditions = set_condition(conditions, verdict, generation, now)
    return conditions


def find_condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"

"""What a DELETE does to an object, decided without touching storage.

A delete either removes the object at once or, when finalizers remain (its own, or the
`foregroundDeletion`/`orphan` ones a propagation policy adds), marks it with a
`deletionTimestamp` and leaves the rest to whoever owns those finalizers.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeemu.errors import ApiError, bad_request
from tests.kubeemu.fieldsets import now_rfc3339
from tests.kubeemu.options import DeleteOptions
from tests.kubeemu.resources import ResourceType

Obj = dict[str, Any]

CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
_POLICIES = ("", "Orphan", "Background", "Foreground")


def refusal(rt: ResourceType, meta: Obj, options: DeleteOptions) -> ApiError | None:
    """Why the API server refuses this delete (failed preconditions, bad policy), or None."""
    name = meta["name"]
    details = {"name": name, "group": rt.group, "kind": rt.plural}
    if options.precondition_uid and options.precondition_uid != meta["uid"]:
        return ApiError(
            409,
            f"Precondition failed: UID in precondition: {options.precondition_uid}, "
            f"UID in object meta: {meta['uid']}",
            reason="Conflict",
            details=details,
        )
    if options.precondition_rv and options.precondition_rv != meta["resourceVersion"]:
        return ApiError(
            409,
            "Precondition failed: ResourceVersion in precondition: "
            f"{options.precondition_rv}, ResourceVersion in object meta: "
            f"{meta['resourceVersion']}",
            reason="Conflict",
            details=details,
        )
    if options.propagation not in _POLICIES:
        return bad_request(
            f'propagationPolicy: Unsupported value: "{options.propagation}": supported '
            'values: "Foreground", "Background", "Orphan"'
        )
    return None


def finalizers_after_delete(
    current: list[str], propagation: str, is_crd: bool = False
) -> list[str]:
    """The finalizers an object carries once deleted with this propagation policy."""
    finalizers = list(current)
    if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
        finalizers.append("foregroundDeletion")
    if propagation == "Orphan" and "orphan" not in finalizers:
        finalizers.append("orphan")
    if propagation in ("Background", "Foreground"):
        finalizers = [f for f in finalizers if f != "orphan"]
    if is_crd and CRD_CLEANUP not in finalizers:
        finalizers.append(CRD_CLEANUP)
    return finalizers


def marked_for_deletion(obj: Obj, finalizers: list[str], bump_generation: bool) -> Obj:
    """The object as it stays while its finalizers run."""
    marked = copy.deepcopy(obj)
    meta = marked["metadata"]
    meta["finalizers"] = finalizers
    if not meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = now_rfc3339()
        meta["deletionGracePeriodSeconds"] = 0
        if bump_generation:
            meta["generation"] = int(meta.get("generation") or 0) + 1
    return marked


def terminating_namespace(namespace: Obj, finalizers: list[str]) -> Obj:
    marked = copy.deepcopy(namespace)
    marked["metadata"]["deletionTimestamp"] = now_rfc3339()
    marked["metadata"]["deletionGracePeriodSeconds"] = 0
    if finalizers:
        marked["metadata"]["finalizers"] = finalizers
    marked["status"] = {"phase": "Terminating"}
    return marked


def without_finalizer(obj: Obj, finalizer: str) -> Obj:
    stripped = copy.deepcopy(obj)
    remaining = [f for f in stripped["metadata"].get("finalizers") or [] if f != finalizer]
    if remaining:
        stripped["metadata"]["finalizers"] = remaining
    else:
        stripped["metadata"].pop("finalizers", None)
    return stripped

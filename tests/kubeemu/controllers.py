"""The controllers a bare API server relies on: garbage collector, namespace and CRD cleanup.

On a real cluster kube-controller-manager and the apiextensions server run these; tests of
an operator depend on their effects (children vanish with their owner, a deleted namespace
empties itself). They run on the server's event loop, shortly after the write that calls
for them, and act through the same verbs as clients do.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from tests.kubeemu.crds import establish_crd, is_established
from tests.kubeemu.errors import ApiError
from tests.kubeemu.options import DeleteOptions

if TYPE_CHECKING:
    from tests.kubeemu.api import Api

StorageKey = tuple[str, str]
Where = tuple[StorageKey, str, str]

_NAMESPACES = ("", "namespaces")
_CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
_CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


def _where(key: StorageKey, obj: dict[str, Any]) -> Where:
    meta = obj["metadata"]
    return (key, meta.get("namespace") or "", meta["name"])


class Controllers:
    """Reacts to writes; each pass does what the cluster's controllers would do next."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._terminating: set[Where] = set()
        self._gone_owners: list[str] = []
        self._check_owners: set[Where] = set()
        self._establishing: set[Where] = set()
        self._scheduled = False

    def observe(self, key: StorageKey, obj: dict[str, Any], removed: bool) -> None:
        where = _where(key, obj)
        meta = obj["metadata"]
        if removed:
            self._terminating.discard(where)
            self._check_owners.discard(where)
            self._establishing.discard(where)
            self._gone_owners.append(meta["uid"])
        else:
            if key == _CRDS and not is_established(obj):
                self._establishing.add(where)
            if meta.get("deletionTimestamp"):
                self._terminating.add(where)
            if meta.get("ownerReferences"):
                self._check_owners.add(where)
        if self._terminating or self._gone_owners or self._check_owners or self._establishing:
            self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.run_pass()
            return
        self._scheduled = True
        loop.call_soon(self._scheduled_pass)

    def _scheduled_pass(self) -> None:
        self._scheduled = False
        self.run_pass()

    def run_pass(self) -> None:
        store = self._api.store
        establishing, self._establishing = self._establishing, set()
        for key, namespace, name in sorted(establishing):
            crd = store.get(key, namespace, name)
            if crd is not None and not is_established(crd):
                self._establish(crd)
        gone, self._gone_owners = self._gone_owners, []
        for uid in gone:
            for key, dependent in store.dependents_of(uid):
                self._settle_dependent(key, dependent)
        checks, self._check_owners = self._check_owners, set()
        for key, namespace, name in sorted(checks):
            checked = store.get(key, namespace, name)
            if checked is not None:
                self._settle_dependent(key, checked)
        for where in sorted(self._terminating):
            key, namespace, name = where
            obj = store.get(key, namespace, name)
            if obj is None:
                self._terminating.discard(where)
                continue
            self._finish_deletion(key, obj)

    # ---- CRDs ------------------------------------------------------------------------

    def _establish(self, crd: dict[str, Any]) -> None:
        rt = self._api.type_for_key(_CRDS)
        if rt is None:
            return
        established = copy.deepcopy(crd)
        establish_crd(established, crd)
        self._api.rewrite(rt, crd, established)

    # ---- garbage collection ------------------------------------------------------------

    def _settle_dependent(self, key: StorageKey, dependent: dict[str, Any]) -> None:
        meta = dependent["metadata"]
        if meta.get("deletionTimestamp"):
            return
        refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict)]
        if not refs:
            return
        alive = [r for r in refs if self._owner_exists(r)]
        if alive and len(alive) == len(refs):
            return
        rt = self._api.type_for_key(key)
        if rt is None:
            return
        if not alive:
            self._delete(key, dependent, "Background")
            return
        new = {**dependent, "metadata": {**meta, "ownerReferences": alive}}
        self._api.rewrite(rt, dependent, new)

    def _owner_exists(self, ref: dict[str, Any]) -> bool:
        uid = ref.get("uid")
        return isinstance(uid, str) and self._api.store.by_uid(uid) is not None

    def _delete(self, key: StorageKey, obj: dict[str, Any], propagation: str) -> None:
        rt = self._api.type_for_key(key)
        if rt is None:
            return
        meta = obj["metadata"]
        try:
            self._api.delete(
                rt,
                meta.get("namespace") or "",
                meta["name"],
                DeleteOptions(propagation=propagation, precondition_uid=meta["uid"]),
            )
        except ApiError as error:
            if error.code not in (404, 409):
                raise

    # ---- objects being deleted ---------------------------------------------------------

    def _finish_deletion(self, key: StorageKey, obj: dict[str, Any]) -> None:
        finalizers = obj["metadata"].get("finalizers") or []
        if key == _NAMESPACES:
            self._empty_namespace(obj)
            return
        if key == _CRDS and _CRD_CLEANUP in finalizers:
            self._remove_custom_resources(obj)
            return
        if "orphan" in finalizers:
            self._orphan_dependents(key, obj)
            return
        if "foregroundDeletion" in finalizers:
            self._delete_dependents_first(key, obj)

    def _empty_namespace(self, namespace: dict[str, Any]) -> None:
        name = namespace["metadata"]["name"]
        remaining = False
        for key, obj in self._api.store.namespaced_objects(name):
            remaining = True
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete(key, obj, "Background")
        if not remaining and not self._api.store.namespaced_objects(name):
            self._api.finish_namespace(namespace)

    def _remove_custom_resources(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        items = self._api.store.items(key)
        for obj in items:
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete(key, obj, "Background")
        if not self._api.store.items(key):
            rt = self._api.type_for_key(_CRDS)
            if rt is not None:
                self._api.remove_finalizer(rt, crd, _CRD_CLEANUP)

    def _orphan_dependents(self, key: StorageKey, owner: dict[str, Any]) -> None:
        uid = owner["metadata"]["uid"]
        for dep_key, dependent in self._api.store.dependents_of(uid):
            rt = self._api.type_for_key(dep_key)
            if rt is None:
                continue
            meta = dependent["metadata"]
            kept = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
            new_meta = {**meta, "ownerReferences": kept}
            if not kept:
                new_meta.pop("ownerReferences")
            self._api.rewrite(rt, dependent, {**dependent, "metadata": new_meta})
        rt = self._api.type_for_key(key)
        if rt is not None:
            self._api.remove_finalizer(rt, owner, "orphan")

    def _delete_dependents_first(self, key: StorageKey, owner: dict[str, Any]) -> None:
        uid = owner["metadata"]["uid"]
        blocking = False
        for dep_key, dependent in self._api.store.dependents_of(uid):
            ref = next(
                r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") == uid
            )
            blocks = bool(ref.get("blockOwnerDeletion"))
            blocking = blocking or blocks
            if not dependent["metadata"].get("deletionTimestamp"):
                self._delete(dep_key, dependent, "Foreground" if blocks else "Background")
        if not blocking:
            rt = self._api.type_for_key(key)
            if rt is not None:
                self._api.remove_finalizer(rt, owner, "foregroundDeletion")

"""The verbs of the Kubernetes API over the store: create, get, list, update, patch, delete.

This is the API server's registry layer: it applies metadata semantics (resourceVersion,
generation, uid, finalizers, managedFields), status subresource rules and custom resource
validation, and never touches HTTP. The REST layer translates requests into these calls;
the in-process controllers (garbage collector, namespace and CRD cleanup) call them too.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeemu import apply as server_side_apply
from tests.kubeemu import deletion, events, fieldsets, lastapplied, metadata, patch, strategic
from tests.kubeemu.builtin_validation import builtin_causes
from tests.kubeemu.controllers import Controllers
from tests.kubeemu.crds import crd_resource_types, prepare_crd, validate_crd
from tests.kubeemu.customresources import check_custom_resource
from tests.kubeemu.defaults import apply_defaults, initialise
from tests.kubeemu.encoding import as_encoded
from tests.kubeemu.errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
    qualified_resource,
)
from tests.kubeemu.options import DeleteOptions, WriteOptions
from tests.kubeemu.resources import Registry, ResourceType, builtin_types
from tests.kubeemu.schema import default as schema_default
from tests.kubeemu.shapes import BuiltinShape, SchemaShape, Shape
from tests.kubeemu.store import Obj, Store

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"


def _strip_managed(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def _managed_sets(obj: Obj) -> list[tuple[tuple[str, str, str], frozenset[Any]]]:
    entries = fieldsets.parse_entries(obj.get("metadata", {}).get("managedFields"))
    return sorted(((fieldsets.entry_key(e), paths) for e, paths in entries), key=lambda x: x[0])


def _generation_part(obj: Obj, status_is_separate: bool) -> Obj:
    """What a change must touch to bump `generation`: all but metadata (and status, when it
    has its own subresource)."""
    skipped = (
        ("metadata", "apiVersion", "kind", "status")
        if status_is_separate
        else (
            "metadata",
            "apiVersion",
            "kind",
        )
    )
    return {k: v for k, v in obj.items() if k not in skipped}


class Api:
    """One API server's state and verbs."""

    def __init__(self) -> None:
        self.store = Store()
        self.registry = Registry()
        self.controllers = Controllers(self)
        for resource_type in builtin_types():
            self.registry.add(resource_type)
            self.store.ensure_bucket(resource_type.storage_key)
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(
                self._namespaces(),
                "",
                {"metadata": {"name": name}},
                WriteOptions(manager="kube-apiserver"),
            )

    def _namespaces(self) -> ResourceType:
        found = self.registry.find("", "v1", "namespaces")
        assert found is not None
        return found

    def shape_of(self, resource_type: ResourceType) -> Shape:
        if resource_type.is_custom:
            return SchemaShape(resource_type.schema)
        return BuiltinShape(kind=resource_type.storage_key)

    # ---- reads -------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return self.served(rt, obj)

    def served(self, rt: ResourceType, obj: Obj) -> Obj:
        """The stored object as this group and version serve it."""
        obj = self._defaulted_on_read(rt, obj)
        if obj.get("apiVersion") == rt.api_version:
            return obj
        if rt.api_version == events.EVENTS_API:
            return events.to_events_api(obj)
        return {**obj, "apiVersion": rt.api_version}

    def _defaulted_on_read(self, rt: ResourceType, obj: Obj) -> Obj:
        """A custom resource read from storage, with the defaults of the CRD's current schema.

        As a real API server does: a default added to a CRD after an object was stored
        appears in every read and watch event of it, though the stored object (and its
        generation) never changed. The stored object itself is left alone.
        """
        if not rt.is_custom or not rt.schema:
            return obj
        defaulted = copy.deepcopy(obj)
        schema_default(defaulted, rt.schema)
        return obj if defaulted == obj else defaulted

    def _stored_form(self, rt: ResourceType, obj: Obj) -> Obj:
        """A checked body in the form its storage keeps (the inverse of `served`)."""
        if rt.api_version == events.EVENTS_API:
            return events.to_core(obj)
        return obj

    def items(self, rt: ResourceType, namespace: str | None, at: int | None = None) -> list[Obj]:
        """Current objects, or those of an earlier resourceVersion `at` (410 when too old)."""
        if at is None:
            stored = self.store.items(rt.storage_key, namespace)
        else:
            stored = self.store.items_at(rt.storage_key, at, namespace)
        return [self.served(rt, o) for o in stored]

    # ---- create ------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any, options: WriteOptions) -> Obj:
        obj = self._stored_form(rt, self._checked_body(rt, body))
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = metadata.generated_name(str(meta["generateName"]))
            else:
                raise invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        Cause(
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                            "metadata.name",
                        )
                    ],
                )
        name = str(meta["name"])
        self._check_namespace(rt, namespace, meta, name)
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
            "managedFields",
        ):
            meta.pop(key, None)
        meta["uid"] = metadata.new_uid()
        meta["creationTimestamp"] = fieldsets.now_rfc3339()
        if rt.has_generation:
            meta["generation"] = 1
        if rt.status_subresource:
            obj.pop("status", None)
        if not rt.is_custom:
            initialise(rt.storage_key, obj)
            apply_defaults(rt.storage_key, obj, None)
        if rt.storage_key == CRD_KEY:
            prepare_crd(obj, old=None)
        obj = self._validated(rt, obj, None, "", options)
        if self.store.get(rt.storage_key, meta.get("namespace", ""), name) is not None:
            raise already_exists(rt.plural, rt.group, name)
        obj["metadata"]["managedFields"] = fieldsets.record_update(
            None, options.manager, rt.api_version, "", None, obj, self.shape_of(rt), "all"
        )
        obj = _ordered(obj)
        if options.dry_run:
            return self.served(rt, obj)
        stored = self.store.write(rt.storage_key, obj, None)
        self._after_write(rt, stored, None)
        return self.served(rt, stored)

    def _checked_body(self, rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): "
                "couldn't get version/kind; json parse error: expected an object"
            )
        obj = copy.deepcopy(body)
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if api_version not in (None, "") and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind not in (None, "") and kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request(
                f"json: cannot unmarshal {type(meta).__name__} into Go struct field "
                f"{rt.kind}.metadata of type v1.ObjectMeta"
            )
        problem = metadata.decode_problem(meta)
        if problem is not None:
            raise bad_request(problem)
        obj["metadata"] = metadata.without_unknown_fields(meta)
        return obj

    def _check_namespace(self, rt: ResourceType, namespace: str, meta: Obj, name: str) -> None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        meta["namespace"] = namespace
        ns = self.store.get(NAMESPACE_KEY, "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f'{rt.plural} "{name}" is forbidden: unable to '
                f"create new content in namespace {namespace} because it is being terminated",
                reason="Forbidden",
                details={"name": name, "group": rt.group, "kind": rt.plural},
                causes=[
                    Cause(
                        "NamespaceTerminating",
                        f"namespace {namespace} is being terminated",
                        "metadata.namespace",
                    )
                ],
            )

    # ---- update and patch --------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str,
        options: WriteOptions,
    ) -> Obj:
        old = self._current(rt, namespace, name)
        obj = self._checked_body(rt, body)
        meta = obj["metadata"]
        if meta.get("name") not in (None, "", name):
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced and meta.get("namespace") not in (None, "", old["metadata"]["namespace"]):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        self._check_uid_precondition(rt, old, meta)
        rv = meta.get("resourceVersion")
        if not rv:
            if not rt.unconditional_update:
                raise invalid(
                    rt.kind,
                    rt.group,
                    name,
                    [
                        Cause(
                            "FieldValueInvalid",
                            "Invalid value: 0x0: must be specified for an update",
                            "metadata.resourceVersion",
                        )
                    ],
                )
        elif rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)
        return self._write_update(rt, old, self._stored_form(rt, obj), subresource, options)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        subresource: str,
        options: WriteOptions,
    ) -> tuple[Obj, bool]:
        """Returns the object and whether it was created (server-side apply may create)."""
        if content_type in (APPLY_PATCH, APPLY_PATCH_CBOR):
            return self._apply(rt, namespace, name, body, subresource, options)
        if content_type not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH) or (
            content_type == STRATEGIC_PATCH and rt.is_custom
        ):
            raise _unsupported_patch(rt)
        old = self._current(rt, namespace, name)
        view = self.served(rt, old)
        if content_type == MERGE_PATCH:
            if not isinstance(body, dict):
                raise bad_request("json: cannot unmarshal into Go value of type map")
            patched = patch.merge_patch(view, body)
        elif content_type == JSON_PATCH:
            patched = patch.json_patch(view, body)
        elif content_type == STRATEGIC_PATCH:
            if rt.is_custom:
                raise _unsupported_patch(rt)
            if not isinstance(body, dict):
                raise bad_request("json: cannot unmarshal into Go value of type map")
            patched = strategic.strategic_merge(view, body, self.shape_of(rt))
        else:
            raise _unsupported_patch(rt)
        if not isinstance(patched, dict):
            raise bad_request("the patch did not produce an object")
        patched_meta = patched.get("metadata")
        if isinstance(patched_meta, dict):
            rv = patched_meta.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            self._check_uid_precondition(rt, old, patched_meta)
            if patched_meta.get("name", name) != name:
                raise bad_request(
                    f"the name of the object ({patched_meta.get('name')}) does not match the "
                    f"name on the URL ({name})"
                )
        obj = self._stored_form(rt, self._checked_body(rt, patched))
        return self._write_update(rt, old, obj, subresource, options), False

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str,
        options: WriteOptions,
    ) -> tuple[Obj, bool]:
        if not options.manager:
            raise bad_request(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
            )
        config = self._checked_body(rt, body)
        if config["metadata"].get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({config['metadata'].get('name')}) does not match "
                f"the name on the URL ({name})"
            )
        config["metadata"]["name"] = name
        old = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        scope = _scope(rt, subresource)
        if old is None:
            if subresource:
                raise not_found(rt.plural, rt.group, name)
            seed_meta = {"name": name, "namespace": namespace} if rt.namespaced else {"name": name}
            seed = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": seed_meta}
            merged, managed = server_side_apply.apply(
                seed, config, options.manager, options.force, self.shape_of(rt), scope, rt
            )
            lastapplied.rewrite(merged, body, options.manager)
            merged["metadata"]["managedFields"] = []
            created = self.create(rt, namespace, merged, WriteOptions(dry_run=True))
            created = self._stored_form(rt, created)
            created["metadata"]["managedFields"] = managed
            created = _ordered(created)
            if options.dry_run:
                return created, True
            stored = self.store.write(rt.storage_key, created, None)
            self._after_write(rt, stored, None)
            return self.served(rt, stored), True
        rv = config["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)
        merged, managed = server_side_apply.apply(
            self.served(rt, old),
            config,
            options.manager,
            options.force,
            self.shape_of(rt),
            scope,
            rt,
        )
        lastapplied.rewrite(merged, body, options.manager)
        merged["metadata"]["managedFields"] = managed
        obj = self._stored_form(rt, self._checked_body(rt, merged))
        return self._write_update(rt, old, obj, subresource, options, applied=True), False

    def _check_uid_precondition(self, rt: ResourceType, old: Obj, meta: Obj) -> None:
        """A uid in the body is a precondition, as the API server's update treats it."""
        uid = meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            name = old["metadata"]["name"]
            raise ApiError(
                409,
                f"Operation cannot be fulfilled on {qualified_resource(rt.plural, rt.group)} "
                f'"{name}": Precondition failed: UID in precondition: {uid}, UID in object '
                f"meta: {old['metadata']['uid']}",
                reason="Conflict",
                details={"name": name, "group": rt.group, "kind": rt.plural},
            )

    def _current(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        old = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        return old

    def _write_update(
        self,
        rt: ResourceType,
        old: Obj,
        obj: Obj,
        subresource: str,
        options: WriteOptions,
        applied: bool = False,
    ) -> Obj:
        old_meta = old["metadata"]
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            new["metadata"]["managedFields"] = obj["metadata"].get("managedFields")
        else:
            new = obj
            if rt.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        meta = new["metadata"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        for key in ("deletionGracePeriodSeconds", "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if not applied:
            meta["managedFields"] = copy.deepcopy(old_meta.get("managedFields"))
        if old_meta.get("deletionTimestamp"):
            added = [
                f
                for f in meta.get("finalizers") or []
                if f not in (old_meta.get("finalizers") or [])
            ]
            if added:
                raise invalid(
                    rt.kind,
                    rt.group,
                    old_meta["name"],
                    [
                        Cause(
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being "
                            f"deleted, found new finalizers []string{{{_go_strings(added)}}}",
                            "metadata.finalizers",
                        )
                    ],
                )
        if rt.storage_key == CRD_KEY and subresource != "status":
            prepare_crd(new, old=old)
        if rt.storage_key == NAMESPACE_KEY:
            new.setdefault("spec", old.get("spec", {}))
        if not rt.is_custom and subresource != "status":
            apply_defaults(rt.storage_key, new, old)
        new = self._validated(rt, new, old, subresource, options)
        separate = rt.status_subresource
        if rt.has_generation and _generation_part(new, separate) != _generation_part(old, separate):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if not applied:
            meta["managedFields"] = fieldsets.record_update(
                old_meta.get("managedFields"),
                options.manager,
                rt.api_version,
                subresource,
                old,
                new,
                self.shape_of(rt),
                _scope(rt, subresource),
            )
        new = _ordered(new)
        if not meta["managedFields"]:
            meta.pop("managedFields")
        if _strip_managed(new) == _strip_managed(old) and _managed_sets(new) == _managed_sets(old):
            return self.served(rt, old)
        if options.dry_run:
            return self.served(rt, new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            final = self.store.remove(rt.storage_key, new)
            self._after_removal(rt, final)
            return self.served(rt, final)
        stored = self.store.write(rt.storage_key, new, old)
        self._after_write(rt, stored, old)
        return self.served(rt, stored)

    def _validated(
        self,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        subresource: str,
        options: WriteOptions,
    ) -> Obj:
        meta = obj["metadata"]
        name = str(meta.get("name", ""))
        causes = []
        if old is None:
            causes.extend(metadata.name_causes(name, rt.storage_key))
        causes.extend(metadata.label_causes(meta.get("labels")))
        causes.extend(metadata.owner_reference_causes(meta))
        causes.extend(metadata.annotation_causes(meta.get("annotations")))
        if meta.get("annotations") is not None and not isinstance(meta["annotations"], dict):
            causes.append(
                Cause(
                    "FieldValueTypeInvalid", "Invalid value: must be a map", "metadata.annotations"
                )
            )
        if rt.storage_key == CRD_KEY and subresource != "status":
            causes.extend(validate_crd(obj, old, self.registry))
        if not rt.is_custom and subresource != "status":
            causes.extend(builtin_causes(rt.storage_key, obj, old))
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        if rt.is_custom and rt.schema is not None:
            obj = check_custom_resource(
                rt, obj, old, subresource, options.field_validation, options.warnings
            )
        if not rt.is_custom:
            as_encoded(rt.storage_key, obj)
        return obj

    # ---- delete ------------------------------------------------------------------------

    def delete(self, rt: ResourceType, namespace: str, name: str, options: DeleteOptions) -> Obj:
        obj = self._current(rt, namespace, name)
        meta = obj["metadata"]
        error = deletion.refusal(rt, meta, options)
        if error is not None:
            raise error
        if options.dry_run:
            return self.served(rt, obj)
        finalizers = deletion.finalizers_after_delete(
            list(meta.get("finalizers") or []), options.propagation, rt.storage_key == CRD_KEY
        )
        if rt.storage_key == NAMESPACE_KEY:
            if meta.get("deletionTimestamp"):
                return obj
            return self._store_marked(rt, obj, deletion.terminating_namespace(obj, finalizers))
        if not finalizers:
            final = self.store.remove(rt.storage_key, obj)
            self._after_removal(rt, final)
            return self.served(rt, final)
        if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
            return self.served(rt, obj)
        marked = deletion.marked_for_deletion(obj, finalizers, rt.has_generation)
        if rt.storage_key == CRD_KEY:
            prepare_crd(marked, old=obj)
        return self._store_marked(rt, obj, marked)

    def _store_marked(self, rt: ResourceType, obj: Obj, marked: Obj) -> Obj:
        stored = self.store.write(rt.storage_key, _ordered(marked), obj)
        self._after_write(rt, stored, obj)
        return self.served(rt, stored)

    def finish_namespace(self, namespace: Obj) -> None:
        """The namespace controller's last step: the namespace is empty, remove it."""
        rt = self._namespaces()
        new = copy.deepcopy(namespace)
        new["spec"] = {"finalizers": []}
        if new["metadata"].get("finalizers"):
            self.store.write(rt.storage_key, new, namespace)
            return
        final = self.store.remove(rt.storage_key, new)
        self._after_removal(rt, final)

    def remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        """A controller finished its part of a deletion."""
        meta = obj["metadata"]
        current = self.store.get(rt.storage_key, meta.get("namespace", ""), meta["name"])
        if current is None:
            return
        new = deletion.without_finalizer(current, finalizer)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            final = self.store.remove(rt.storage_key, new)
            self._after_removal(rt, final)
        else:
            stored = self.store.write(rt.storage_key, new, current)
            self._after_write(rt, stored, current)

    def rewrite(self, rt: ResourceType, old: Obj, new: Obj) -> None:
        """A controller's direct write (e.g. dropping a dangling ownerReference)."""
        stored = self.store.write(rt.storage_key, new, old)
        self._after_write(rt, stored, old)

    # ---- bookkeeping after writes ------------------------------------------------------

    def type_for_key(self, key: tuple[str, str]) -> ResourceType | None:
        candidates = [t for t in self.registry.types if t.storage_key == key]
        return candidates[0] if candidates else None

    def _after_write(self, rt: ResourceType, stored: Obj, old: Obj | None) -> None:
        if rt.storage_key == CRD_KEY:
            self._register_crd(stored)
        self.controllers.observe(rt.storage_key, stored, removed=False)

    def _after_removal(self, rt: ResourceType, final: Obj) -> None:
        if rt.storage_key == CRD_KEY:
            crd_name = final["metadata"]["name"]
            keys = {t.storage_key for t in self.registry.types if t.crd_name == crd_name}
            self.registry.remove_crd(crd_name)
            for key in keys:
                self.store.drop_bucket(key)
        self.controllers.observe(rt.storage_key, final, removed=True)

    def _register_crd(self, crd: Obj) -> None:
        crd_name = crd["metadata"]["name"]
        self.registry.remove_crd(crd_name)
        for resource_type in crd_resource_types(crd):
            self.registry.add(resource_type)
            self.store.ensure_bucket(resource_type.storage_key)


def _scope(rt: ResourceType, subresource: str) -> str:
    if subresource == "status":
        return "status"
    return "main" if rt.status_subresource else "all"


def _unsupported_patch(rt: ResourceType) -> ApiError:
    accepted = (
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    if not rt.is_custom:
        accepted = (
            "application/json-patch+json, application/merge-patch+json, "
            "application/strategic-merge-patch+json, application/apply-patch+yaml"
        )
    return ApiError(
        415,
        "the body of the request was in an unknown format - accepted media types include: "
        + accepted,
    )


def _go_strings(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


_TOP_ORDER = ("apiVersion", "kind", "metadata", "spec")


def _ordered(obj: Obj) -> Obj:
    """Key order as the API server writes objects (clients diff YAML, humans read it)."""
    out = {k: obj[k] for k in _TOP_ORDER if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    meta = obj.get("metadata", {})
    ordered_meta = {k: meta[k] for k in metadata.OBJECT_META_FIELD_ORDER if k in meta}
    ordered_meta.update({k: v for k, v in meta.items() if k not in ordered_meta})
    out["metadata"] = ordered_meta
    return out

"""CustomResourceDefinitions: their validation, defaulting, status, and the kinds they serve."""

from __future__ import annotations

from typing import Any

from tests.kubeemu.crd_schema import schema_causes
from tests.kubeemu.errors import Cause
from tests.kubeemu.fieldsets import now_rfc3339
from tests.kubeemu.resources import PrinterColumn, Registry, ResourceType

_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def prepare_crd(crd: dict[str, Any], old: dict[str, Any] | None) -> None:
    """The API server's defaults for a CRD, and its status as the write leaves it.

    A new CRD is stored as a real server stores it: no names accepted, ``conditions: null``
    and no cleanup finalizer yet. The CRD controllers establish it a moment later
    (:func:`establish_crd`, run by the emulator's controllers); until then its kind is not
    Established, and clients must wait for the condition as they do on a real cluster.
    """
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or []:
        if not isinstance(version, dict):
            continue
        if not version.get("additionalPrinterColumns"):
            version.pop("additionalPrinterColumns", None)
    if old is not None and is_established(old):
        establish_crd(crd, old)
        return
    crd["status"] = {
        "acceptedNames": {"kind": "", "plural": ""},
        "conditions": None,
        "storedVersions": _stored_versions(crd, old),
    }


def is_established(crd: dict[str, Any]) -> bool:
    """Whether the CRD controllers have accepted the CRD's names (set its conditions)."""
    return bool((crd.get("status") or {}).get("conditions"))


def establish_crd(crd: dict[str, Any], old: dict[str, Any] | None) -> None:
    """What the CRD controllers write: the cleanup finalizer, accepted names, conditions."""
    metadata = crd.setdefault("metadata", {})
    finalizers = metadata.setdefault("finalizers", [])
    if "customresourcecleanup.apiextensions.k8s.io" not in finalizers and not metadata.get(
        "deletionTimestamp"
    ):
        finalizers.append("customresourcecleanup.apiextensions.k8s.io")
    crd["status"] = _crd_status(crd, old)


def _stored_versions(crd: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    for version in (crd.get("spec") or {}).get("versions") or []:
        is_storage = isinstance(version, dict) and version.get("storage")
        if is_storage and version.get("name") and version["name"] not in stored:
            stored.append(version["name"])
    return stored


def _crd_status(crd: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    stored = _stored_versions(crd, old)
    previous = {c.get("type"): c for c in ((old or {}).get("status") or {}).get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        earlier = previous.get(kind)
        since = earlier.get("lastTransitionTime") if earlier else None
        return {
            "lastTransitionTime": since or now_rfc3339(),
            "message": message,
            "reason": reason,
            "status": "True",
            "type": kind,
        }

    conditions = [
        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
        condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ]
    if (crd.get("metadata") or {}).get("deletionTimestamp"):
        conditions.append(
            condition(
                "Terminating",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            )
        )
    return {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}


#: CRDs in the Kubernetes project's own groups need this annotation (KEP 1111).
API_APPROVAL_ANNOTATION = "api-approved.kubernetes.io"


def _is_protected_group(group: str) -> bool:
    return any(
        group == domain or group.endswith("." + domain) for domain in ("k8s.io", "kubernetes.io")
    )


def validate_crd(
    crd: dict[str, Any], old: dict[str, Any] | None, registry: Registry
) -> list[Cause]:
    """Structural checks the API server makes before it serves a CRD."""
    causes: list[Cause] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", "Required value", "spec")]
    group = spec.get("group")
    names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
    plural = names.get("plural")
    if not group:
        causes.append(Cause("FieldValueRequired", "Required value", "spec.group"))
    elif "." not in str(group):
        causes.append(
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{group}": should be a domain with at least one dot',
                "spec.group",
            )
        )
    if group and _is_protected_group(str(group)):
        annotations = crd.get("metadata", {}).get("annotations") or {}
        if not annotations.get(API_APPROVAL_ANNOTATION):
            causes.append(
                Cause(
                    "FieldValueRequired",
                    "Required value: protected groups must have approval annotation "
                    f'"{API_APPROVAL_ANNOTATION}", see '
                    "https://github.com/kubernetes/enhancements/pull/1111",
                    f"metadata.annotations[{API_APPROVAL_ANNOTATION}]",
                )
            )
    if not plural:
        causes.append(Cause("FieldValueRequired", "Required value", "spec.names.plural"))
    if not names.get("kind"):
        causes.append(Cause("FieldValueRequired", "Required value", "spec.names.kind"))
    name = crd.get("metadata", {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        causes.append(
            Cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "metadata.name",
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", '
                '"Namespaced"',
                "spec.scope",
            )
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(
            Cause(
                "FieldValueRequired",
                "Required value: must have at least one version",
                "spec.versions",
            )
        )
        return causes
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {_versions_value(versions)}: must have exactly one version "
                "marked as storage version",
                "spec.versions",
            )
        )
    schemas = [_version_schema(v) for v in versions]
    # One schema shared by every version is reported where the API server keeps it then.
    shared = len({repr(schema) for schema in schemas}) == 1
    for index, version in enumerate(versions):
        if not isinstance(version, dict):
            continue
        if shared and index > 0:
            continue
        schema = schemas[index]
        path = (
            "spec.validation.openAPIV3Schema"
            if shared
            else f"spec.versions[{index}].schema.openAPIV3Schema"
        )
        if schema is None:
            causes.append(Cause("FieldValueRequired", "Required value: schemas are required", path))
            continue
        causes.extend(schema_causes(schema, path))
    return causes


def _version_schema(version: Any) -> Any:
    if not isinstance(version, dict) or not isinstance(version.get("schema"), dict):
        return None
    return version["schema"].get("openAPIV3Schema")


def _versions_value(versions: list[Any]) -> str:
    """The bad value as Go prints it, abbreviated: the real message dumps every version."""
    return "[]apiextensions.CustomResourceDefinitionVersion{...}"


def crd_resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of an established CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    found = []
    for version in spec.get("versions") or []:
        if not version.get("served"):
            continue
        columns = version.get("additionalPrinterColumns") or [_AGE_COLUMN]
        subresources = version.get("subresources") or {}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        found.append(
            ResourceType(
                group=group,
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                extra_subresources=("scale",) if "scale" in subresources else (),
                unconditional_update=False,
                schema=schema,
                printer_columns=tuple(
                    PrinterColumn(
                        name=c["name"],
                        type=c.get("type", "string"),
                        json_path=c.get("jsonPath", ""),
                        description=c.get("description", ""),
                        format=c.get("format", ""),
                        priority=int(c.get("priority", 0)),
                    )
                    for c in columns
                ),
                crd_name=crd["metadata"]["name"],
                list_kind=names.get("listKind", names["kind"] + "List"),
            )
        )
    return found

"""The write path of a custom resource: prune, default, validate, then run CEL rules.

Mirrors the order of apiextensions-apiserver: unknown fields are pruned (or refused under
`fieldValidation=Strict`), schema defaults are applied, the object is validated against the
structural schema, list-type invariants are checked, and CEL rules run only when no
blocking schema error was found (otherwise one `<nil>` cause says they were skipped).
"""

from __future__ import annotations

from typing import Any

from tests.kubeemu import cel_rules, schema
from tests.kubeemu.errors import ApiError, Cause, invalid
from tests.kubeemu.resources import ResourceType

_SKIPPED_RULES = Cause(
    "FieldValueInvalid",
    'Invalid value: "null": some validation rules were not checked because the object was '
    "invalid; correct the existing errors to complete validation",
    "<nil>",
)


def check_custom_resource(
    rt: ResourceType,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    subresource: str,
    field_validation: str = "",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The object as it will be stored, or ApiError 400/422."""
    root = rt.schema or {}
    dropped = schema.prune(obj, root, "", root=True)
    if dropped and field_validation in ("", "Warn") and warnings is not None:
        # Without Strict the server prunes and warns; clients such as kubectl print these.
        warnings.extend(f'unknown field "{path}"' for path in dropped)
    if dropped and field_validation == "Strict":
        unknown = ", ".join(f'unknown field "{path}"' for path in dropped)
        raise ApiError(
            400,
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict '
            f"decoding error: {unknown}",
        )
    schema.default(obj, root)
    if subresource == "status":
        status_schema = (root.get("properties") or {}).get("status") or {}
        causes = schema.validate(obj.get("status"), status_schema, "") if "status" in obj else []
    else:
        causes = schema.validate(obj, root, "")
    causes.extend(schema.list_type_causes(obj, root, ""))
    if any(cause.reason in schema.BLOCKING_REASONS for cause in causes):
        causes.append(_SKIPPED_RULES)
    else:
        causes.extend(
            cel_rules.validate(obj, old if old is not None else cel_rules.ABSENT, root, "")
        )
    if causes:
        name = str(obj.get("metadata", {}).get("name", ""))
        raise invalid(rt.kind, rt.group, name, causes)
    return obj

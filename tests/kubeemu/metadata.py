"""ObjectMeta rules the API server enforces for every kind: names, labels, generated names."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from tests.kubeemu.errors import Cause

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
QUALIFIED_NAME_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)

# Kinds whose names must be DNS labels rather than subdomains.
LABEL_NAMED = frozenset({("", "namespaces")})
DNS1035_NAMED = frozenset({("", "services")})

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    """`generateName` plus five random characters, as the API server's name generator does."""
    if len(prefix) > 58:
        prefix = prefix[:58]
    return prefix + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))


def _quote(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def name_causes(name: str, storage_key: tuple[str, str]) -> list[Cause]:
    if storage_key in LABEL_NAMED:
        pattern, message, limit = _LABEL, LABEL_MESSAGE, 63
    elif storage_key in DNS1035_NAMED:
        pattern, message, limit = _DNS1035, DNS1035_MESSAGE, 63
    else:
        pattern, message, limit = _SUBDOMAIN, SUBDOMAIN_MESSAGE, 253
    causes = []
    if len(name) > limit:
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {_quote(name)}: must be no more than {limit} characters",
                "metadata.name",
            )
        )
    if not pattern.match(name):
        causes.append(
            Cause("FieldValueInvalid", f"Invalid value: {_quote(name)}: {message}", "metadata.name")
        )
    return causes


ANNOTATIONS_LIMIT = 256 * 1024


def annotation_causes(annotations: Any) -> list[Cause]:
    """Annotations may hold at most 256 KiB of keys and values together."""
    if not isinstance(annotations, dict):
        return []
    size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
    if size <= ANNOTATIONS_LIMIT:
        return []
    return [
        Cause(
            "FieldValueTooLong",
            f"Too long: must have at most {ANNOTATIONS_LIMIT} bytes",
            "metadata.annotations",
        )
    ]


def label_causes(labels: Any) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [Cause("FieldValueTypeInvalid", "Invalid value: must be a map", "metadata.labels")]
    causes = []
    for key, value in labels.items():
        name = str(key).rpartition("/")[2]
        if not _QUALIFIED_NAME.match(name) or len(name) > 63:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_quote(key)}: {QUALIFIED_NAME_MESSAGE}",
                    "metadata.labels",
                )
            )
        if not isinstance(value, str):
            causes.append(
                Cause(
                    "FieldValueTypeInvalid",
                    f"Invalid value: {_quote(value)}: must be a string",
                    "metadata.labels",
                )
            )
        elif len(value) > 63:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_quote(value)}: must be no more than 63 characters",
                    "metadata.labels",
                )
            )
        elif not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_quote(value)}: {LABEL_VALUE_MESSAGE}",
                    "metadata.labels",
                )
            )
    return causes


_META_TYPES: dict[str, tuple[type, str]] = {
    "name": (str, "string"),
    "generateName": (str, "string"),
    "namespace": (str, "string"),
    "uid": (str, "types.UID"),
    "resourceVersion": (str, "string"),
    "creationTimestamp": (str, "v1.Time"),
    "deletionTimestamp": (str, "v1.Time"),
    "labels": (dict, "map[string]string"),
    "annotations": (dict, "map[string]string"),
    "finalizers": (list, "[]string"),
    "ownerReferences": (list, "[]v1.OwnerReference"),
    "managedFields": (list, "[]v1.ManagedFieldsEntry"),
}
_GO_KIND = {bool: "bool", int: "number", float: "number", str: "string", list: "array"}


def _go_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return _GO_KIND.get(type(value), "value")


def _decode_error(field: str, value: Any, go_type: str) -> str:
    return (
        f"json: cannot unmarshal {_go_kind(value)} into Go struct field ObjectMeta.metadata."
        f"{field} of type {go_type}"
    )


#: ObjectMeta's fields, in the order the API server writes them.
OBJECT_META_FIELD_ORDER = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
OBJECT_META_FIELDS = frozenset(OBJECT_META_FIELD_ORDER)


def without_unknown_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """ObjectMeta as the server decodes it: fields it does not define are dropped."""
    return {k: v for k, v in meta.items() if k in OBJECT_META_FIELDS}


def decode_problem(meta: dict[str, Any]) -> str | None:
    """Why ObjectMeta would not decode (the API server answers 400), or None."""
    for field, (python_type, go_type) in _META_TYPES.items():
        value: Any = meta.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, python_type):
            return _decode_error(field, value, go_type)
        if field in ("labels", "annotations") and not all(
            isinstance(v, str) for v in value.values()
        ):
            bad = next(v for v in value.values() if not isinstance(v, str))
            return _decode_error(field, bad, "string")
        if field == "finalizers" and not all(isinstance(v, str) for v in value):
            bad = next(v for v in value if not isinstance(v, str))
            return _decode_error(field, bad, "string")
        if field in ("ownerReferences", "managedFields") and not all(
            isinstance(v, dict) for v in value
        ):
            bad = next(v for v in value if not isinstance(v, dict))
            return _decode_error(field, bad, go_type[2:])
    generation = meta.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        return _decode_error("generation", generation, "int64")
    return None


def owner_reference_causes(meta: dict[str, Any]) -> list[Cause]:
    causes = []
    controllers = [
        f"{ref.get('kind')}/{ref.get('name')}"
        for ref in meta.get("ownerReferences") or []
        if ref.get("controller") is True
    ]
    if len(controllers) > 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "Invalid value: []v1.OwnerReference{...}: Only one reference can have Controller "
                f'set to true. Found "true" in references for {" and ".join(controllers)}',
                "metadata.ownerReferences",
            )
        )
    for ref in meta.get("ownerReferences") or []:
        for key, message in (
            ("apiVersion", "version must not be empty"),
            ("kind", "kind must not be empty"),
            ("name", "name must not be empty"),
            ("uid", "uid must not be empty"),
        ):
            value = ref.get(key)
            if not isinstance(value, str) or not value:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "": {message}',
                        f"metadata.ownerReferences.{key}",
                    )
                )
    return causes

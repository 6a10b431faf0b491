"""Generate the CRDs and the API reference from the typed models.

:mod:`kiln_operator.generate` (``make crds``) writes ``crds/kiln.dev_<plural>.yaml`` with
this module and ``docs/api.md`` with :mod:`kiln_operator.apidocs`. CI regenerates both and
fails when the committed files differ, so the models stay the single source of truth.

The models are walked directly rather than through pydantic's JSON Schema: a Kubernetes
structural schema has no ``$ref``, no ``anyOf`` for optionals, and needs extensions
(``x-kubernetes-*``) that are clearer to emit from the markers in ``api.markers``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kiln_operator.api.kinds import ALL_KINDS, CATEGORY, GROUP, VERSION, KindInfo
from kiln_operator.api.markers import (
    Example,
    Extra,
    Format,
    IntOrString,
    ListType,
    Pattern,
    Rule,
    SchemaDefault,
)

Schema = dict[str, Any]

_SCALARS: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}


class SchemaError(TypeError):
    """A model uses a type the generator cannot express as a structural schema."""


def _flatten(tp: Any, metadata: Sequence[Any]) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``Optional`` wrappers, collecting their metadata in order."""
    found = list(metadata)
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            args = typing.get_args(tp)
            tp, found = args[0], [*args[1:], *found]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
            else:
                return tp, _expand(found)
        else:
            return tp, _expand(found)


def _expand(metadata: Sequence[Any]) -> list[Any]:
    """Pydantic ``Field(...)`` objects inside ``Annotated`` carry their constraints inside."""
    out: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.extend(item.metadata)
        else:
            out.append(item)
    return out


def _type_schema(tp: Any) -> Schema:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return object_schema(tp)
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        if not all(isinstance(v, str) for v in values):
            raise SchemaError(f"only string literals are supported: {tp!r}")
        return {"type": "string", "enum": values}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": value_schema(item)}
    if origin is dict:
        key, value = typing.get_args(tp)
        if key is not str:
            raise SchemaError(f"map keys must be strings: {tp!r}")
        return {"type": "object", "additionalProperties": value_schema(value)}
    if origin in (typing.Union, types.UnionType):
        members = set(typing.get_args(tp))
        if members == {int, str}:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    raise SchemaError(f"no structural schema for {tp!r}")


def _apply_constraints(schema: Schema, metadata: Sequence[Any]) -> None:
    kind = schema.get("type")
    rules: list[dict[str, str]] = []
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            key = {"array": "minItems", "object": "minProperties"}.get(str(kind), "minLength")
            schema[key] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            key = {"array": "maxItems", "object": "maxProperties"}.get(str(kind), "maxLength")
            schema[key] = item.max_length
        elif isinstance(item, annotated_types.Ge):
            schema["minimum"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            schema["minimum"] = item.gt
            schema["exclusiveMinimum"] = True
        elif isinstance(item, annotated_types.Le):
            schema["maximum"] = item.le
        elif isinstance(item, annotated_types.Lt):
            schema["maximum"] = item.lt
            schema["exclusiveMaximum"] = True
        elif isinstance(item, Pattern):
            schema["pattern"] = item.regex
        elif isinstance(item, Format):
            schema["format"] = item.name
        elif isinstance(item, ListType):
            schema["x-kubernetes-list-type"] = item.kind
            if item.keys:
                schema["x-kubernetes-list-map-keys"] = list(item.keys)
        elif isinstance(item, IntOrString):
            schema["x-kubernetes-int-or-string"] = True
        elif isinstance(item, Rule):
            rules.append(item.as_schema())
        elif isinstance(item, SchemaDefault):
            schema["default"] = item.value
        elif isinstance(item, Extra):
            schema.update(item.keywords)
        elif isinstance(item, Example):
            schema["example"] = item.value
        elif getattr(item, "pattern", None):
            schema["pattern"] = item.pattern
    if rules:
        schema.setdefault("x-kubernetes-validations", []).extend(rules)


def value_schema(tp: Any, metadata: Sequence[Any] = ()) -> Schema:
    """The schema of a value of type ``tp`` (with its ``Annotated`` constraints)."""
    bare, found = _flatten(tp, metadata)
    schema = _type_schema(bare)
    _apply_constraints(schema, found)
    return schema


def _default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return PydanticUndefined
    else:
        value = field.default
    if isinstance(value, BaseModel):
        # An empty object: the API server then fills in the nested defaults itself.
        return value.model_dump(by_alias=True, exclude_defaults=True)
    if isinstance(value, list):
        if not value:
            return PydanticUndefined
        return [
            v.model_dump(by_alias=True, exclude_none=True) if isinstance(v, BaseModel) else v
            for v in value
        ]
    if value is None or value == {}:
        return PydanticUndefined
    return value


def object_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of an API model: properties, required, defaults, rules."""
    properties: Schema = {}
    required: list[str] = []
    for name, field in model.model_fields.items():
        wire = field.alias or name
        if not field.description:
            raise SchemaError(f"{model.__name__}.{name} has no docstring to describe it")
        schema = {"description": _clean(field.description)}
        schema.update(value_schema(field.annotation, field.metadata))
        default = _default_of(field)
        if default is not PydanticUndefined:
            schema["default"] = default
        if field.is_required():
            required.append(wire)
        properties[wire] = schema
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    rules = getattr(model, "schema_rules", ())
    if rules:
        out["x-kubernetes-validations"] = [r.as_schema() for r in rules]
    return out


def _clean(text: str) -> str:
    return " ".join(text.split())


def root_schema(info: KindInfo) -> Schema:
    model = info.model
    body = object_schema(model)
    doc = _clean(model.__doc__ or "")
    return {
        "description": doc,
        "type": "object",
        "required": body.get("required", []),
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation "
                "of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this "
                "object represents.",
                "type": "string",
            },
            # Nothing but the type: a real API server refuses any other keyword here ("must
            # not specify anything other than name and generateName").
            "metadata": {"type": "object"},
            **body["properties"],
        },
    }


def crd(info: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "kiln", "app.kubernetes.io/part-of": "kiln"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.as_schema() for c in info.columns],
                    "schema": {"openAPIV3Schema": root_schema(info)},
                }
            ],
        },
    }


def render_crd(info: KindInfo) -> str:
    header = "# Generated by `make crds` from kiln_operator.api; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(info), sort_keys=False, width=100, allow_unicode=True)


def crd_filename(info: KindInfo) -> str:
    return f"{GROUP}_{info.plural}.yaml"


def write_crds(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for info in ALL_KINDS:
        path = folder / crd_filename(info)
        path.write_text(render_crd(info), encoding="utf-8")
        written.append(path)
    return written

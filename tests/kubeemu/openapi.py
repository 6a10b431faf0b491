"""OpenAPI documents (v2 and v3) that kubectl needs for `explain` and for `apply`.

kubectl reads the v3 index (`/openapi/v3`), then one document per group-version. Custom
resources are described by their CRD schemas, with descriptions intact, so
`kubectl explain` teaches the API as it would on a real cluster. Built-in kinds are
described loosely (their fields are not modelled here). Every PATCH operation lists the
`fieldValidation` and `dryRun` parameters, which is how kubectl decides to let the server
validate fields.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from tests.kubeemu.resources import Registry, ResourceType

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# kubectl asks for the v2 document in gnostic's protobuf encoding when it validates objects
# of a kind its cached v3 index does not list yet (a CRD applied in the same command). The
# answer is a valid Document with `swagger: "2.0"` and no definitions: kubectl then skips
# client-side checks for the kind and the server validates the object itself
# (`fieldValidation=Strict`), which is what happens for such kinds on a real cluster too.
V2_PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
V2_PROTOBUF = b"\x0a\x032.0"

_OBJECT_META_SCHEMA: dict[str, Any] = {
    "description": "ObjectMeta is metadata that all persisted resources must have, which "
    "includes all objects users must create.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "generateName": {
            "type": "string",
            "description": "GenerateName is an optional prefix, used by the server, to generate "
            "a unique name ONLY IF the Name field has not been provided.",
        },
        "namespace": {
            "type": "string",
            "description": "Namespace defines the space within which each name must be unique.",
        },
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
            "description": "Map of string keys and values that can be used to organize and "
            "categorize (scope and select) objects.",
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
            "description": "Annotations is an unstructured key value map stored with a "
            "resource that may be set by external tools to store and retrieve arbitrary "
            "metadata.",
        },
        "finalizers": {
            "type": "array",
            "items": {"type": "string", "default": ""},
            "x-kubernetes-list-type": "set",
            "description": "Must be empty before the object is deleted from the registry.",
        },
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "x-kubernetes-list-map-keys": ["uid"],
            "x-kubernetes-list-type": "map",
            "description": "List of objects depended by this object.",
        },
        "uid": {
            "type": "string",
            "description": "UID is the unique in time and space value for this object.",
        },
        "resourceVersion": {
            "type": "string",
            "description": "An opaque value that represents the internal version of this object.",
        },
        "generation": {
            "type": "integer",
            "format": "int64",
            "description": "A sequence number representing a specific generation of the "
            "desired state.",
        },
        "creationTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "CreationTimestamp is a timestamp representing the server time when "
            "this object was created.",
        },
        "deletionTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "DeletionTimestamp is RFC 3339 date and time at which this resource "
            "will be deleted.",
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "ManagedFields maps workflow-id and version to the set of fields "
            "that are managed by that workflow.",
        },
    },
}

_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values."
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    "CamelCase."
)


def definition_name(rt: ResourceType) -> str:
    if not rt.group:
        return f"io.k8s.api.core.{rt.version}.{rt.kind}"
    if rt.is_custom:
        reversed_group = ".".join(reversed(rt.group.split(".")))
        return f"{reversed_group}.{rt.version}.{rt.kind}"
    short = rt.group.split(".")[0]
    if rt.group.endswith(".k8s.io") and short != "apiextensions":
        return f"io.k8s.api.{short}.{rt.version}.{rt.kind}"
    if short == "apiextensions":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{rt.version}.{rt.kind}"
    return f"io.k8s.api.{short}.{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "kind": rt.kind, "version": rt.version}


def _schema_for(rt: ResourceType, ref_prefix: str) -> dict[str, Any]:
    if rt.schema is not None:
        schema = copy.deepcopy(rt.schema)
    else:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "description": _API_VERSION_DOC}
    properties["kind"] = {"type": "string", "description": _KIND_DOC}
    properties["metadata"] = {
        "allOf": [{"$ref": f"{ref_prefix}{OBJECT_META}"}],
        "description": "Standard object's metadata. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/"
        "api-conventions.md#metadata",
    }
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    return schema


def _parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": "dryRun",
            "in": "query",
            "description": "When present, indicates that modifications should not be persisted.",
            "schema": {"type": "string", "uniqueItems": True},
        },
        {
            "name": "fieldManager",
            "in": "query",
            "description": "fieldManager is a name associated with the actor or entity that is "
            "making these changes.",
            "schema": {"type": "string", "uniqueItems": True},
        },
        {
            "name": "fieldValidation",
            "in": "query",
            "description": "fieldValidation instructs the server on how to handle objects in "
            "the request containing unknown or duplicate fields.",
            "schema": {"type": "string", "uniqueItems": True},
        },
    ]


def _paths(rt: ResourceType, ref_prefix: str, v2: bool) -> dict[str, Any]:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    if rt.namespaced:
        collection = f"{prefix}/namespaces/{{namespace}}/{rt.plural}"
    else:
        collection = f"{prefix}/{rt.plural}"
    item = f"{collection}/{{name}}"
    ref = {"$ref": f"{ref_prefix}{definition_name(rt)}"}
    extension = {"x-kubernetes-group-version-kind": _gvk(rt)}
    parameters = _parameters()
    if v2:
        parameters = [
            {k: v for k, v in p.items() if k != "schema"} | {"type": "string", "uniqueItems": True}
            for p in parameters
        ]
        ok = {"200": {"description": "OK", "schema": ref}}
    else:
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}

    def operation(verb: str, action: str) -> dict[str, Any]:
        return {
            "operationId": f"{verb}{rt.kind}",
            "parameters": parameters,
            "responses": ok,
            "x-kubernetes-action": action,
            **extension,
        }

    return {
        collection: {"get": operation("list", "list"), "post": operation("create", "post")},
        item: {
            "get": operation("read", "get"),
            "put": operation("replace", "put"),
            "patch": operation("patch", "patch"),
            "delete": operation("delete", "delete"),
        },
    }


def _group_version_document(registry: Registry, group: str, version: str) -> dict[str, Any]:
    ref_prefix = "#/components/schemas/"
    schemas: dict[str, Any] = {OBJECT_META: _OBJECT_META_SCHEMA}
    paths: dict[str, Any] = {}
    for rt in registry.in_group_version(group, version):
        schemas[definition_name(rt)] = _schema_for(rt, ref_prefix)
        paths.update(_paths(rt, ref_prefix, v2=False))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.30.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _v2(registry: Registry) -> dict[str, Any]:
    ref_prefix = "#/definitions/"
    definitions: dict[str, Any] = {OBJECT_META: _OBJECT_META_SCHEMA}
    paths: dict[str, Any] = {}
    for rt in registry.types:
        definitions[definition_name(rt)] = _schema_for(rt, ref_prefix)
        paths.update(_paths(rt, ref_prefix, v2=True))
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.30.0"},
        "paths": paths,
        "definitions": definitions,
    }


def _hash(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:128].upper()


def document(registry: Registry, path: str) -> dict[str, Any] | None:
    """The document served at `path` (which starts with /openapi/), or None."""
    if path == "/openapi/v2":
        return _v2(registry)
    if path == "/openapi/v3":
        listed: dict[str, Any] = {}
        for group, versions in registry.group_versions().items():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                doc = _group_version_document(registry, group, version)
                listed[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={_hash(doc)}"}
        return {"paths": listed}
    if path.startswith("/openapi/v3/"):
        parts = path[len("/openapi/v3/") :].split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        if not registry.in_group_version(group, version):
            return None
        return _group_version_document(registry, group, version)
    return None

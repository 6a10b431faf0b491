"""How lists inside an object merge: by key, as a set, or atomically.

Server-side apply, strategic merge patch and managedFields all need to know, for every list
in an object, whether its items are identified by key fields. Custom resources say so in
their structural schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`); built-in
kinds carry it in their Go types (`patchMergeKey`), which `BUILTIN_LIST_KEYS` records for
the fields Kiln and its tools touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Field name -> merge keys of the list it holds, for built-in kinds. A parent field name
# qualifies the few names whose key depends on where they appear.
BUILTIN_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "ports": ("containerPort",),
    "spec.ports": ("port",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "conditions": ("type",),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
    "resourceClaims": ("name",),
    "containerStatuses": ("name",),
    "initContainerStatuses": ("name",),
    "metrics": (),
}
# Lists of scalars that merge as sets in built-in kinds.
BUILTIN_SET_LISTS = frozenset({"finalizers"})


@dataclass(frozen=True)
class ListKind:
    kind: str  # "map", "set" or "atomic"
    keys: tuple[str, ...] = ()


ATOMIC = ListKind("atomic")


class Shape:
    """A position in an object's type: what its children are and how its lists merge."""

    def child(self, name: str) -> Shape:
        raise NotImplementedError

    def items(self) -> Shape:
        raise NotImplementedError

    def list_kind(self) -> ListKind:
        raise NotImplementedError

    def is_atomic_map(self) -> bool:
        return False


# Kinds whose `spec.selector` is a LabelSelector, which apply treats as one atomic value
# (a Service's `spec.selector` is a plain map and merges key by key).
LABEL_SELECTOR_KINDS = frozenset(
    {
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("batch", "jobs"),
        ("policy", "poddisruptionbudgets"),
    }
)


class BuiltinShape(Shape):
    """Built-in kinds: list semantics decided by field name, as their Go tags do."""

    def __init__(
        self,
        name: str = "",
        parent: str = "",
        in_metadata: bool = False,
        kind: tuple[str, str] = ("", ""),
        path: tuple[str, ...] = (),
    ) -> None:
        self._name = name
        self._parent = parent
        self._in_metadata = in_metadata
        self._kind = kind
        self._path = path

    def child(self, name: str) -> Shape:
        return BuiltinShape(
            name,
            self._name,
            self._in_metadata or name == "metadata",
            self._kind,
            (*self._path, name),
        )

    def items(self) -> Shape:
        return BuiltinShape("", self._name, self._in_metadata, self._kind, (*self._path, "[]"))

    def is_atomic_map(self) -> bool:
        return self._path == ("spec", "selector") and self._kind in LABEL_SELECTOR_KINDS

    def list_kind(self) -> ListKind:
        qualified = f"{self._parent}.{self._name}"
        if qualified in BUILTIN_LIST_KEYS:
            keys = BUILTIN_LIST_KEYS[qualified]
        elif self._name in BUILTIN_LIST_KEYS:
            keys = BUILTIN_LIST_KEYS[self._name]
        elif self._name in BUILTIN_SET_LISTS:
            return ListKind("set")
        else:
            return ATOMIC
        return ListKind("map", keys) if keys else ATOMIC


class SchemaShape(Shape):
    """Custom resources: list semantics from the structural schema."""

    def __init__(self, schema: dict[str, Any] | None, name: str = "") -> None:
        self._schema = schema or {}
        self._name = name

    def child(self, name: str) -> Shape:
        if name == "metadata" and not self._name:
            return BuiltinShape("metadata", in_metadata=True)
        properties = self._schema.get("properties")
        if isinstance(properties, dict) and name in properties:
            return SchemaShape(properties[name], name)
        additional = self._schema.get("additionalProperties")
        if isinstance(additional, dict):
            return SchemaShape(additional, name)
        return SchemaShape(None, name)

    def items(self) -> Shape:
        items = self._schema.get("items")
        return SchemaShape(items if isinstance(items, dict) else None, self._name)

    def list_kind(self) -> ListKind:
        list_type = self._schema.get("x-kubernetes-list-type")
        if list_type == "map":
            return ListKind("map", tuple(self._schema.get("x-kubernetes-list-map-keys") or ()))
        if list_type == "set":
            return ListKind("set")
        return ATOMIC

    def is_atomic_map(self) -> bool:
        return self._schema.get("x-kubernetes-map-type") == "atomic"


def item_key(item: Any, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The identity of a list-map item, or None when it lacks every key."""
    if not isinstance(item, dict):
        return None
    values = tuple(item.get(k) for k in keys)
    if all(v is None for v in values):
        return None
    return values

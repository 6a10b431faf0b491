"""What the server knows how to serve: built-in kinds plus the kinds that CRDs register.

A `ResourceType` is one served group/version/resource with everything discovery, storage and
validation need to know about it. The `Registry` is the single lookup table the REST layer
consults; CRD creation and deletion change it at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    format: str = ""
    priority: int = 0


@dataclass
class ResourceType:
    """One group/version/resource as the API serves it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    has_generation: bool = True
    # Custom resources refuse an update without resourceVersion; most built-ins accept it.
    unconditional_update: bool = True
    schema: dict[str, Any] | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()
    crd_name: str = ""
    list_kind: str = ""
    extra_subresources: tuple[str, ...] = ()
    # Set when another group's resource holds the objects (events.k8s.io views core events).
    stored_as: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.list_kind:
            self.list_kind = self.kind + "List"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored once per group+resource, whatever version serves them."""
        return self.stored_as or (self.group, self.plural)

    @property
    def is_custom(self) -> bool:
        return bool(self.crd_name)

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, **kw)


def _gv(group: str, version: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    namespaced = kw.pop("namespaced", True)
    return ResourceType(group, version, plural, kind, namespaced, **kw)


def builtin_types() -> list[ResourceType]:
    """The built-in kinds Kiln, kopf, kubectl and Helm touch, as a v1.28 server names them."""
    return [
        _core(
            "namespaces",
            "Namespace",
            namespaced=False,
            short_names=("ns",),
            status_subresource=True,
            has_generation=False,
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            extra_subresources=("finalize",),
        ),
        _core(
            "pods",
            "Pod",
            short_names=("po",),
            categories=("all",),
            status_subresource=True,
            extra_subresources=("log",),
        ),
        _core(
            "services",
            "Service",
            short_names=("svc",),
            categories=("all",),
            status_subresource=True,
            has_generation=False,
            verbs=(
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ),
        ),
        _core("configmaps", "ConfigMap", short_names=("cm",), has_generation=False),
        _core("secrets", "Secret", has_generation=False),
        _core("events", "Event", short_names=("ev",), has_generation=False),
        _core("serviceaccounts", "ServiceAccount", short_names=("sa",), has_generation=False),
        _core(
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            short_names=("pvc",),
            status_subresource=True,
            has_generation=False,
        ),
        _core("endpoints", "Endpoints", short_names=("ep",), has_generation=False),
        _core(
            "nodes",
            "Node",
            namespaced=False,
            short_names=("no",),
            status_subresource=True,
            has_generation=False,
        ),
        _core(
            "persistentvolumes",
            "PersistentVolume",
            namespaced=False,
            short_names=("pv",),
            status_subresource=True,
            has_generation=False,
        ),
        _core(
            "resourcequotas",
            "ResourceQuota",
            short_names=("quota",),
            status_subresource=True,
            has_generation=False,
        ),
        _core("limitranges", "LimitRange", short_names=("limits",), has_generation=False),
        _gv(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            short_names=("deploy",),
            categories=("all",),
            status_subresource=True,
            extra_subresources=("scale",),
        ),
        _gv(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            short_names=("rs",),
            categories=("all",),
            status_subresource=True,
            extra_subresources=("scale",),
        ),
        _gv(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            short_names=("sts",),
            categories=("all",),
            status_subresource=True,
            extra_subresources=("scale",),
        ),
        _gv("batch", "v1", "jobs", "Job", categories=("all",), status_subresource=True),
        _gv(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            short_names=("cj",),
            categories=("all",),
            status_subresource=True,
        ),
        _gv(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            short_names=("hpa",),
            categories=("all",),
            status_subresource=True,
        ),
        _gv(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            short_names=("pdb",),
            status_subresource=True,
        ),
        _gv("coordination.k8s.io", "v1", "leases", "Lease", has_generation=False),
        _gv(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            short_names=("ev",),
            has_generation=False,
            stored_as=("", "events"),
        ),
        _gv("rbac.authorization.k8s.io", "v1", "roles", "Role", has_generation=False),
        _gv("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", has_generation=False),
        _gv(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            namespaced=False,
            has_generation=False,
        ),
        _gv(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            namespaced=False,
            has_generation=False,
        ),
        _gv(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            short_names=("ing",),
            status_subresource=True,
        ),
        _gv(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            short_names=("netpol",),
        ),
        _gv(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            namespaced=False,
            short_names=("sc",),
            has_generation=False,
        ),
        _gv(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            namespaced=False,
            short_names=("pc",),
            has_generation=False,
        ),
        _gv(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            status_subresource=True,
        ),
    ]


@dataclass
class Registry:
    """Served resource types, indexed the ways requests and discovery look them up."""

    types: list[ResourceType] = field(default_factory=list)

    def add(self, resource_type: ResourceType) -> None:
        self.remove(resource_type.group, resource_type.version, resource_type.plural)
        self.types.append(resource_type)

    def remove(self, group: str, version: str, plural: str) -> None:
        self.types = [
            t
            for t in self.types
            if not (t.group == group and t.version == version and t.plural == plural)
        ]

    def remove_crd(self, crd_name: str) -> None:
        self.types = [t for t in self.types if t.crd_name != crd_name]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        for t in self.types:
            if t.group == group and t.version == version and t.plural == plural:
                return t
        return None

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.plural == plural]

    def find_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for t in self.types:
            if t.group == group and t.version == version and t.kind == kind:
                return t
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group name to its versions, in the order they were first registered."""
        result: dict[str, list[str]] = {}
        for t in self.types:
            versions = result.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return result

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]

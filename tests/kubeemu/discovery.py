"""Discovery documents: /version, /api, /apis and the per group-version resource lists."""

from __future__ import annotations

import re
from typing import Any

from tests.kubeemu.resources import Registry, ResourceType

VERSION_INFO = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-kiln-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def core_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "name": name,
        "versions": listed,
        "preferredVersion": listed[0],
    }


def _ordered_versions(versions: list[str]) -> list[str]:
    """Kubernetes version priority: GA before beta before alpha, higher numbers first."""

    def priority(version: str) -> tuple[int, int, int]:
        match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
        if not match:
            return (3, 0, 0)
        major, stage, minor = match.groups()
        stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
        return (stage_rank, -int(major), -int(minor or 0))

    return sorted(versions, key=priority)


def group_list(registry: Registry) -> dict[str, Any]:
    groups = [
        _group(name, _ordered_versions(versions))
        for name, versions in registry.group_versions().items()
        if name
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(name)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, _ordered_versions(versions))}


def _resource_entry(t: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": sorted(t.verbs),
    }
    if t.short_names:
        entry["shortNames"] = list(t.short_names)
    if t.categories:
        entry["categories"] = list(t.categories)
    entry["storageVersionHash"] = f"{abs(hash((t.group, t.plural))) % 10**11:011d}"[:11]
    return entry


def resource_list(registry: Registry, group_name: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group_name, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for t in types:
        resources.append(_resource_entry(t))
        if t.status_subresource:
            resources.append(
                {
                    "name": f"{t.plural}/status",
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        for sub in t.extra_subresources:
            resources.append(_subresource_entry(t, sub))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group_name}/{version}" if group_name else version,
        "resources": resources,
    }


def _subresource_entry(t: ResourceType, sub: str) -> dict[str, Any]:
    if sub == "scale":
        return {
            "name": f"{t.plural}/scale",
            "singularName": "",
            "namespaced": t.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }
    verbs = {"finalize": ["update"], "log": ["get"]}.get(sub, ["get"])
    return {
        "name": f"{t.plural}/{sub}",
        "singularName": "",
        "namespaced": t.namespaced,
        "kind": t.kind if sub != "log" else "Pod",
        "verbs": verbs,
    }

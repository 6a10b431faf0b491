"""The checks of built-in kinds that an operator's writes most often trip on a real server.

Not the whole of Kubernetes' validation: the rules that catch operator bugs which would
otherwise show up only on a real cluster: a Job's pod template is immutable and needs a
restartPolicy of OnFailure or Never, a Deployment's selector must match its template and
never change, pods need containers with images, a Service keeps its cluster IP.
"""

from __future__ import annotations

import json
from typing import Any

from tests.kubeemu.errors import Cause
from tests.kubeemu.metadata import LABEL_MESSAGE, name_causes

Obj = dict[str, Any]


def _mapping(value: Any) -> dict[str, Any]:
    """The value if it is an object; what is not has already been reported or defaulted."""
    return value if isinstance(value, dict) else {}


def _go_map(labels: dict[str, Any]) -> str:
    inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(labels.items()))
    return "map[string]string{" + inner + "}"


def _immutable(path: str, go_value: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {go_value}: field is immutable", path)


def pod_spec_causes(spec: Any, path: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", "Required value", path)]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [Cause("FieldValueRequired", "Required value", f"{path}.containers")]
    causes = []
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict):
            causes.append(Cause("FieldValueRequired", "Required value", where))
            continue
        name = container.get("name")
        if not name:
            causes.append(Cause("FieldValueRequired", "Required value", f"{where}.name"))
        elif name in seen:
            causes.append(
                Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"{where}.name")
            )
        else:
            seen.add(str(name))
            if name_causes(str(name), ("", "namespaces")):
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{name}": {LABEL_MESSAGE}',
                        f"{where}.name",
                    )
                )
        if not container.get("image"):
            causes.append(Cause("FieldValueRequired", "Required value", f"{where}.image"))
    return causes


def _template_spec(obj: Obj) -> Any:
    return _mapping(_mapping(obj.get("spec")).get("template")).get("spec")


def job_causes(new: Obj, old: Obj | None) -> list[Cause]:
    causes = pod_spec_causes(_template_spec(new), "spec.template.spec")
    policy = _mapping(_template_spec(new)).get("restartPolicy")
    if not causes and policy not in ("OnFailure", "Never"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{policy or ""}": supported values: "OnFailure", "Never"',
                "spec.template.spec.restartPolicy",
            )
        )
    if old is not None:
        new_spec, old_spec = _mapping(new.get("spec")), _mapping(old.get("spec"))
        if new_spec.get("template") != old_spec.get("template"):
            causes.append(_immutable("spec.template", "core.PodTemplateSpec{...}"))
        if new_spec.get("selector") != old_spec.get("selector"):
            causes.append(_immutable("spec.selector", "v1.LabelSelector{...}"))
        if new_spec.get("completionMode") != old_spec.get("completionMode"):
            causes.append(
                _immutable("spec.completionMode", json.dumps(new_spec.get("completionMode")))
            )
    return causes


def deployment_causes(
    new: Obj, old: Obj | None, template_path: str = "spec.template"
) -> list[Cause]:
    spec = _mapping(new.get("spec"))
    selector = spec.get("selector")
    causes = []
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(Cause("FieldValueRequired", "Required value", "spec.selector"))
    else:
        labels = _mapping(_mapping(_mapping(spec.get("template")).get("metadata")).get("labels"))
        wanted = _mapping(selector.get("matchLabels"))
        if any(labels.get(k) != v for k, v in wanted.items()):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {_go_map(labels)}: `selector` does not match template "
                    "`labels`",
                    f"{template_path}.metadata.labels",
                )
            )
    causes.extend(pod_spec_causes(_template_spec(new), f"{template_path}.spec"))
    if old is not None and _mapping(old.get("spec")).get("selector") != selector:
        causes.append(_immutable("spec.selector", "v1.LabelSelector{...}"))
    return causes


def pod_causes(new: Obj, old: Obj | None) -> list[Cause]:
    causes = pod_spec_causes(new.get("spec"), "spec")
    if old is None or causes:
        return causes
    mutable = ("containers", "initContainers", "activeDeadlineSeconds", "tolerations")
    new_spec = {k: v for k, v in _mapping(new.get("spec")).items() if k not in mutable}
    old_spec = {k: v for k, v in _mapping(old.get("spec")).items() if k not in mutable}
    images_only = [
        {k: v for k, v in _mapping(c).items() if k != "image"}
        for c in _mapping(new.get("spec")).get("containers") or []
    ] == [
        {k: v for k, v in _mapping(c).items() if k != "image"}
        for c in _mapping(old.get("spec")).get("containers") or []
    ]
    if new_spec != old_spec or not images_only:
        causes.append(
            Cause(
                "FieldValueForbidden",
                "Forbidden: pod updates may not change fields other than `spec.containers[*]."
                "image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                "`spec.tolerations` (only additions to existing tolerations),"
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)",
                "spec",
            )
        )
    return causes


def service_causes(new: Obj, old: Obj | None) -> list[Cause]:
    spec = _mapping(new.get("spec"))
    causes = []
    headless = spec.get("clusterIP") == "None"
    if not spec.get("ports") and not headless and spec.get("type") != "ExternalName":
        causes.append(Cause("FieldValueRequired", "Required value", "spec.ports"))
    if old is not None:
        before = _mapping(old.get("spec")).get("clusterIP")
        if before and spec.get("clusterIP") != before:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: []string{{{json.dumps(spec.get('clusterIP'))}}}: may not "
                    "change once set",
                    "spec.clusterIPs[0]",
                )
            )
    return causes


def builtin_causes(storage_key: tuple[str, str], new: Obj, old: Obj | None) -> list[Cause]:
    """Problems with a built-in object about to be stored (empty when it is fine)."""
    if storage_key == ("batch", "jobs"):
        return job_causes(new, old)
    if storage_key in (("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")):
        return deployment_causes(new, old)
    if storage_key == ("", "pods"):
        return pod_causes(new, old)
    if storage_key == ("", "services"):
        return service_causes(new, old)
    return []

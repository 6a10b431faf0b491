"""How a built-in object reads back after the API server decoded it into Go types.

A real server does not store the JSON a client sent: it decodes it into the kind's Go struct
and encodes that again. Two effects of that round trip catch out operators and tests that
compare what they wrote with what they read:

- resource quantities come back as canonical strings (``nvidia.com/gpu: 2`` reads ``"2"``,
  ``cpu: 1.5`` reads ``"1500m"``, ``memory: 1024Mi`` reads ``"1Gi"``), as
  ``resource.Quantity`` marshals them;
- integer fields tagged ``omitempty`` vanish when zero (a Job's ``status.active: 0``).

Both are recorded from kube-apiserver v1.28.7 (``tests/cluster/reference/``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

Obj = dict[str, Any]

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_NANO = 10**9


def canonical_quantity(value: Any) -> Any:
    """The string a ``resource.Quantity`` encodes to; a value that is no quantity as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    text = repr(value) if isinstance(value, float) else str(value)
    match = _QUANTITY.match(text.strip())
    if match is None:
        return value
    suffix = match["suffix"] or ""
    amount = Fraction(match["number"])
    if suffix in _BINARY:
        fmt, amount = "binary", amount * 1024 ** _BINARY[suffix]
    elif suffix[:1] in ("e", "E") and len(suffix) > 1:
        fmt, amount = "exponent", amount * Fraction(10) ** int(suffix[1:])
    else:
        fmt, amount = "decimal", amount * Fraction(10) ** _DECIMAL[suffix]
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    # Precision below a nano-unit is rounded up, as Quantity does.
    nanos = -((-amount * _NANO).__floor__())
    if fmt == "binary" and (nanos < 1024 * _NANO or nanos % _NANO):
        fmt = "decimal"
    if nanos == 0:
        return "0"
    if fmt == "binary":
        number, power = nanos // _NANO, 0
        while number % 1024 == 0 and power < len(_BINARY_SUFFIX) - 1:
            number, power = number // 1024, power + 1
        return f"{sign}{number}{_BINARY_SUFFIX[power]}"
    mantissa, exponent = nanos, -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    while exponent % 3:
        mantissa, exponent = mantissa * 10, exponent - 1
    if fmt == "exponent":
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    if exponent > 18:
        mantissa, exponent = mantissa * 10 ** (exponent - 18), 18
    return f"{sign}{mantissa}{_DECIMAL_SUFFIX[exponent]}"


def _canonical_map(holder: Any, key: str) -> None:
    if isinstance(holder, dict) and isinstance(holder.get(key), dict):
        holder[key] = {name: canonical_quantity(v) for name, v in holder[key].items()}


def _canonical_field(holder: Any, key: str) -> None:
    if isinstance(holder, dict) and key in holder:
        holder[key] = canonical_quantity(holder[key])


def _dicts(value: Any) -> Iterator[Obj]:
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            yield item


def _pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in _dicts(spec.get(key)):
            resources = container.get("resources")
            _canonical_map(resources, "limits")
            _canonical_map(resources, "requests")
    _canonical_map(spec, "overhead")
    for volume in _dicts(spec.get("volumes")):
        _canonical_field(volume.get("emptyDir"), "sizeLimit")


def _template_of(obj: Obj) -> None:
    _pod_spec(((obj.get("spec") or {}).get("template") or {}).get("spec"))


def _cron_job(obj: Obj) -> None:
    job_template = (obj.get("spec") or {}).get("jobTemplate") or {}
    _pod_spec(((job_template.get("spec") or {}).get("template") or {}).get("spec"))


def _pod(obj: Obj) -> None:
    _pod_spec(obj.get("spec"))


def _claim(obj: Obj) -> None:
    resources = (obj.get("spec") or {}).get("resources")
    _canonical_map(resources, "requests")
    _canonical_map(resources, "limits")
    _canonical_map(obj.get("status"), "capacity")


def _node(obj: Obj) -> None:
    _canonical_map(obj.get("status"), "capacity")
    _canonical_map(obj.get("status"), "allocatable")


def _metric_values(metrics: Any, holder: str) -> None:
    """The quantities of an HPA's metric list: each source's ``target`` or ``current``."""
    for metric in _dicts(metrics):
        for source in ("resource", "pods", "object", "external", "containerResource"):
            values = (metric.get(source) or {}).get(holder)
            _canonical_field(values, "value")
            _canonical_field(values, "averageValue")


def _autoscaler(obj: Obj) -> None:
    _metric_values((obj.get("spec") or {}).get("metrics"), "target")
    _metric_values((obj.get("status") or {}).get("currentMetrics"), "current")


def _quota(obj: Obj) -> None:
    _canonical_map(obj.get("spec"), "hard")
    _canonical_map(obj.get("status"), "hard")
    _canonical_map(obj.get("status"), "used")


def _limit_range(obj: Obj) -> None:
    for limit in _dicts((obj.get("spec") or {}).get("limits")):
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _canonical_map(limit, key)


_QUANTITIES: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "pods"): _pod,
    ("", "podtemplates"): lambda obj: _pod_spec((obj.get("template") or {}).get("spec")),
    ("", "replicationcontrollers"): _template_of,
    ("apps", "deployments"): _template_of,
    ("apps", "replicasets"): _template_of,
    ("apps", "statefulsets"): _template_of,
    ("apps", "daemonsets"): _template_of,
    ("batch", "jobs"): _template_of,
    ("batch", "cronjobs"): _cron_job,
    ("", "persistentvolumeclaims"): _claim,
    ("", "nodes"): _node,
    ("autoscaling", "horizontalpodautoscalers"): _autoscaler,
    ("", "resourcequotas"): _quota,
    ("", "limitranges"): _limit_range,
}

# Status fields that are `int32 ... omitempty` in the Go types (pointers are not listed:
# a pointer to zero is kept).
_OMIT_ZERO_STATUS: dict[tuple[str, str], tuple[str, ...]] = {
    ("batch", "jobs"): ("active", "succeeded", "failed"),
    ("apps", "deployments"): (
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
        "observedGeneration",
    ),
    ("apps", "replicasets"): (
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ),
    ("apps", "statefulsets"): (
        "observedGeneration",
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
        "availableReplicas",
    ),
    ("autoscaling", "horizontalpodautoscalers"): ("currentReplicas",),
}


def as_encoded(storage_key: tuple[str, str], obj: Obj) -> None:
    """Rewrite a built-in object in place as the API server's Go round trip leaves it."""
    canonical = _QUANTITIES.get(storage_key)
    if canonical is not None:
        canonical(obj)
    status = obj.get("status")
    if isinstance(status, dict):
        for key in _OMIT_ZERO_STATUS.get(storage_key, ()):
            if status.get(key) == 0 and not isinstance(status.get(key), bool):
                del status[key]

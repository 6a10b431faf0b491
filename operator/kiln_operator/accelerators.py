"""The operator's accelerator map: which node labels each accelerator type selects.

Cluster administrators know their GPU node labels; users only name a type
(``accelerator.type: nvidia-h100``). The map is a YAML file given with
``--accelerator-map``::

    nvidia-h100:
      nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    nvidia-l4:
      nvidia.com/gpu.product: NVIDIA-L4

A malformed file stops the operator at start-up with a precise message; a type missing from
the map is reported on the object that asked for it, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The resource name and taint key of NVIDIA's device plugin.
GPU_RESOURCE = "nvidia.com/gpu"


class AcceleratorMapError(ValueError):
    """The accelerator map file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class AcceleratorMap:
    """Accelerator type -> node selector labels."""

    node_selectors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def node_selector(self, accelerator_type: str) -> Mapping[str, str] | None:
        """The labels for ``accelerator_type``, or None when the type is unknown."""
        return self.node_selectors.get(accelerator_type)

    def unknown_type_message(self, accelerator_type: str) -> str:
        known = ", ".join(sorted(self.node_selectors)) or "none: the operator runs without one"
        return (
            f"accelerator type {accelerator_type!r} is not in the operator's accelerator map "
            f"(known types: {known}); use a known type or add it to the map "
            "(kiln-operator --accelerator-map)"
        )


def parse_accelerator_map(document: Any, source: str = "accelerator map") -> AcceleratorMap:
    """Check a decoded map document and turn it into an :class:`AcceleratorMap`."""
    if document is None:
        return AcceleratorMap()
    if not isinstance(document, dict):
        raise AcceleratorMapError(f"{source}: expected a mapping of type -> labels")
    selectors: dict[str, dict[str, str]] = {}
    for type_, labels in document.items():
        if not isinstance(type_, str) or not type_:
            raise AcceleratorMapError(f"{source}: accelerator types must be non-empty strings")
        if not isinstance(labels, dict) or not labels:
            raise AcceleratorMapError(
                f"{source}: {type_}: expected a non-empty mapping of node label -> value"
            )
        for key, value in labels.items():
            if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
                raise AcceleratorMapError(
                    f"{source}: {type_}: node label {key!r} needs a scalar value"
                )
        selectors[type_] = {str(k): _label_text(v) for k, v in labels.items()}
    return AcceleratorMap(selectors)


def load_accelerator_map(path: str | Path | None) -> AcceleratorMap:
    if path is None:
        return AcceleratorMap()
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise AcceleratorMapError(f"cannot read accelerator map {path}: {error}") from error
    except yaml.YAMLError as error:
        raise AcceleratorMapError(f"accelerator map {path} is not valid YAML: {error}") from error
    return parse_accelerator_map(document, str(path))


def _label_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

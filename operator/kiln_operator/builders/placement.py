"""Where a pod may run: node selector and tolerations, for training and serving pods alike.

A pod with an accelerator gets the node labels of its type from the operator's accelerator
map and NVIDIA's standard GPU toleration; the user's own ``nodeSelector`` (which wins on a
shared key) and ``tolerations`` are added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from kiln_operator.accelerators import GPU_RESOURCE

#: The toleration of NVIDIA's device plugin taint on GPU nodes.
GPU_TOLERATION: Final = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def place(
    pod: dict[str, Any],
    accelerated: bool,
    accelerator_selector: Mapping[str, str] | None,
    node_selector: Mapping[str, str] | None,
    tolerations: Sequence[Any] | None,
) -> None:
    """Set ``pod``'s ``nodeSelector`` and ``tolerations`` (``tolerations``: the spec's
    pydantic models)."""
    selector = {**((accelerator_selector or {}) if accelerated else {}), **(node_selector or {})}
    if selector:
        pod["nodeSelector"] = selector
    wanted = [t.model_dump(by_alias=True, exclude_none=True) for t in tolerations or []]
    if accelerated and GPU_TOLERATION not in wanted:
        wanted.append(dict(GPU_TOLERATION))
    if wanted:
        pod["tolerations"] = wanted

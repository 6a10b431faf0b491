"""The user's intent in a TrainingJob spec, and its hash: what decides whether a run is due.

The hash covers the run-relevant fields (:data:`kiln_operator.naming.RUN_RELEVANT_FIELDS`)
as the user wrote them, with every value equal to the operator's own default left out. So
the same manifest hashes the same whether or not the API server filled in defaults, and a
release that adds a defaulted field or changes a default does not make every TrainingJob
look changed. (Runs also record the ``metadata.generation`` they were started for, which
the API server moves only on a user's edit; see :mod:`.triggers`.)
"""

from __future__ import annotations

from typing import Any

from kiln_operator import naming
from kiln_operator.api.trainingjob import TrainingJobSpec


def spec_intent(spec: TrainingJobSpec) -> dict[str, Any]:
    """The run-relevant fields the user set to something other than their default."""
    wire = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude_none=True)
    return {key: wire[key] for key in naming.RUN_RELEVANT_FIELDS if key in wire}


def intent_hash(spec: TrainingJobSpec) -> str:
    """Eight hex digits naming :func:`spec_intent` (part of each run's name)."""
    return naming.spec_hash(spec_intent(spec))

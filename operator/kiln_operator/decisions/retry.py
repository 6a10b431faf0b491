"""How long to wait before reconciling again after a reconcile failed.

Whether an error is transient is decided in one place (:func:`kiln_operator.kube.is_transient`);
this decides what that means for timing. A transient error (a timeout, a 5xx, a conflict) is
retried soon and then less often; an error only a human can fix (RBAC, a refused request, a
bug) is retried slowly, never in a hot loop, and still retried, because the fix (a granted
permission, a new operator version) does not announce itself with an event.
"""

from __future__ import annotations

from typing import Final

#: Seconds before the next attempt, by consecutive failure count.
TRANSIENT_BACKOFF: Final = (1.0, 2.0, 5.0, 10.0, 30.0)
PERMANENT_BACKOFF: Final = (30.0, 60.0, 120.0, 300.0)


def retry_delay(transient: bool, consecutive_failures: int) -> float:
    """Seconds to wait after the ``consecutive_failures``-th failure in a row (from 1)."""
    steps = TRANSIENT_BACKOFF if transient else PERMANENT_BACKOFF
    return steps[min(max(consecutive_failures, 1), len(steps)) - 1]

"""When to reconcile a TrainingJob again without an event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

from kiln_operator.decisions.runs import RunRow
from kiln_operator.decisions.triggers import parse_time

#: How soon to look again while a run is active (Job and pod events usually come first).
ACTIVE_RECHECK_SECONDS: Final = 30.0
#: How soon to look again after losing a race (another writer, a child that vanished).
RACE_RECHECK_SECONDS: Final = 0.5


def requeue_after(
    resync_seconds: float,
    rows: Sequence[RunRow],
    next_schedule_time: str | None,
    now: dt.datetime,
) -> float:
    """The periodic resync, sooner while a run is active, and just after the next
    scheduled second (so the decision then sees it as due)."""
    delay = resync_seconds
    if any(row.active for row in rows):
        delay = min(delay, ACTIVE_RECHECK_SECONDS)
    next_time = parse_time(next_schedule_time)
    if next_time is not None:
        delay = min(delay, max((next_time - now).total_seconds(), 0.0) + 0.5)
    return delay

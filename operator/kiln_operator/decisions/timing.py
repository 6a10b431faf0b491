"""When to reconcile a TrainingJob again without an event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from kiln_operator.decisions.runs import RunRow
from kiln_operator.decisions.triggers import parse_time

#: How soon to look again while a run is active (Job and pod events usually come first).
ACTIVE_RECHECK_SECONDS: Final = 30.0
#: How soon to look again after losing a race (another writer, a child that vanished).
RACE_RECHECK_SECONDS: Final = 0.5


@dataclass(frozen=True)
class NextLook:
    """When to reconcile again, and whether something is due then (the next scheduled
    time) or it is only a recheck (the resync, an active run whose events may be missed)."""

    seconds: float
    due: bool


def next_look(
    resync_seconds: float,
    rows: Sequence[RunRow],
    next_schedule_time: str | None,
    now: dt.datetime,
) -> NextLook:
    """The periodic resync, sooner while a run is active, and just after the next
    scheduled second (so the decision then sees it as due)."""
    recheck = resync_seconds
    if any(row.active for row in rows):
        recheck = min(recheck, ACTIVE_RECHECK_SECONDS)
    next_time = parse_time(next_schedule_time)
    if next_time is not None:
        due = max((next_time - now).total_seconds(), 0.0) + 0.5
        if due <= recheck:
            return NextLook(due, due=True)
    return NextLook(recheck, due=False)

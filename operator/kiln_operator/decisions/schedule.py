"""Cron schedules: is a scheduled run due now, and when is the next one.

Pure functions of an injected ``now``, following the CronJob controller's rules: the
schedule counts from the last scheduled time (or the object's creation); when several
runs were missed (operator down, suspended) only the most recent one starts, and not at all
if it is older than ``startingDeadlineSeconds``. Concurrency with an active run is decided
by the policy: Allow starts another, Forbid skips, Replace stops the active run first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

ScheduledAction = Literal["start", "skip", "replace"]


class ScheduleError(ValueError):
    """The schedule or its time zone cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ScheduleDecision:
    """What the schedule asks for at ``now``."""

    due: dt.datetime | None
    """The scheduled time to act on now (the most recent one missed), if any."""
    too_late: bool
    """``due`` is older than the starting deadline: record it, start nothing."""
    next_time: dt.datetime
    """The next scheduled time after ``now``."""


def schedule_decision(
    schedule: str,
    time_zone: str | None,
    last: dt.datetime,
    now: dt.datetime,
    starting_deadline_seconds: int | None = None,
) -> ScheduleDecision:
    """Decide at ``now`` for a schedule last acted on (or created) at ``last``."""
    zone = _zone(time_zone)
    try:
        first = _tick(croniter(schedule, last.astimezone(zone)).get_next(dt.datetime))
        next_time = _tick(croniter(schedule, now.astimezone(zone)).get_next(dt.datetime))
        if first > now:
            return ScheduleDecision(due=None, too_late=False, next_time=next_time)
        # The most recent scheduled time at or before now: one second past now, step back.
        after_now = (now + dt.timedelta(seconds=1)).astimezone(zone)
        latest = _tick(croniter(schedule, after_now).get_prev(dt.datetime))
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as error:
        raise ScheduleError(f"schedule {schedule!r} is not a valid cron expression: {error}") from (
            None
        )
    too_late = (
        starting_deadline_seconds is not None
        and (now - latest).total_seconds() > starting_deadline_seconds
    )
    return ScheduleDecision(due=latest, too_late=too_late, next_time=next_time)


def validate_schedule(schedule: str, time_zone: str | None) -> None:
    """Raise :class:`ScheduleError` when the schedule or time zone is unusable."""
    _zone(time_zone)
    if not croniter.is_valid(schedule):
        raise ScheduleError(f"schedule {schedule!r} is not a valid cron expression")


def scheduled_action(policy: str, active_runs: int) -> ScheduledAction:
    """What a due scheduled run does given the concurrency policy and the active runs."""
    if active_runs == 0 or policy == "Allow":
        return "start"
    if policy == "Replace":
        return "replace"
    return "skip"


def _zone(time_zone: str | None) -> dt.tzinfo:
    if not time_zone:
        return dt.UTC
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"time zone {time_zone!r} is unknown; use an IANA name such as Europe/Berlin"
        ) from None


def _tick(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)

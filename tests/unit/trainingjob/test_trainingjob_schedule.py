"""Cron decisions with an injected clock: due times, missed runs after downtime, the starting
deadline, time zones, concurrency policies, and when to look again."""

from __future__ import annotations

import datetime as dt

import pytest

from kiln_operator.decisions.runs import RunRow
from kiln_operator.decisions.schedule import (
    ScheduleError,
    schedule_decision,
    scheduled_action,
    validate_schedule,
)
from kiln_operator.decisions.timing import NextLook, next_look


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("schedule", "last", "now", "due", "next_time"),
    [
        pytest.param("0 * * * *", "10:00", "10:30", None, "11:00", id="nothing-due-between-ticks"),
        pytest.param("0 * * * *", "10:00", "11:00", "11:00", "12:00", id="due-exactly-on-tick"),
        pytest.param("0 * * * *", "10:00", "11:00:20", "11:00", "12:00", id="due-just-after"),
        pytest.param(
            "0 * * * *", "06:00", "10:30", "10:00", "11:00", id="missed-runs-start-latest-only"
        ),
        pytest.param("*/15 * * * *", "10:00", "10:14:59", None, "10:15", id="not-yet"),
    ],
)
def test_schedule_decision(
    schedule: str, last: str, now: str, due: str | None, next_time: str
) -> None:
    decision = schedule_decision(schedule, None, at(f"2026-03-02T{last}"), at(f"2026-03-02T{now}"))
    assert decision.due == (at(f"2026-03-02T{due}") if due else None)
    assert decision.next_time == at(f"2026-03-02T{next_time}")
    assert decision.too_late is False


def test_a_run_missed_by_more_than_the_starting_deadline_is_too_late() -> None:
    decision = schedule_decision(
        "0 * * * *", None, at("2026-03-02T09:00"), at("2026-03-02T10:05"), 60
    )
    assert decision.due == at("2026-03-02T10:00")
    assert decision.too_late is True


def test_a_run_within_the_starting_deadline_still_starts() -> None:
    decision = schedule_decision(
        "0 * * * *", None, at("2026-03-02T09:00"), at("2026-03-02T10:00:30"), 60
    )
    assert decision.too_late is False


def test_the_schedule_is_read_in_its_time_zone() -> None:
    # 02:00 in Berlin (UTC+1 in March before DST) is 01:00 UTC.
    decision = schedule_decision(
        "0 2 * * *", "Europe/Berlin", at("2026-03-01T12:00"), at("2026-03-02T00:30")
    )
    assert decision.due is None
    assert decision.next_time == at("2026-03-02T01:00")


@pytest.mark.parametrize(
    ("schedule", "zone", "message"),
    [
        pytest.param("61 * * * *", None, "not a valid cron expression", id="bad-minute"),
        pytest.param("0 * * * *", "Mars/Olympus", "time zone 'Mars/Olympus' is unknown", id="tz"),
    ],
)
def test_unusable_schedules_are_explained(schedule: str, zone: str | None, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate_schedule(schedule, zone)


@pytest.mark.parametrize(
    ("policy", "active", "action"),
    [
        pytest.param("Forbid", 0, "start", id="forbid-idle"),
        pytest.param("Forbid", 1, "skip", id="forbid-busy"),
        pytest.param("Allow", 1, "start", id="allow-busy"),
        pytest.param("Replace", 1, "replace", id="replace-busy"),
        pytest.param("Replace", 0, "start", id="replace-idle"),
    ],
)
def test_concurrency_policy(policy: str, active: int, action: str) -> None:
    assert scheduled_action(policy, active) == action


@pytest.mark.parametrize(
    ("phase", "next_time", "look"),
    [
        pytest.param("Succeeded", None, NextLook(600.0, due=False), id="idle-resync-recheck"),
        pytest.param("Running", None, NextLook(30.0, due=False), id="active-run-recheck"),
        pytest.param("Running", "10:00:05", NextLook(5.5, due=True), id="schedule-due-first"),
        pytest.param("Succeeded", "11:00", NextLook(600.0, due=False), id="schedule-later"),
        pytest.param("Succeeded", "09:59", NextLook(0.5, due=True), id="schedule-overdue"),
    ],
)
def test_the_next_look_is_due_only_for_a_scheduled_time(
    phase: str, next_time: str | None, look: NextLook
) -> None:
    """A scheduled time is due (served before rechecks); the resync and an active run's
    recheck are only rechecks."""
    rows = [RunRow(name="iris-r1-x", number=1, trigger="spec", phase=phase)]
    scheduled = f"2026-03-02T{next_time}Z" if next_time else None
    assert next_look(600.0, rows, scheduled, at("2026-03-02T10:00")) == look

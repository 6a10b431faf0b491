"""Drift read from model servers: parsing a real server's gauges, the rows-weighted mean over
pods, status with hysteresis (no write for a steady reading), and when a drifted service
asks for a run (sustained, cooled down, one id per due moment)."""

from __future__ import annotations

import datetime as dt

import pytest

from kiln_operator.decisions.drift import (
    MIN_ROWS,
    PodDrift,
    Reading,
    aggregate,
    drift_status,
    parse_drift,
    retrain_request,
)
from kiln_server.drift import DriftReport
from kiln_server.metrics import ServerMetrics

NOW = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.UTC)


def exposition(overall_features: dict[str, float], rows: int, version: str = "1") -> str:
    metrics = ServerMetrics("iris", version, "cpu")
    report = DriftReport(per_feature=overall_features, rows=rows)
    metrics.watch_drift(lambda: report)
    return metrics.exposition().decode()


def test_a_servers_drift_gauges_are_read_for_its_model_and_version_only() -> None:
    text = exposition({"x0": 0.5, "x1": 0.1}, 400)
    pod = parse_drift(text, "iris", "1")
    assert pod.features == {"x0": 0.5, "x1": 0.1}
    assert pod.overall == pytest.approx(0.3)
    assert pod.rows == 400
    other = parse_drift(text, "iris", "2")
    assert (other.overall, other.rows, dict(other.features)) == (None, 0, {})


def test_pods_are_weighted_by_the_rows_they_observed() -> None:
    reading = aggregate(
        [
            PodDrift(0.5, {"x": 0.5}, 300),
            PodDrift(0.1, {"x": 0.1}, 100),
            PodDrift(None, {}, 0),
        ]
    )
    assert reading is not None
    assert reading.psi == pytest.approx(0.4)
    assert reading.features["x"] == pytest.approx(0.4)
    assert (reading.rows, reading.pods) == (400, 2)


def test_too_few_rows_are_no_reading() -> None:
    assert aggregate([PodDrift(2.0, {"x": 2.0}, MIN_ROWS - 1)]) is None


def reading(psi: float, rows: int = 1000) -> Reading:
    return Reading(psi, {"a": psi * 2, "b": psi, "c": 0.0}, rows, 1)


def test_crossing_the_threshold_marks_drifted_since_now() -> None:
    status = drift_status({}, reading(0.3), 0.2, NOW)
    assert status["drifted"] is True
    assert status["since"] == "2026-12-07T12:00:00Z"
    assert status["features"] == {"a": 0.6, "b": 0.3, "c": 0.0}
    assert status["rows"] == 1000


@pytest.mark.parametrize(
    ("before", "psi", "drifted", "rewritten"),
    [
        pytest.param({"drifted": False, "psi": 0.05}, 0.07, False, False, id="small-move-below"),
        pytest.param({"drifted": False, "psi": 0.05}, 0.12, False, True, id="large-move-below"),
        pytest.param(
            {"drifted": True, "psi": 0.3, "since": "t"}, 0.18, True, True, id="in-band-stays"
        ),
        pytest.param(
            {"drifted": True, "psi": 0.3, "since": "t"}, 0.31, True, False, id="steady-drifted"
        ),
        pytest.param({"drifted": True, "psi": 0.3, "since": "t"}, 0.15, False, True, id="released"),
        pytest.param({"drifted": False, "psi": 0.18}, 0.21, True, True, id="flips-on-small-move"),
    ],
)
def test_status_is_rewritten_only_when_drifted_flips_or_the_psi_moves(
    before: dict[str, object], psi: float, drifted: bool, rewritten: bool
) -> None:
    after = drift_status(before, reading(psi), 0.2, NOW)
    assert after["drifted"] is drifted
    assert (after != before) is rewritten
    if drifted and before.get("drifted"):
        assert after["since"] == "t", "a drift that goes on keeps its start"
    if not drifted:
        assert "since" not in after


def test_no_reading_keeps_the_status() -> None:
    before = {"drifted": True, "psi": 0.4, "since": "t", "lastRetrain": "r"}
    assert drift_status(before, None, 0.2, NOW) == before


def drifted(since_seconds_ago: float, **extra: object) -> dict[str, object]:
    since = (NOW - dt.timedelta(seconds=since_seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"drifted": True, "psi": 0.4, "rows": 1000, "since": since, **extra}


def test_a_drift_shorter_than_sustained_for_asks_nothing_yet() -> None:
    request, wait = retrain_request(drifted(30), 120, 3600, "abcdef0123", "kis ml/iris", NOW)
    assert request is None
    assert wait == pytest.approx(90.5)


def test_a_sustained_drift_asks_once_with_an_id_every_replica_computes_alike() -> None:
    status = drifted(200)
    first, _ = retrain_request(status, 120, 3600, "abcdef0123", "kis ml/iris", NOW)
    again, _ = retrain_request(
        status, 120, 3600, "abcdef0123", "kis ml/iris", NOW + dt.timedelta(seconds=7)
    )
    assert first is not None
    assert again == first
    assert first.id.startswith("drift-abcdef01-")
    assert "PSI 0.4 over 1000 rows" in first.message
    recorded = {**status, "lastRetrain": "2026-12-07T12:00:00Z", "lastRetrainRequest": first.id}
    assert retrain_request(recorded, 120, 3600, "abcdef0123", "kis ml/iris", NOW)[0] is None


def test_within_the_cooldown_no_second_request_after_it_a_new_one() -> None:
    last = (NOW - dt.timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = drifted(5000, lastRetrain=last, lastRetrainRequest="drift-abcdef01-1")
    held, wait = retrain_request(status, 120, 3600, "abcdef0123", "kis ml/iris", NOW)
    assert held is None
    assert wait == pytest.approx(3000.5)
    later, _ = retrain_request(status, 120, 3600, "abcdef0123", "kis", NOW + dt.timedelta(hours=1))
    assert later is not None
    assert later.id != "drift-abcdef01-1"


def test_not_drifted_asks_nothing() -> None:
    assert retrain_request({"drifted": False, "psi": 0.01}, 0, 0, "u", "d", NOW) == (None, None)

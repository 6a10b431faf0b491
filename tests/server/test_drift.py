"""Drift: baseline.json round-trips, PSI stays near zero for training-like inputs and rises
when inputs shift, and the server exports it per feature and overall."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kiln_server.baseline import (
    BaselineError,
    compute_baseline,
    load_baseline,
    parse_baseline,
    write_baseline,
)
from kiln_server.drift import DriftMonitor, population_stability_index
from tests.server import models
from tests.server.server_process import ServerProcess, metric_value

TRAINING = np.random.default_rng(0).standard_normal((5000, 8))


def test_write_baseline_produces_equal_share_bins_that_load_back(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "baseline.json")
    write_baseline(TRAINING, path, [f"x{i}" for i in range(8)], bins=10, input_name="input")
    with open(path) as source:
        document = json.load(source)
    assert document["format"] == "kiln.baseline/v1"
    assert document["input"] == "input"
    first = document["features"][0]
    assert first["name"] == "x0"
    assert first["column"] == 0
    assert len(first["edges"]) == 9
    np.testing.assert_allclose(first["fractions"], [0.1] * 10, atol=0.002)
    baseline = load_baseline(path)
    assert [f.name for f in baseline.features] == [f"x{i}" for i in range(8)]


def test_discrete_features_get_merged_edges() -> None:
    document = compute_baseline(np.array([[0.0], [0.0], [1.0], [1.0]] * 10), bins=10)
    feature = document["features"][0]
    assert feature["edges"] == sorted(set(feature["edges"]))
    assert sum(feature["fractions"]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"features": []}, "non-empty list"),
        ({"format": "other", "features": [{}]}, "unknown baseline format"),
        ({"features": [{"edges": [0.0], "fractions": [1.0]}]}, "1 edges need 2 fractions"),
        ({"features": [{"edges": [1.0, 0.0], "fractions": [0.3, 0.3, 0.4]}]}, "increasing"),
        ({"features": [{"edges": [0.0], "fractions": [0.3, 0.3]}]}, "sum to 1"),
    ],
)
def test_malformed_baselines_are_rejected_precisely(
    tmp_path: object, document: object, fragment: str
) -> None:
    path = os.path.join(str(tmp_path), "baseline.json")
    with open(path, "w") as out:
        json.dump(document, out)
    with pytest.raises(BaselineError, match=fragment):
        load_baseline(path)


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift() -> None:
    expected = np.full(10, 0.1)
    assert population_stability_index(expected, np.full(10, 50)) == pytest.approx(0.0)
    mild = population_stability_index(expected, np.array([5, 5, 5, 5, 5, 5, 5, 5, 10, 10]))
    strong = population_stability_index(expected, np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 60]))
    assert 0 < mild < strong


def monitor(window: int = 1000) -> DriftMonitor:
    baseline = parse_baseline(compute_baseline(TRAINING, input_name="input"))
    return DriftMonitor(baseline, "input", 8, window)


@pytest.mark.parametrize(
    ("expected", "counts", "psi"),
    [
        # shares .75/.25 against .5/.5: .25 ln 1.5 + .25 ln 2
        ([0.5, 0.5], [75, 25], 0.2746530721670274),
        # shares .1/.2/.3/.4 against .25 each: .15 ln(1/.4) + .05 ln(1/.8) + .05 ln 1.2 + .15 ln 1.6
        ([0.25] * 4, [10, 20, 30, 40], 0.22821740957339182),
        # an empty bin is floored at 1e-4: .5 ln 2 + (1e-4 - .5) ln(1e-4 / .5)
        ([0.5, 0.5], [100, 0], 4.60431846666895),
        ([0.2, 0.3, 0.5], [20, 30, 50], 0.0),
        ([0.5, 0.5], [0, 0], 0.0),  # no live rows yet: no drift
    ],
    ids=["two-bins", "four-bins", "empty-bin", "identical", "no-rows"],
)
def test_psi_matches_the_hand_computed_value(
    expected: list[float], counts: list[int], psi: float
) -> None:
    assert population_stability_index(np.array(expected), np.array(counts)) == pytest.approx(psi)


def test_the_report_bins_each_feature_by_its_column_and_averages_them_overall() -> None:
    baseline = parse_baseline(
        {
            "format": "kiln.baseline/v1",
            "features": [
                {"name": "a", "column": 0, "edges": [0.0], "fractions": [0.5, 0.5]},
                {"name": "b", "column": 2, "edges": [0.0], "fractions": [0.5, 0.5]},
            ],
        }
    )
    monitor = DriftMonitor(baseline, "input", columns=3, window_rows=100)
    column_a = np.where(np.arange(100) < 75, -1.0, 1.0)  # 75 below the edge, 25 above
    column_b = np.where(np.arange(100) < 50, -1.0, 0.0)  # 0.0 sits in the upper bin
    monitor.observe(np.stack([column_a, np.full(100, 9.0), column_b], axis=1))
    report = monitor.report()
    assert report.rows == 100
    assert report.per_feature == {
        "a": pytest.approx(0.2746530721670274),
        "b": pytest.approx(0.0),
    }
    assert report.overall == pytest.approx(0.2746530721670274 / 2)


def test_rows_wider_than_the_baseline_are_watched_on_its_columns_and_narrower_are_skipped() -> None:
    """A dynamic feature dimension lets requests differ in width from the baseline."""
    baseline = parse_baseline(compute_baseline(TRAINING[:, :3]))
    monitor = DriftMonitor(baseline, "input", columns=3, window_rows=100)
    wide = np.hstack([TRAINING[:50, :3], np.full((50, 2), 1e6)])
    monitor.observe(wide)
    monitor.observe(TRAINING[:50, :2])
    report = monitor.report()
    assert report.rows == 50
    assert report.overall < 0.3  # the far-off extra columns are not part of any feature


def test_training_like_rows_stay_near_zero_and_shifted_rows_rise() -> None:
    fresh = np.random.default_rng(1)
    drift = monitor()
    drift.observe(fresh.standard_normal((1000, 8)))
    steady = drift.report()
    assert steady.rows == 1000
    assert steady.overall < 0.05
    drift.observe(fresh.standard_normal((1000, 8)) + np.array([1.5] + [0.0] * 7))
    shifted = drift.report()
    assert shifted.per_feature["f0"] > 0.5
    assert max(v for k, v in shifted.per_feature.items() if k != "f0") < 0.05


def test_the_window_slides_so_old_rows_age_out() -> None:
    fresh = np.random.default_rng(2)
    drift = monitor(window=500)
    drift.observe(fresh.standard_normal((500, 8)) + 3.0)
    assert drift.report().overall > 1.0
    for _ in range(5):
        drift.observe(fresh.standard_normal((130, 8)))  # wraps around the ring buffer
    assert drift.report().rows == 500
    assert drift.report().overall < 0.1


@pytest.mark.server
def test_the_server_exports_drift_per_feature_and_overall(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = str(tmp_path_factory.mktemp("drifting"))
    models.tabular(directory)
    write_baseline(TRAINING, os.path.join(directory, "baseline.json"))
    server = ServerProcess(directory, "tabular", "--drift-window", "400")
    try:
        server.wait_ready()
        fresh = np.random.default_rng(3)

        def send(x: np.ndarray) -> None:
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                "data": x.astype(np.float32).reshape(-1).tolist()}]}  # fmt: skip
            assert server.infer(body).status == 200

        for _ in range(4):
            send(fresh.standard_normal((100, 8)))
        steady = server.metrics()
        assert metric_value(steady, "kiln_drift_window_rows") == 400
        assert metric_value(steady, "kiln_drift_psi_overall") < 0.1  # type: ignore[operator]
        for _ in range(4):
            send(fresh.standard_normal((100, 8)) * 0.2 + 2.0)
        shifted = server.metrics()
        assert metric_value(shifted, "kiln_drift_psi_overall") > 1.0  # type: ignore[operator]
        assert metric_value(shifted, "kiln_drift_psi", feature="f3") > 1.0  # type: ignore[operator]
    finally:
        server.stop()


@pytest.mark.server
def test_a_baseline_that_does_not_fit_the_model_keeps_it_unready(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = str(tmp_path_factory.mktemp("misfit"))
    models.tabular(directory)
    write_baseline(
        np.zeros((10, 12)) + np.arange(10)[:, None], os.path.join(directory, "baseline.json")
    )
    server = ServerProcess(directory, "tabular")
    try:
        reply = server.wait_unready_reason()
        assert reply.status == 503
        assert "input 'input' has 8 columns" in reply.json()["error"]
    finally:
        server.stop()

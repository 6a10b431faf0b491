"""The chart's alerts, judged by the real promtool (Prometheus 2.42, Debian's build).

Covers: the rendered PrometheusRule's groups pass ``promtool check rules``; each alert
fires, in ``promtool test rules``, on the series Kiln's metrics take when its condition
holds (labels as the model server, the operator and the chart's kube-state-metrics
configuration export them, plus the scrape's target labels), waits out its ``for`` as the
values set it, and stays silent just below its threshold or for a condition it does not
cover; an alert's summary and description render with the firing series' labels.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import render
from tests.support.prometheus import promtool, rules_file

#: Thresholds away from the defaults, so the test proves the rules follow the values.
VALUES = {
    "monitoring": {
        "prometheusRule": {
            "enabled": True,
            "canaryErrorRatio": 0.1,
            "driftThreshold": 0.3,
            "driftFor": "10m",
            "trainingFailingFor": "5m",
        }
    }
}
SERVICE = {"namespace": "team-a", "inferenceservice": "iris"}


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def _server(version: str, code: str, pod: str) -> dict[str, str]:
    """A model server's labels on kiln_inference_requests_total, with the PodMonitor's."""
    return {**SERVICE, "model": "iris", "version": version, "code": code, "pod": pod}


def _alert(labels: dict[str, str], summary: str) -> dict[str, Any]:
    """An expected alert of a rule whose only annotation is its summary."""
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (rule,) = [d for d in render(VALUES) if d["kind"] == "PrometheusRule"]
    return rules_file(rule, tmp_path_factory.mktemp("rules"))


def _promtool_test(
    rules: Path, series: list[dict[str, str]], checks: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of one scenario: ``series`` sampled every minute, then the
    alerts each of ``checks`` expects at its time."""
    scenario = {"interval": "1m", "input_series": series, "alert_rule_test": checks}
    spec = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [scenario]}
    test_file = rules.parent / "kiln.test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return promtool("test", "rules", test_file.name, cwd=rules.parent)


def _test_rules(rules: Path, series: list[dict[str, str]], checks: list[dict[str, Any]]) -> None:
    result = _promtool_test(rules, series, checks)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def _silent(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _firing(alert: str, at: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": list(alerts)}


def test_the_rendered_rules_pass_promtool_check(rules: Path) -> None:
    result = promtool("check", "rules", rules.name, cwd=rules.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_promtool_check_refuses_a_broken_rule(rules: Path) -> None:
    """The check can fail: one misspelt function in one expression is refused."""
    broken = rules.parent / "broken.rules.yaml"
    document = yaml.safe_load(rules.read_text())
    document["groups"][0]["rules"][0]["expr"] = "sum(rat(kiln_inference_requests_total[5m]))"
    broken.write_text(yaml.safe_dump(document))
    result = promtool("check", "rules", broken.name, cwd=rules.parent)
    assert result.returncode != 0
    assert "unknown function with name" in result.stdout + result.stderr


def test_an_aborted_canary_alerts_at_once_and_another_degraded_reason_does_not(
    rules: Path,
) -> None:
    condition = "kiln_inferenceservice_condition"
    aborted = {**SERVICE, "type": "Degraded", "reason": "RolloutAborted"}
    missing = {**SERVICE, "inferenceservice": "other", "type": "Degraded"}
    fired = {
        "exp_labels": {**aborted, "severity": "warning"},
        "exp_annotations": {
            "summary": "InferenceService team-a/iris: the canary was rolled back",
            "description": "The operator's analysis aborted the rollout; the stable version "
            "keeps serving. See `kubectl describe kis iris -n team-a` (status.history).",
        },
    }
    _test_rules(
        rules,
        [
            _series(condition, aborted, "0 1x5"),
            _series(condition, {**missing, "reason": "VersionNotFound"}, "1x5"),
        ],
        [_silent("KilnCanaryAborted", "0m"), _firing("KilnCanaryAborted", "1m", fired)],
    )


def test_a_canary_answering_errors_above_the_ratio_alerts_after_two_minutes(
    rules: Path,
) -> None:
    """Version 3 is the canary: 20 errors in 110 requests a minute (18%, above 10%) on two
    pods summed, from the first rate (1m), so the alert is pending at 2m and fires at 4m.
    The stable version 2 fails as often but is no canary; canary version 4 of another
    service fails 5% of the time, below the ratio."""
    info = "kiln_inferenceservice_canary_info"
    requests = "kiln_inference_requests_total"
    other = {**SERVICE, "inferenceservice": "wine"}
    fired = {
        "exp_labels": {**SERVICE, "version": "3", "severity": "warning"},
        "exp_annotations": {
            "summary": "Canary version 3 of team-a/iris answers 18.18% errors",
            "description": "More than 0.1 of the canary's inference requests fail with 5xx.",
        },
    }
    _test_rules(
        rules,
        [
            _series(requests, _server("3", "200", "iris-v3-a"), "0+50x20"),
            _series(requests, _server("3", "200", "iris-v3-b"), "0+40x20"),
            _series(requests, _server("3", "500", "iris-v3-a"), "0+20x20"),
            _series(requests, _server("2", "200", "iris-v2-a"), "0+90x20"),
            _series(requests, _server("2", "503", "iris-v2-a"), "0+20x20"),
            _series(info, {**SERVICE, "version": "3", "step": "1"}, "1x20"),
            _series(requests, {**_server("4", "200", "wine-v4"), **other}, "0+95x20"),
            _series(requests, {**_server("4", "500", "wine-v4"), **other}, "0+5x20"),
            _series(info, {**other, "version": "4", "step": "0"}, "1x20"),
        ],
        [
            _silent("KilnCanaryErrorRateHigh", "2m"),
            _firing("KilnCanaryErrorRateHigh", "4m", fired),
        ],
    )


def test_drift_above_the_threshold_alerts_once_it_lasts_the_configured_time(
    rules: Path,
) -> None:
    """Two pods of iris report PSI 0.5 and 0.2 (the max, 0.5, is above 0.3); wine stays at
    0.25, under it."""
    psi = "kiln_drift_psi_overall"
    pod = {**SERVICE, "model": "iris", "version": "2"}
    fired = {
        "exp_labels": {**SERVICE, "severity": "info"},
        "exp_annotations": {
            "summary": "team-a/iris: live inputs drifted from the training data (PSI 0.50)",
            "description": "The mean PSI of the model servers' inputs has stayed above 0.3 "
            "for 10m; a retraining run may be due (spec.monitoring.retrain).",
        },
    }
    _test_rules(
        rules,
        [
            _series(psi, {**pod, "pod": "iris-v2-a"}, "0.1 0.5x30"),
            _series(psi, {**pod, "pod": "iris-v2-b"}, "0.1 0.2x30"),
            _series(psi, {**pod, "inferenceservice": "wine", "pod": "w"}, "0.25x30"),
        ],
        [_silent("KilnDriftSustained", "10m"), _firing("KilnDriftSustained", "12m", fired)],
    )


def test_a_failed_or_stuck_training_job_alerts_after_its_time(rules: Path) -> None:
    """nightly's latest run failed (Succeeded False) and stays failed past 5m; weekly cannot
    pull its image for 15m; hourly succeeded and daily is only waiting for its first run."""
    condition = "kiln_trainingjob_condition"
    job = {"namespace": "team-a"}
    failed = {
        **job, "trainingjob": "nightly", "type": "Succeeded", "reason": "BackoffLimitExceeded"
    }  # fmt: skip
    stuck = {**job, "trainingjob": "weekly", "type": "Ready", "reason": "ImagePullBackOff"}
    failing = {
        "exp_labels": {**failed, "severity": "warning"},
        "exp_annotations": {
            "summary": "TrainingJob team-a/nightly: its latest run failed (BackoffLimitExceeded)",
            "description": "See `kubectl get tj nightly -n team-a -o yaml` (status.runs).",
        },
    }
    _test_rules(
        rules,
        [
            _series(condition, failed, "1 0x30"),
            _series(condition, stuck, "0x30"),
            _series(condition, {**failed, "trainingjob": "hourly"}, "1x30"),
            _series(
                condition, {**stuck, "trainingjob": "daily", "reason": "NoRunFinished"}, "0x30"
            ),
        ],
        [
            _silent("KilnTrainingJobFailing", "4m"),
            _firing("KilnTrainingJobFailing", "6m", failing),
            _silent("KilnTrainingJobStuck", "14m"),
            _firing(
                "KilnTrainingJobStuck",
                "16m",
                _alert(
                    {**stuck, "severity": "warning"},
                    "TrainingJob team-a/weekly: a run cannot start (ImagePullBackOff)",
                ),
            ),
        ],
    )


def test_reconcile_errors_that_last_alert_per_kind(rules: Path) -> None:
    reconciles = "kiln_operator_reconciles_total"
    pod = {"namespace": "kiln-system", "pod": "kiln-operator-0"}
    _test_rules(
        rules,
        [
            _series(reconciles, {**pod, "kind": "TrainingJob", "result": "error"}, "0+3x40"),
            _series(reconciles, {**pod, "kind": "TrainingJob", "result": "ok"}, "0+9x40"),
            _series(reconciles, {**pod, "kind": "ModelVersion", "result": "ok"}, "0+9x40"),
            _series(reconciles, {**pod, "kind": "ModelVersion", "result": "error"}, "0x40"),
        ],
        [
            _silent("KilnOperatorReconcileErrors", "14m"),
            _firing(
                "KilnOperatorReconcileErrors",
                "17m",
                _alert(
                    {"kind": "TrainingJob", "severity": "warning"},
                    "kiln-operator: reconciles of TrainingJob keep failing",
                ),
            ),
        ],
    )


def test_a_wrong_expectation_fails_promtool_test(rules: Path) -> None:
    """The harness can fail: expecting the drift alert for the service under the
    threshold is refused by promtool."""
    result = _promtool_test(
        rules,
        [_series("kiln_drift_psi_overall", {**SERVICE, "pod": "p"}, "0.25x30")],
        [_firing("KilnDriftSustained", "20m", _alert({**SERVICE, "severity": "info"}, "any"))],
    )
    assert result.returncode != 0
    assert "KilnDriftSustained" in result.stdout + result.stderr

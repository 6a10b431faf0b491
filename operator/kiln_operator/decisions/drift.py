"""Input drift of a served model, read from its model servers, and when it asks for a run.

Each ``kiln-server`` computes the population stability index of its recent input rows
against the training baseline and exports it (``kiln_drift_psi{feature}``,
``kiln_drift_psi_overall``, ``kiln_drift_window_rows``). :func:`parse_drift` reads one pod's
scrape; :func:`aggregate` combines the pods, each weighted by the rows it observed.

:func:`drift_status` turns a reading into ``status.drift`` with hysteresis, so that a
steady service costs no writes: inputs become drifted above the threshold and stop being
drifted only below :data:`RELEASE_FRACTION` of it; the status is rewritten only when that
flips or the PSI moves by :data:`PSI_STEP` or more. :func:`retrain_request` decides whether
a drifted service asks its TrainingJob for a run: drifted for ``sustainedFor`` (one noisy
reading asks nothing) and the last request at least ``cooldown`` ago. The request id is
derived from the InferenceService and the moment the request became due, so every replica
and every restart asks with the same id, and the TrainingJob runs it once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from kiln_operator.decisions.analysis import ScrapeError
from kiln_operator.decisions.triggers import format_time, parse_time
from kiln_server import contract

#: Inputs stay drifted until the PSI falls below this share of the threshold.
RELEASE_FRACTION: Final = 0.8
#: A PSI change smaller than this is not worth a status write.
PSI_STEP: Final = 0.05
#: Fewer live rows (over all pods) than this say nothing yet.
MIN_ROWS: Final = 100
#: Features listed in ``status.drift.features``.
TOP_FEATURES: Final = 5


@dataclass(frozen=True)
class PodDrift:
    """One pod's drift gauges (``overall`` None: the server has no baseline)."""

    overall: float | None
    features: Mapping[str, float]
    rows: int


@dataclass(frozen=True)
class Reading:
    """Drift over all serving pods."""

    psi: float
    features: Mapping[str, float]
    rows: int
    pods: int


def parse_drift(text: str, model: str, version: str) -> PodDrift:
    """The drift gauges of ``model``/``version`` in one ``/metrics`` exposition."""
    overall: float | None = None
    rows = 0
    features: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("model") != model or labels.get("version") != version:
                    continue
                value = float(sample.value)
                if not math.isfinite(value):
                    continue
                if sample.name == contract.DRIFT_PSI_OVERALL:
                    overall = value
                elif sample.name == contract.DRIFT_WINDOW_ROWS:
                    rows = int(value)
                elif sample.name == contract.DRIFT_PSI and "feature" in labels:
                    features[labels["feature"]] = value
    except ValueError as error:
        raise ScrapeError(f"not a metrics exposition: {error}") from error
    return PodDrift(overall, features, rows)


def aggregate(pods: Sequence[PodDrift]) -> Reading | None:
    """The rows-weighted mean over pods that have a baseline and rows; None when they
    observed fewer than :data:`MIN_ROWS` rows in all."""
    usable = [pod for pod in pods if pod.overall is not None and pod.rows > 0]
    rows = sum(pod.rows for pod in usable)
    if rows < MIN_ROWS:
        return None
    psi = sum((pod.overall or 0.0) * pod.rows for pod in usable) / rows
    names = sorted({name for pod in usable for name in pod.features})
    features = {
        name: sum(pod.features.get(name, 0.0) * pod.rows for pod in usable) / rows for name in names
    }
    return Reading(psi, features, rows, len(usable))


def drift_status(
    previous: Mapping[str, Any] | None, reading: Reading | None, threshold: float, now: dt.datetime
) -> dict[str, Any]:
    """``status.drift`` after ``reading``: the previous one unchanged unless drifted flips
    or the PSI moved by :data:`PSI_STEP` (so an unchanged world writes nothing)."""
    before = dict(previous or {})
    if reading is None:
        return before
    was_drifted = bool(before.get("drifted"))
    drifted = reading.psi > threshold * RELEASE_FRACTION if was_drifted else reading.psi > threshold
    old_psi = before.get("psi")
    moved = not isinstance(old_psi, int | float) or abs(reading.psi - float(old_psi)) >= PSI_STEP
    if drifted == was_drifted and not moved and "drifted" in before:
        return before
    top = sorted(reading.features.items(), key=lambda item: (-item[1], item[0]))[:TOP_FEATURES]
    after: dict[str, Any] = {
        **{k: v for k, v in before.items() if k in ("lastRetrain", "lastRetrainRequest")},
        "psi": round(reading.psi, 4),
        "features": {name: round(value, 4) for name, value in top},
        "rows": reading.rows,
        "drifted": drifted,
        "lastChecked": format_time(now),
    }
    if drifted:
        after["since"] = before.get("since") if was_drifted else format_time(now)
    return after


@dataclass(frozen=True)
class RetrainRequest:
    """A run to ask the TrainingJob for: its id and the message carrying the reading."""

    id: str
    message: str


def retrain_request(
    drift: Mapping[str, Any],
    sustained_seconds: float,
    cooldown_seconds: float,
    isvc_uid: str,
    describe: str,
    now: dt.datetime,
) -> tuple[RetrainRequest | None, float | None]:
    """The run request ``drift`` calls for now (or None), and when to look again."""
    since = parse_time(drift.get("since"))
    if not drift.get("drifted") or since is None:
        return None, None
    due = since + dt.timedelta(seconds=sustained_seconds)
    last = parse_time(drift.get("lastRetrain"))
    if last is not None:
        due = max(due, last + dt.timedelta(seconds=cooldown_seconds))
    if now < due:
        return None, (due - now).total_seconds() + 0.5
    # Named after the moment it became due, which every replica computes alike from status:
    # a replica or a restart that asks again asks with the same id, and runs it once.
    request_id = f"drift-{isvc_uid[:8]}-{int(due.timestamp())}"
    if drift.get("lastRetrainRequest") == request_id:
        return None, None
    features = ", ".join(f"{k}={v:g}" for k, v in (drift.get("features") or {}).items())
    message = (
        f"{describe}: input PSI {drift.get('psi')} over {drift.get('rows')} rows, drifted since "
        f"{drift.get('since')}" + (f" (most drifted: {features})" if features else "")
    )
    return RetrainRequest(request_id, message[:1024]), None

"""An InferenceService's rollout as a pure state machine over its status.

Everything a rollout needs to resume lives in ``status``: the stable version
(``serving``), the canary (``canary``: version, step, when the step began, the analyses so
far and each canary pod's counters at the last one), an aborted version and the generation
it was aborted under, and ``history``. :func:`plan_rollout` reads that, the version the
spec resolves to, what the Deployments report and (when one was due) a fresh analysis,
and returns the next status, the Deployments to apply (version, track, replicas), the
ones to delete, the traffic weights and the events to post. The operator can be killed
between any two writes: the next reconcile reads the same status and decides the same.

The states:

- nothing serving: the desired version is deployed as stable; it serves once available;
- serving, nothing desired anew: steady (no write);
- a new version desired: ``Immediate`` deploys it at full size and switches once it is
  available; ``Canary`` walks ``steps``. A step begins when the canary Deployment is
  available; every ``analysis.interval`` the canary's metrics since the previous analysis
  are judged. After the step's duration, a Passed last analysis advances the step (the
  last step promotes); an Inconclusive one holds (too little traffic is not a failure).
  ``failureLimit`` consecutive Failed analyses abort: the canary is deleted at once, the
  stable version is untouched, and the version is not tried again until the spec
  changes or another version is desired;
- promotion relabels: the canary's Deployment becomes the stable track (Service
  selectors follow the version, pods do not restart) and the old stable Deployment is
  deleted after :data:`DRAIN_SECONDS`;
- ``paused`` holds the step (analyses go on, so a failing canary is still aborted).

Traffic without a mesh is the replica ratio behind ``<name>``: the stable track keeps its
size and the canary gets enough replicas to approach the step's weight; status reports
the weight that ratio gives. With Gateway API the HTTPRoute carries the exact weight.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from kiln_operator.api.inferenceservice import InferenceServiceSpec
from kiln_operator.conditions import Verdict
from kiln_operator.decisions.analysis import (
    Judgement,
    PodSample,
    consecutive_failures,
    duration_seconds,
)
from kiln_operator.decisions.serving import Resolution, Target
from kiln_operator.decisions.status import Notice
from kiln_operator.decisions.triggers import format_time, parse_time

Obj = dict[str, Any]
TrackName = Literal["stable", "canary"]

#: How long the previous stable version keeps serving after a promotion, so that
#: connections to it end before its pods go.
DRAIN_SECONDS: Final = 10.0
#: Entries kept in ``status.history`` and ``status.canary.analysis``.
MAX_HISTORY: Final = 50
MAX_ANALYSES: Final = 50


@dataclass(frozen=True)
class DeploymentState:
    """What one served version's Deployment reports."""

    version: int
    available: bool
    replicas: int = 0
    #: Why it will not become available (the Deployment's ProgressDeadlineExceeded).
    failed: str | None = None


@dataclass(frozen=True)
class Observation:
    """One analysis of the canary: the verdict and the pods' counters it was taken at."""

    judgement: Judgement
    requests: int
    error_rate: float
    p99_seconds: float | None
    samples: Mapping[str, PodSample]


@dataclass(frozen=True)
class Track:
    """A Deployment to apply: which version, which track, how many replicas (None: an
    HPA decides)."""

    target: Target
    track: TrackName
    replicas: int | None
    #: An HPA between these bounds (stable track with autoscaling only).
    autoscale: tuple[int, int] | None = None


@dataclass(frozen=True)
class Plan:
    status: Obj
    tracks: tuple[Track, ...]
    retire: tuple[int, ...]
    #: (stable, canary) route weights.
    weights: tuple[int, int]
    conditions: tuple[Verdict, ...]
    notices: tuple[Notice, ...]
    requeue_after: float | None


@dataclass
class _State:
    """The rollout fields of status while a plan is worked out."""

    serving: Obj | None
    canary: Obj | None
    aborted_version: int | None
    aborted_generation: int | None
    history: list[Obj]
    notices: list[Notice] = field(default_factory=list)
    progressing: Verdict | None = None
    degraded: Verdict | None = None

    def record(self, event: str, version: int, reason: str, now: str) -> None:
        self.history.append({"time": now, "version": version, "event": event, "reason": reason})
        del self.history[:-MAX_HISTORY]


def analysis_due(status: Mapping[str, Any], spec: InferenceServiceSpec, now: dt.datetime) -> bool:
    """Whether the canary in ``status`` is due for an analysis at ``now``."""
    canary = status.get("canary")
    if not canary or spec.rollout.strategy != "Canary":
        return False
    started = parse_time(canary.get("stepStartedAt"))
    if started is None:
        return False
    return now >= _last_analysis_time(canary, started) + _interval(spec)


def plan_rollout(
    spec: InferenceServiceSpec,
    generation: int,
    status: Mapping[str, Any],
    resolution: Resolution,
    deployments: Mapping[int, DeploymentState],
    observation: Observation | None,
    now: dt.datetime,
) -> Plan:
    """The next rollout status and the children it needs (see the module docstring)."""
    stamp = format_time(now)
    state = _State(
        serving=_copy(status.get("serving")),
        canary=_copy(status.get("canary")),
        aborted_version=status.get("abortedVersion"),
        aborted_generation=status.get("abortedGeneration"),
        history=[dict(h) for h in status.get("history") or []],
    )
    desired = resolution.target
    if state.aborted_version is not None and (
        state.aborted_generation != generation
        or (desired is not None and desired.version != state.aborted_version)
    ):
        state.aborted_version = state.aborted_generation = None

    requeue: list[float] = []
    if state.serving is None:
        tracks = _first_deploy(spec, state, desired, deployments, stamp)
    else:
        tracks = _roll(spec, generation, state, desired, deployments, observation, now, requeue)

    if resolution.target is None and resolution.reason:
        state.degraded = Verdict("Degraded", "True", resolution.reason, resolution.message)
    retire = _retire(state, tracks, deployments, now, requeue)
    canary_weight = int(state.canary["weight"]) if state.canary else 0
    conditions = _conditions(spec, state, deployments, resolution)
    if state.canary and spec.rollout.strategy == "Canary":
        requeue.append(_next_canary_check(spec, state.canary, now))
    return Plan(
        status=_status_fields(state),
        tracks=tracks,
        retire=retire,
        weights=(100 - canary_weight, canary_weight),
        conditions=conditions,
        notices=tuple(state.notices),
        requeue_after=min(requeue) if requeue else None,
    )


# -- the states ------------------------------------------------------------------------------


def _first_deploy(
    spec: InferenceServiceSpec,
    state: _State,
    desired: Target | None,
    deployments: Mapping[int, DeploymentState],
    stamp: str,
) -> tuple[Track, ...]:
    state.canary = None
    if desired is None:
        return ()
    track = _stable_track(spec, desired, deployments)
    deployment = deployments.get(desired.version)
    if deployment is not None and deployment.available:
        state.serving = _serving(desired, stamp)
        state.record("Deployed", desired.version, f"{desired.described} serves", stamp)
        state.notices.append(
            Notice(
                "Normal", "Deployed", f"version {desired.version} ({desired.model_version}) serves"
            )
        )
        return (track,)
    if deployment is not None and deployment.failed:
        state.degraded = Verdict("Degraded", "True", "DeploymentFailed", deployment.failed)
    state.progressing = Verdict(
        "Progressing", "True", "Deploying", f"deploying version {desired.version}"
    )
    return (track,)


def _roll(
    spec: InferenceServiceSpec,
    generation: int,
    state: _State,
    desired: Target | None,
    deployments: Mapping[int, DeploymentState],
    observation: Observation | None,
    now: dt.datetime,
    requeue: list[float],
) -> tuple[Track, ...]:
    stamp = format_time(now)
    assert state.serving is not None
    stable = Target(int(state.serving["version"]), str(state.serving["modelVersion"]))
    canary = state.canary
    if canary is not None:
        current = int(canary["version"])
        if desired is None or desired.version != current:
            why = (
                f"superseded by version {desired.version}"
                if desired is not None and desired.version != stable.version
                else "no longer desired"
            )
            state.record("RolledBack", current, why, stamp)
            state.notices.append(Notice("Normal", "RolledBack", f"version {current}: {why}"))
            state.canary = canary = None
    if (
        canary is None
        and desired is not None
        and desired.version != stable.version
        and state.aborted_version != desired.version
    ):
        canary = state.canary = {
            "version": desired.version,
            "modelVersion": desired.model_version,
            "weight": 0,
            "step": 0,
        }
        state.notices.append(
            Notice(
                "Normal",
                "RolloutStarted",
                f"rolling out version {desired.version} ({spec.rollout.strategy})",
            )
        )
        if spec.rollout.analysis.prometheus_url and spec.rollout.strategy == "Canary":
            state.notices.append(
                Notice(
                    "Warning",
                    "PrometheusNotSupported",
                    "analysis.prometheusUrl is not read yet: the canary is judged from its "
                    "pods' own /metrics",
                )
            )
    if state.aborted_version is not None and state.aborted_version == (
        desired.version if desired else None
    ):
        state.degraded = Verdict(
            "Degraded",
            "True",
            "RolloutAborted",
            f"the rollout of version {state.aborted_version} was aborted"
            f"{_last_reason(state, 'Aborted')}; version {stable.version} serves; change the "
            "spec or publish a newer version to try again",
        )
    stable_track = _stable_track(spec, stable, deployments)
    if canary is None:
        return (stable_track,)

    target = Target(int(canary["version"]), str(canary["modelVersion"]))
    if desired is not None and desired.version == target.version:
        target = desired  # with its run, for the history
    deployment = deployments.get(target.version)
    base = _base_replicas(spec, stable, deployments)
    if spec.rollout.strategy == "Immediate":
        canary_track = Track(target, "canary", base)
        if deployment is not None and deployment.available:
            return _promote(spec, state, target, stamp, "switched at once (Immediate)", deployments)
        if deployment is not None and deployment.failed:
            _abort(
                state, target, generation, f"it never became available: {deployment.failed}", stamp
            )
            return (stable_track,)
        state.progressing = Verdict(
            "Progressing", "True", "Deploying", f"deploying version {target.version}"
        )
        return (stable_track, canary_track)

    steps = spec.rollout.steps
    step = min(int(canary.get("step") or 0), len(steps) - 1)
    replicas, weight = _canary_size(spec, steps[step].weight, base)
    canary_track = Track(target, "canary", replicas)
    if deployment is None or not deployment.available:
        if deployment is not None and deployment.failed:
            _abort(
                state, target, generation, f"it never became available: {deployment.failed}", stamp
            )
            return (stable_track,)
        state.progressing = Verdict(
            "Progressing",
            "True",
            "WaitingForCanary",
            f"waiting for version {target.version} to become available (step {step + 1}/"
            f"{len(steps)})",
        )
        canary["weight"] = weight if canary.get("stepStartedAt") else 0
        return (stable_track, canary_track)

    canary["weight"] = weight
    if not canary.get("stepStartedAt"):
        canary["stepStartedAt"] = stamp
    started = parse_time(canary["stepStartedAt"]) or now
    if observation is not None and _judge(spec, state, canary, step, observation, stamp):
        _abort(state, target, generation, observation.judgement.message, stamp)
        return (stable_track,)
    if spec.rollout.paused:
        state.progressing = Verdict(
            "Progressing",
            "True",
            "Paused",
            f"paused at step {step + 1}/{len(steps)} (weight {weight}%)",
        )
        return (stable_track, canary_track)
    duration = _step_seconds(spec, step)
    last = _last_of_step(canary, step, started)
    if now >= started + dt.timedelta(seconds=duration) and last is not None:
        if last["verdict"] == "Passed":
            if step + 1 >= len(steps):
                passed = sum(
                    1 for run in canary.get("analysis") or [] if run["verdict"] == "Passed"
                )
                why = f"passed {passed} analyses over {len(steps)} steps"
                return _promote(spec, state, target, stamp, why, deployments)
            step += 1
            replicas, weight = _canary_size(spec, steps[step].weight, base)
            canary.update(step=step, weight=weight, stepStartedAt=stamp)
            state.notices.append(
                Notice(
                    "Normal",
                    "StepAdvanced",
                    f"version {target.version}: step {step + 1}/{len(steps)}, weight {weight}%",
                )
            )
            canary_track = Track(target, "canary", replicas)
        else:
            state.progressing = Verdict(
                "Progressing",
                "True",
                "AnalysisInconclusive",
                f"holding version {target.version} at step {step + 1}/{len(steps)}: "
                f"{last.get('message') or 'inconclusive'}",
            )
            return (stable_track, canary_track)
    state.progressing = Verdict(
        "Progressing",
        "True",
        "RollingOut",
        f"canary version {target.version} at step {step + 1}/{len(steps)}, weight "
        f"{canary['weight']}%",
    )
    return (stable_track, canary_track)


def _judge(
    spec: InferenceServiceSpec,
    state: _State,
    canary: Obj,
    step: int,
    observation: Observation,
    stamp: str,
) -> bool:
    """Record ``observation`` on the canary; True when it makes the rollout abort."""
    judgement = observation.judgement
    run: Obj = {
        "time": stamp,
        "step": step,
        "verdict": judgement.verdict,
        "requests": observation.requests,
        "errorRate": round(observation.error_rate, 6),
        "message": judgement.message[:1024],
    }
    if observation.p99_seconds is not None:
        run["latencyP99Ms"] = round(observation.p99_seconds * 1000.0, 3)
    analyses = [*(canary.get("analysis") or []), run]
    canary["analysis"] = analyses[-MAX_ANALYSES:]
    canary["samples"] = {pod: s.to_status() for pod, s in sorted(observation.samples.items())}
    reason = "AnalysisPassed"
    if judgement.verdict == "Failed":
        reason = "AnalysisFailed"
    elif judgement.verdict == "Inconclusive":
        reason = "AnalysisInconclusive"
    kind: Literal["Normal", "Warning"] = "Warning" if judgement.verdict == "Failed" else "Normal"
    state.notices.append(
        Notice(kind, reason, f"version {canary['version']} step {step + 1}: {judgement.message}")
    )
    if judgement.verdict != "Failed":
        return False
    failures = consecutive_failures([str(run["verdict"]) for run in analyses])
    return failures >= spec.rollout.analysis.failure_limit


def _promote(
    spec: InferenceServiceSpec,
    state: _State,
    target: Target,
    stamp: str,
    why: str,
    deployments: Mapping[int, DeploymentState],
) -> tuple[Track, ...]:
    previous = state.serving["version"] if state.serving else None
    state.serving = _serving(target, stamp)
    state.canary = None
    state.record("Promoted", target.version, f"{target.described}: {why}", stamp)
    state.notices.append(
        Notice(
            "Normal",
            "Promoted",
            f"version {target.version} is stable (was {previous}): {why}",
        )
    )
    return (_stable_track(spec, target, deployments),)


def _abort(state: _State, target: Target, generation: int, why: str, stamp: str) -> None:
    state.canary = None
    state.aborted_version = target.version
    state.aborted_generation = generation
    state.record("Aborted", target.version, why, stamp)
    state.notices.append(
        Notice("Warning", "RolloutAborted", f"version {target.version} rolled back: {why}")
    )
    state.degraded = Verdict(
        "Degraded",
        "True",
        "RolloutAborted",
        f"the rollout of version {target.version} was aborted: {why}",
    )


def _retire(
    state: _State,
    tracks: Sequence[Track],
    deployments: Mapping[int, DeploymentState],
    now: dt.datetime,
    requeue: list[float],
) -> tuple[int, ...]:
    """Deployments of versions no track needs: an aborted canary's at once, the previous
    stable one after the drain that follows a promotion."""
    kept = {track.target.version for track in tracks}
    retire: list[int] = []
    drain_until: dt.datetime | None = None
    if state.history and state.history[-1]["event"] == "Promoted":
        promoted = parse_time(state.history[-1]["time"])
        if promoted is not None:
            drain_until = promoted + dt.timedelta(seconds=DRAIN_SECONDS)
    for version in sorted(deployments):
        if version in kept:
            continue
        if version != state.aborted_version and drain_until is not None and now < drain_until:
            requeue.append((drain_until - now).total_seconds() + 0.1)
            continue
        retire.append(version)
    return tuple(retire)


# -- sizes, timing, conditions -----------------------------------------------------------------


def _base_replicas(
    spec: InferenceServiceSpec, stable: Target, deployments: Mapping[int, DeploymentState]
) -> int:
    if spec.autoscaling is None:
        return spec.replicas if spec.replicas is not None else 1
    current = deployments.get(stable.version)
    return max(current.replicas if current else 0, spec.autoscaling.min_replicas)


def _stable_track(
    spec: InferenceServiceSpec, target: Target, deployments: Mapping[int, DeploymentState]
) -> Track:
    if spec.autoscaling is not None:
        bounds = (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas)
        return Track(target, "stable", None, bounds)
    return Track(target, "stable", spec.replicas if spec.replicas is not None else 1)


def _canary_size(spec: InferenceServiceSpec, weight: int, base: int) -> tuple[int, int]:
    """Canary replicas for a step of ``weight`` percent next to ``base`` stable replicas,
    and the weight that gives (exact with Gateway API; the replica ratio otherwise)."""
    if spec.rollout.traffic_router == "gatewayAPI":
        return max(1, math.ceil(base * weight / 100)), weight
    if weight >= 100 or base == 0:
        return max(base, 1), 100
    replicas = max(1, round(base * weight / (100 - weight)))
    return replicas, round(100 * replicas / (base + replicas))


def _interval(spec: InferenceServiceSpec) -> dt.timedelta:
    return dt.timedelta(seconds=duration_seconds(spec.rollout.analysis.interval))


def _step_seconds(spec: InferenceServiceSpec, step: int) -> float:
    duration = spec.rollout.steps[step].duration
    return duration_seconds(duration) if duration else _interval(spec).total_seconds()


def _last_analysis_time(canary: Mapping[str, Any], started: dt.datetime) -> dt.datetime:
    runs = canary.get("analysis") or []
    last = parse_time(runs[-1]["time"]) if runs else None
    return max(last, started) if last is not None else started


def _last_of_step(canary: Mapping[str, Any], step: int, started: dt.datetime) -> Obj | None:
    """The latest analysis, if it judged this step (after it began); else None."""
    runs = canary.get("analysis") or []
    if not runs:
        return None
    last = runs[-1]
    when = parse_time(last.get("time"))
    if last.get("step") != step or when is None or when < started:
        return None
    return dict(last)


def _next_canary_check(
    spec: InferenceServiceSpec, canary: Mapping[str, Any], now: dt.datetime
) -> float:
    started = parse_time(canary.get("stepStartedAt"))
    if started is None:
        return _interval(spec).total_seconds()
    due = _last_analysis_time(canary, started) + _interval(spec)
    step_end = started + dt.timedelta(
        seconds=_step_seconds(spec, min(int(canary.get("step") or 0), len(spec.rollout.steps) - 1))
    )
    candidates = [t for t in (due, step_end) if t > now] or [due]
    return max((min(candidates) - now).total_seconds(), 0.0) + 0.2


def _conditions(
    spec: InferenceServiceSpec,
    state: _State,
    deployments: Mapping[int, DeploymentState],
    resolution: Resolution,
) -> tuple[Verdict, ...]:
    if state.serving is None:
        reason, message = "NotServing", "no version serves yet"
        if resolution.target is None and resolution.reason:
            reason, message = resolution.reason, resolution.message
        elif state.progressing is not None:
            reason, message = "Deploying", state.progressing.message
        ready = Verdict("Ready", "False", reason, message)
    else:
        version = int(state.serving["version"])
        current = deployments.get(version)
        if current is not None and current.available:
            ready = Verdict("Ready", "True", "Serving", f"version {version} serves")
        else:
            ready = Verdict(
                "Ready", "False", "StableUnavailable", f"version {version} has no available pods"
            )
    progressing = state.progressing or Verdict(
        "Progressing", "False", "Stable", "no rollout in progress"
    )
    if resolution.waiting and state.canary is None:
        progressing = Verdict("Progressing", "True", resolution.reason, resolution.message)
    degraded = state.degraded or Verdict("Degraded", "False", "AsExpected", "nothing is wrong")
    paused = Verdict("Paused", "False", "NotPaused", "the rollout is not paused")
    if spec.rollout.paused:
        paused = Verdict(
            "Paused",
            "True",
            "PausedBySpec",
            "spec.rollout.paused holds any rollout at its current step",
        )
    return (ready, progressing, degraded, paused)


def _status_fields(state: _State) -> Obj:
    fields: Obj = {}
    if state.serving is not None:
        fields["serving"] = state.serving
    if state.canary is not None:
        fields["canary"] = state.canary
    if state.aborted_version is not None:
        fields["abortedVersion"] = state.aborted_version
        fields["abortedGeneration"] = state.aborted_generation
    if state.history:
        fields["history"] = state.history
    return fields


def _serving(target: Target, stamp: str) -> Obj:
    return {"version": target.version, "modelVersion": target.model_version, "since": stamp}


def _last_reason(state: _State, event: str) -> str:
    for entry in reversed(state.history):
        if entry["event"] == event:
            return f": {entry.get('reason')}" if entry.get("reason") else ""
    return ""


def _copy(value: Any) -> Obj | None:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in value.items()} if value else None

"""Reconcile one InferenceService: serve the version its spec resolves to, roll new ones out.

gather: the InferenceService, the ModelVersions of its model (by the ``kiln.dev/model``
label), its Deployments, Services, HPAs and PDB (by the ``kiln.dev/inferenceservice``
label, owned by it) and, when a canary analysis is due, the ``/metrics`` of the canary's
ready pods. decide: :func:`resolve` says which version is desired, :func:`plan_rollout`
where the rollout stands and which children it needs, the builders what they look like.
write: server-side apply of each child whose applied content changed (a hash of what was
applied rides on the child, so an unchanged world sends no request), deletes of retired
versions, then one status patch guarded by the resourceVersion read, then events. A
service that is not rolling out costs reads only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pydantic

from kiln_operator import kube, naming
from kiln_operator.api.inferenceservice import Drift, InferenceServiceSpec, Retrain
from kiln_operator.builders.serving import (
    SERVER_PORT,
    desired_deployment,
    desired_hpa,
    desired_http_route,
    desired_pdb,
    desired_services,
    service_url,
    serving_selector,
)
from kiln_operator.conditions import Verdict, find_condition, set_conditions
from kiln_operator.controller.context import OperatorContext
from kiln_operator.controller.queue import Key
from kiln_operator.controller.runner import Recheck
from kiln_operator.decisions.analysis import (
    Judgement,
    PodSample,
    ScrapeError,
    duration_seconds,
    judge,
    parse_sample,
    window,
)
from kiln_operator.decisions.drift import (
    Reading,
    aggregate,
    drift_status,
    parse_drift,
    retrain_request,
)
from kiln_operator.decisions.ownership import model_selector, owned_by
from kiln_operator.decisions.problems import unreadable_spec
from kiln_operator.decisions.requests import request_annotation
from kiln_operator.decisions.rollout import (
    DeploymentState,
    Observation,
    Plan,
    Track,
    analysis_due,
    plan_rollout,
)
from kiln_operator.decisions.serving import Resolution, resolve
from kiln_operator.decisions.status import status_patch
from kiln_operator.decisions.triggers import format_time
from kiln_operator.objectlog import ObjectLog, object_log
from kiln_operator.scrape import Scraped

Obj = dict[str, Any]

#: On every child: a digest of the body last applied, so an unchanged child is not sent.
APPLIED_ANNOTATION: Final = "kiln.dev/applied"
#: Service names (`<name>-canary`) must stay DNS labels of at most 63 characters.
MAX_NAME: Final = 56
GATEWAY_API_MISSING: Final = (
    "trafficRouter gatewayAPI needs the Gateway API's HTTPRoute (gateway.networking.k8s.io/v1), "
    "which this cluster does not serve: install the Gateway API CRDs or use trafficRouter service"
)
#: Degraded reasons whose transition already comes with its own event.
OWN_EVENTS: Final = frozenset({"RolloutAborted"})
#: The condition that says whether drift asked the TrainingJob for a run (with retrain).
RETRAIN_CONDITION: Final = "Retraining"
ROLLOUT_FIELDS: Final = ("serving", "canary", "abortedVersion", "abortedGeneration", "history")


async def reconcile(ctx: OperatorContext, key: Key) -> float | Recheck | None:
    """Bring one InferenceService's children and status up to date; say when to look again."""
    namespace, name = key
    isvc = await ctx.client.get_or_none(kube.INFERENCE_SERVICES, name, namespace)
    if isvc is None or isvc["metadata"].get("deletionTimestamp"):
        return None
    now = ctx.clock()
    try:
        spec = InferenceServiceSpec.model_validate(isvc.get("spec") or {})
    except pydantic.ValidationError as error:
        await _write_problem(ctx, isvc, unreadable_spec(error.errors()), now)
        return None
    if len(name) > MAX_NAME:
        message = (
            f"the name is {len(name)} characters long; at most {MAX_NAME} leave room for the "
            f"Service {name}-canary (a DNS label of at most 63)"
        )
        await _write_problem(ctx, isvc, Verdict("Ready", "False", "NameTooLong", message), now)
        return None
    gpu_selector: Mapping[str, str] | None = None
    if spec.accelerator is not None:
        gpu_selector = ctx.accelerators.node_selector(spec.accelerator.type)
        if gpu_selector is None:
            message = ctx.accelerators.unknown_type_message(spec.accelerator.type)
            verdict = Verdict("Ready", "False", "UnknownAccelerator", message)
            await _write_problem(ctx, isvc, verdict, now)
            return None

    uid = isvc["metadata"]["uid"]
    status: Obj = dict(isvc.get("status") or {})
    model_versions = await ctx.client.list(
        kube.MODEL_VERSIONS, namespace, model_selector(spec.model.name)
    )
    by_name = {mv["metadata"]["name"]: mv for mv in model_versions}
    serving_mv = by_name.get((status.get("serving") or {}).get("modelVersion", ""))
    resolution = resolve(spec.model, model_versions, serving_mv)
    children = _child_selector(name)
    deployments = [
        d for d in await ctx.client.list(kube.DEPLOYMENTS, namespace, children) if owned_by(d, uid)
    ]
    states = _deployment_states(deployments)
    observation = None
    if analysis_due(status, spec, now):
        observation = await _analyse(ctx, isvc, spec, status["canary"])
    plan = plan_rollout(
        spec,
        int(isvc["metadata"].get("generation") or 0),
        status,
        resolution,
        states,
        observation,
        now,
    )
    problem = await _write_children(ctx, isvc, spec, plan, by_name, deployments, gpu_selector)
    if problem is not None:
        conditions = tuple(problem if c.type == problem.type else c for c in plan.conditions)
        plan = dataclasses.replace(plan, conditions=conditions)
    drift: Obj | None = None
    drift_requeue: float | None = None
    retrain: Verdict | None = None
    if spec.monitoring is not None and spec.monitoring.drift is not None:
        drift, drift_requeue, retrain = await _follow_drift(
            ctx, isvc, spec, spec.monitoring.drift, spec.monitoring.retrain, status, plan, now
        )
    await _write_status(ctx, isvc, spec, status, plan, resolution, now, drift, retrain)
    due = plan.requeue_after
    if drift_requeue is not None:
        due = min(due, drift_requeue) if due is not None else drift_requeue
    waiting = resolution.waiting or (plan.tracks and not _all_available(plan, states))
    if due is not None and (due <= ctx.settings.resync_seconds or not waiting):
        return due
    return Recheck(ctx.settings.resync_seconds)


def _child_selector(name: str) -> str:
    return f"{naming.INFERENCE_SERVICE_LABEL}={naming.label_value(name)}"


def _deployment_states(deployments: Sequence[Obj]) -> dict[int, DeploymentState]:
    states: dict[int, DeploymentState] = {}
    for deployment in deployments:
        labels = deployment["metadata"].get("labels") or {}
        try:
            version = int(labels.get(naming.MODEL_VERSION_LABEL, ""))
        except ValueError:
            continue
        states[version] = deployment_state(version, deployment)
    return states


def deployment_state(version: int, deployment: Mapping[str, Any]) -> DeploymentState:
    """Available: the controller saw the current spec and every wanted replica is updated
    and available; failed: its progress deadline passed."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    observed = int(status.get("observedGeneration") or 0) >= int(
        deployment["metadata"].get("generation") or 0
    )
    available = (
        observed
        and int(status.get("updatedReplicas") or 0) >= wanted
        and int(status.get("availableReplicas") or 0) >= wanted
    )
    failed = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            failed = str(condition.get("message") or "ProgressDeadlineExceeded")
    return DeploymentState(
        version, available, int(status.get("replicas") or 0), None if available else failed
    )


def _all_available(plan: Plan, states: Mapping[int, DeploymentState]) -> bool:
    return all(
        (state := states.get(track.target.version)) is not None and state.available
        for track in plan.tracks
    )


# -- analysis --------------------------------------------------------------------------------


async def _analyse(
    ctx: OperatorContext, isvc: Obj, spec: InferenceServiceSpec, canary: Mapping[str, Any]
) -> Observation:
    """Scrape the canary's ready pods and judge what they served since the last analysis."""
    meta = isvc["metadata"]
    version = int(canary["version"])
    endpoints, scraped = await _scrape_version(ctx, meta["namespace"], meta["name"], version)
    previous: dict[str, PodSample] = {}
    for pod, doc in (canary.get("samples") or {}).items():
        sample = PodSample.from_status(doc)
        if sample is not None:
            previous[pod] = sample
    current: dict[str, PodSample] = {}
    failures = dict(scraped.failures)
    for pod, text in scraped.texts.items():
        try:
            current[pod] = parse_sample(text, spec.model.name, str(version))
        except ScrapeError as error:
            failures[pod] = str(error)
    stats = window(previous, current)
    analysis = spec.rollout.analysis
    limit = duration_seconds(analysis.max_latency_p99) if analysis.max_latency_p99 else None
    judgement = judge(stats, analysis.min_requests, analysis.max_error_rate, limit)
    if failures or not endpoints:
        unread = "; ".join(f"{pod}: {why}" for pod, why in sorted(failures.items()))
        detail = unread or "no canary pod is ready"
        judgement = Judgement(judgement.verdict, f"{judgement.message} (not read: {detail})")
        _log(meta["namespace"], meta["name"]).warning("canary metrics not read: %s", detail)
    # A pod that did not answer keeps its earlier counters: the next window starts there.
    samples = {**{p: s for p, s in previous.items() if p in failures}, **current}
    return Observation(judgement, stats.requests, stats.error_rate, stats.p99_seconds, samples)


async def _scrape_version(
    ctx: OperatorContext, namespace: str, name: str, version: int
) -> tuple[dict[str, str], Scraped]:
    """The ``/metrics`` URLs of one served version's ready pods, and what they answered."""
    selector = ",".join(f"{k}={v}" for k, v in serving_selector(name, version).items())
    endpoints = {
        pod["metadata"]["name"]: f"http://{_pod_address(pod)}:{_server_port(pod)}/metrics"
        for pod in await ctx.client.list(kube.PODS, namespace, selector)
        if _ready(pod)
    }
    return endpoints, await ctx.scraper.scrape(endpoints)


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _pod_address(pod: Mapping[str, Any]) -> str:
    address = str(pod["status"]["podIP"])
    return f"[{address}]" if ":" in address else address


def _server_port(pod: Mapping[str, Any]) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != naming.SERVER_CONTAINER:
            continue
        for port in container.get("ports") or []:
            if port.get("name") == "http" and port.get("containerPort"):
                return int(port["containerPort"])
    return SERVER_PORT


# -- drift -----------------------------------------------------------------------------------


async def _follow_drift(
    ctx: OperatorContext,
    isvc: Obj,
    spec: InferenceServiceSpec,
    settings: Drift,
    retrain: Retrain | None,
    status: Mapping[str, Any],
    plan: Plan,
    now: dt.datetime,
) -> tuple[Obj, float, Verdict | None]:
    """Read the stable pods' drift gauges into ``status.drift`` and, when drift has lasted,
    ask the TrainingJob for a run. Returns the drift status, when to look again and the
    ``Retraining`` condition (None without ``monitoring.retrain``)."""
    meta = isvc["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    interval = duration_seconds(settings.interval)
    previous: Obj = dict(status.get("drift") or {})
    serving = plan.status.get("serving")
    reading = None
    if serving:
        version = int(serving["version"])
        reading = await _read_drift(ctx, namespace, name, spec.model.name, version)
    drift = drift_status(previous, reading, settings.threshold, now)
    if retrain is None:
        return drift, interval, None
    request, wait = retrain_request(
        drift,
        duration_seconds(settings.sustained_for),
        duration_seconds(retrain.cooldown),
        meta["uid"],
        f"InferenceService {namespace}/{name}",
        now,
    )
    requeue = min(interval, wait) if wait is not None else interval
    previous_verdict = find_condition(status.get("conditions") or [], RETRAIN_CONDITION)
    verdict = Verdict(
        RETRAIN_CONDITION,
        "False",
        "NotNeeded",
        "inputs are not drifted, or not for long enough to retrain",
    )
    if previous_verdict is not None and previous_verdict.get("reason") == "Requested":
        verdict = Verdict(
            RETRAIN_CONDITION,
            "True",
            "Requested",
            str(previous_verdict.get("message") or ""),
        )
    if request is None:
        return drift, requeue, verdict
    training_job = await ctx.client.get_or_none(kube.TRAINING_JOBS, retrain.training_job, namespace)
    problem = None
    if training_job is None:
        problem = (
            "TrainingJobNotFound",
            f"monitoring.retrain names TrainingJob {retrain.training_job}, which does not "
            f"exist in {namespace}; drift cannot retrain",
        )
    elif (training_job.get("spec") or {}).get("suspend"):
        problem = (
            "TrainingJobSuspended",
            f"TrainingJob {retrain.training_job} is suspended; drift cannot retrain",
        )
    if problem is not None:
        reason, message = problem
        blocked = Verdict(RETRAIN_CONDITION, "False", reason, message)
        if previous_verdict is None or previous_verdict.get("reason") != reason:
            await ctx.events.post(isvc, "Warning", reason, message, format_time(now))
        return drift, requeue, blocked
    annotations = request_annotation(request.id, "drift", request.message)
    await ctx.client.merge_patch(
        kube.TRAINING_JOBS,
        retrain.training_job,
        namespace,
        {"metadata": {"annotations": annotations}},
    )
    drift = {**drift, "lastRetrain": format_time(now), "lastRetrainRequest": request.id}
    message = (
        f"asked TrainingJob {retrain.training_job} for run request {request.id}: {request.message}"
    )[:1024]
    _log(namespace, name).info("RetrainRequested: %s", message)
    await ctx.events.post(isvc, "Normal", "RetrainRequested", message, format_time(now))
    return drift, requeue, Verdict(RETRAIN_CONDITION, "True", "Requested", message)


async def _read_drift(
    ctx: OperatorContext, namespace: str, name: str, model: str, version: int
) -> Reading | None:
    _, scraped = await _scrape_version(ctx, namespace, name, version)
    readings = []
    for pod, text in scraped.texts.items():
        try:
            readings.append(parse_drift(text, model, str(version)))
        except ScrapeError as error:
            _log(namespace, name).warning("drift of pod %s not read: %s", pod, error)
    return aggregate(readings)


# -- writes ----------------------------------------------------------------------------------


def applied_digest(body: Mapping[str, Any]) -> str:
    return naming.digest(json.dumps(body, sort_keys=True, separators=(",", ":")), 16)


def _stamped(body: Obj) -> Obj:
    """``body`` carrying the digest of its own content."""
    annotations = dict(body["metadata"].get("annotations") or {})
    annotations[APPLIED_ANNOTATION] = applied_digest(body)
    return {**body, "metadata": {**body["metadata"], "annotations": annotations}}


async def _apply_if_changed(
    ctx: OperatorContext, resource: kube.Resource, body: Obj, live: Mapping[str, Obj]
) -> None:
    stamped = _stamped(body)
    name = body["metadata"]["name"]
    current = live.get(name)
    wanted = stamped["metadata"]["annotations"][APPLIED_ANNOTATION]
    if (
        current is not None
        and (current["metadata"].get("annotations") or {}).get(APPLIED_ANNOTATION) == wanted
    ):
        return
    await ctx.client.apply(resource, stamped, body["metadata"]["namespace"])


async def _live(ctx: OperatorContext, resource: kube.Resource, isvc: Obj) -> dict[str, Obj]:
    meta = isvc["metadata"]
    items = await ctx.client.list(resource, meta["namespace"], _child_selector(meta["name"]))
    return {obj["metadata"]["name"]: obj for obj in items if owned_by(obj, meta["uid"])}


async def _write_children(
    ctx: OperatorContext,
    isvc: Obj,
    spec: InferenceServiceSpec,
    plan: Plan,
    model_versions: Mapping[str, Obj],
    deployments: Sequence[Obj],
    gpu_selector: Mapping[str, str] | None,
) -> Verdict | None:
    """Apply the children ``plan`` needs and delete retired ones; a problem the user must
    fix (the Gateway API missing) is returned for status, the rest still written."""
    meta = isvc["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    problem: Verdict | None = None
    if not plan.tracks and not deployments:
        return None
    image = (
        ctx.settings.model_server_gpu_image
        if spec.accelerator is not None
        else ctx.settings.model_server_image
    )
    live_deployments = {d["metadata"]["name"]: d for d in deployments}
    live_hpas = await _live(ctx, kube.HPAS, isvc) if spec.autoscaling or deployments else {}
    # Routing first, so that an aborted canary loses its traffic before its pods go.
    stable: Track | None = next((t for t in plan.tracks if t.track == "stable"), None)
    canary: Track | None = next((t for t in plan.tracks if t.track == "canary"), None)
    if stable is not None:
        live_services = await _live(ctx, kube.SERVICES, isvc)
        canary_version = canary.target.version if canary is not None else None
        for service in desired_services(isvc, stable.target.version, canary_version):
            await _apply_if_changed(ctx, kube.SERVICES, service, live_services)
        live_pdbs = await _live(ctx, kube.PDBS, isvc)
        await _apply_if_changed(ctx, kube.PDBS, desired_pdb(isvc), live_pdbs)
        if spec.rollout.traffic_router == "gatewayAPI":
            route = desired_http_route(isvc, spec, *plan.weights)
            existing = await ctx.client.get_or_none(kube.HTTP_ROUTES, name, namespace)
            try:
                await _apply_if_changed(
                    ctx, kube.HTTP_ROUTES, route, {name: existing} if existing else {}
                )
            except kube.NotFound:
                # The Gateway API is not installed: the route's group is not served.
                problem = Verdict("Degraded", "True", "GatewayAPIMissing", GATEWAY_API_MISSING)
    for track in plan.tracks:
        model_version = model_versions.get(track.target.model_version)
        if model_version is None:
            # Its ModelVersion is gone: keep the Deployment as it runs, never rebuild it blind.
            _log(namespace, name).warning(
                "ModelVersion %s of version %d is gone; its Deployment is left as it is",
                track.target.model_version,
                track.target.version,
            )
            continue
        body = desired_deployment(
            isvc,
            spec,
            model_version,
            track.track,
            track.replicas,
            image,
            gpu_selector,
            ctx.settings.model_server_pull_secrets,
        )
        await _apply_if_changed(ctx, kube.DEPLOYMENTS, body, live_deployments)
        hpa_name = body["metadata"]["name"]
        if track.autoscale is not None:
            hpa = desired_hpa(isvc, spec, hpa_name, *track.autoscale)
            await _apply_if_changed(ctx, kube.HPAS, hpa, live_hpas)
        elif hpa_name in live_hpas:
            await _delete(ctx, kube.HPAS, live_hpas[hpa_name])
    for version in plan.retire:
        deployment_name = naming.serving_deployment_name(name, version)
        if deployment_name in live_hpas:
            await _delete(ctx, kube.HPAS, live_hpas[deployment_name])
        if deployment_name in live_deployments:
            await _delete(ctx, kube.DEPLOYMENTS, live_deployments[deployment_name])
            _log(namespace, name).info("deleted Deployment %s", deployment_name)
    return problem


async def _delete(ctx: OperatorContext, resource: kube.Resource, obj: Obj) -> None:
    meta = obj["metadata"]
    with contextlib.suppress(kube.NotFound):
        await ctx.client.delete(resource, meta["name"], meta["namespace"], uid=meta["uid"])


def desired_status(
    previous: Mapping[str, Any],
    spec: InferenceServiceSpec,
    generation: int,
    plan: Plan,
    resolution: Resolution,
    namespace: str,
    name: str,
    now: str,
    drift: Obj | None = None,
    retrain: Verdict | None = None,
) -> Obj:
    """The whole status: what the plan says about the rollout, plus what it resolved and
    the drift reading (``drift`` None: no drift monitoring, the field goes)."""
    desired: Obj = {k: v for k, v in previous.items() if k not in ROLLOUT_FIELDS}
    desired.update(plan.status)
    desired["observedGeneration"] = generation
    verdicts = [*plan.conditions, *([retrain] if retrain is not None else [])]
    conditions = [
        c
        for c in previous.get("conditions") or []
        if c.get("type") != RETRAIN_CONDITION or retrain is not None
    ]
    desired["conditions"] = set_conditions(conditions, verdicts, generation, now)
    desired.pop("drift", None)
    if drift:
        desired["drift"] = drift
    for key in ("desiredVersion", "url", "skipped"):
        desired.pop(key, None)
    if resolution.target is not None:
        desired["desiredVersion"] = resolution.target.version
    if "serving" in desired:
        desired["url"] = service_url(name, namespace, spec.model.name)
    if resolution.skipped:
        desired["skipped"] = [
            {"version": s.version, "modelVersion": s.name, "reason": s.reason[:1024]}
            for s in resolution.skipped[:10]
        ]
    return desired


async def _write_status(
    ctx: OperatorContext,
    isvc: Obj,
    spec: InferenceServiceSpec,
    status: Obj,
    plan: Plan,
    resolution: Resolution,
    now: dt.datetime,
    drift: Obj | None,
    retrain: Verdict | None,
) -> None:
    meta = isvc["metadata"]
    stamp = format_time(now)
    desired = desired_status(
        status,
        spec,
        int(meta.get("generation") or 0),
        plan,
        resolution,
        meta["namespace"],
        meta["name"],
        stamp,
        drift,
        retrain,
    )
    patch = status_patch(status, desired)
    if patch:
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        await ctx.client.merge_patch(
            kube.INFERENCE_SERVICES, meta["name"], meta["namespace"], body, "status"
        )
    objlog = _log(meta["namespace"], meta["name"])
    for type_ in ("Ready", "Degraded"):
        old = find_condition(status.get("conditions") or [], type_) or {}
        new = find_condition(desired["conditions"], type_) or {}
        if (old.get("status"), old.get("reason")) == (new.get("status"), new.get("reason")):
            continue
        objlog.info(
            "%s=%s (%s): %s", type_, new.get("status"), new.get("reason"), new.get("message")
        )
        reason = str(new.get("reason") or "")
        if type_ == "Degraded" and new.get("status") == "True" and reason not in OWN_EVENTS:
            await ctx.events.post(isvc, "Warning", reason, str(new.get("message") or ""), stamp)
    for notice in plan.notices:
        objlog.info("%s: %s", notice.reason, notice.message)
        await ctx.events.post(isvc, notice.type, notice.reason, notice.message, stamp)


async def _write_problem(
    ctx: OperatorContext, isvc: Obj, verdict: Verdict, now: dt.datetime
) -> None:
    """A spec the operator cannot act on: say so in Ready (and Degraded); touch nothing."""
    meta = isvc["metadata"]
    status: Obj = dict(isvc.get("status") or {})
    generation = int(meta.get("generation") or 0)
    stamp = format_time(now)
    degraded = Verdict("Degraded", "True", verdict.reason, verdict.message)
    ready = verdict if not status.get("serving") else None
    verdicts = [v for v in (ready, degraded) if v is not None]
    desired = {
        **status,
        "observedGeneration": generation,
        "conditions": set_conditions(status.get("conditions") or [], verdicts, generation, stamp),
    }
    patch = status_patch(status, desired)
    if not patch:
        return
    body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
    await ctx.client.merge_patch(
        kube.INFERENCE_SERVICES, meta["name"], meta["namespace"], body, "status"
    )
    _log(meta["namespace"], meta["name"]).warning("%s: %s", verdict.reason, verdict.message)
    await ctx.events.post(isvc, "Warning", verdict.reason, verdict.message, stamp)


def _log(namespace: str, name: str) -> ObjectLog:
    return object_log("InferenceService", namespace, name)

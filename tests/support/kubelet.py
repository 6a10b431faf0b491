"""Play the kubelet, the Job controller and the Deployment controller in tests.

No backend of the cluster tier runs pods: the emulator and envtest have no nodes, and even
on a real cluster a test must decide exactly when a pod starts or fails. So a test makes
the world move the way those components would, through the same API calls they make:
pods created from a Job's template with the Job controller's labels and owner reference,
and every status written through the ``/status`` subresource. The ``*_status`` functions
are pure (they only build the status document); the ``set_*`` functions write it. The
Deployment and ReplicaSet controllers' part (a ReplicaSet and its pods) is here too, for
tests that need pods behind a Deployment: Services select them and scrapers reach them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from typing import Any

from tests.support.kube import ApiError, KubeClient, Obj

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
DEADLINE_EXCEEDED = "DeadlineExceeded"
#: A pod failure matched a ``FailJob`` rule of the Job's ``podFailurePolicy``.
POD_FAILURE_POLICY = "PodFailurePolicy"
_FAILURE_MESSAGES = {
    BACKOFF_LIMIT_EXCEEDED: "Job has reached the specified backoff limit",
    DEADLINE_EXCEEDED: "Job was active longer than specified deadline",
    POD_FAILURE_POLICY: "Container failed with an exit code matching FailJob rule at index 0",
}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_reference(owner: Obj, api_version: str, kind: str) -> Obj:
    # The type is named by the caller: an object taken from a list response has no
    # apiVersion or kind of its own on a real server.
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _container_names(pod: Obj) -> list[str]:
    return [container["name"] for container in pod["spec"]["containers"]]


def _image_of(pod: Obj, name: str) -> str:
    for container in pod["spec"]["containers"]:
        if container["name"] == name:
            return str(container.get("image", ""))
    raise KeyError(f"pod {pod['metadata']['name']} has no container {name!r}")


# -- the Job controller: pods ------------------------------------------------------------


def is_indexed(job: Obj) -> bool:
    return bool(job.get("spec", {}).get("completionMode") == "Indexed")


def job_pod(job: Obj, index: int | None = None) -> Obj:
    """The Pod the Job controller would create for ``job`` (completion ``index`` if Indexed)."""
    job_name = job["metadata"]["name"]
    uid = job["metadata"]["uid"]
    template = job["spec"]["template"]
    metadata = template.get("metadata", {})
    labels = dict(metadata.get("labels", {}))
    for key in JOB_NAME_LABELS:
        labels[key] = job_name
    for key in CONTROLLER_UID_LABELS:
        labels[key] = uid
    annotations = dict(metadata.get("annotations", {}))
    spec: Obj = _deep_copy(template["spec"])
    generate_name = f"{job_name}-"
    if index is not None:
        labels[COMPLETION_INDEX] = str(index)
        annotations[COMPLETION_INDEX] = str(index)
        generate_name = f"{job_name}-{index}-"
        # Indexed pods get a stable hostname and the index as an environment variable.
        spec["hostname"] = f"{job_name}-{index}"
        index_env = {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
        }
        for container in spec.get("containers", []):
            env = [e for e in container.get("env", []) if e["name"] != "JOB_COMPLETION_INDEX"]
            container["env"] = [*env, index_env]
    pod_metadata: Obj = {
        "generateName": generate_name,
        "namespace": job["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [_owner_reference(job, "batch/v1", "Job")],
    }
    if annotations:
        pod_metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata, "spec": spec}


def create_job_pods(client: KubeClient, job: Obj, count: int | None = None) -> list[Obj]:
    """Create the Job's pods: one per index for Indexed jobs, else ``parallelism`` (or
    ``count``) pods, each owned by the Job."""
    if count is None:
        count = expected_pod_count(job)
    if is_indexed(job):
        return [client.create(job_pod(job, index)) for index in range(count)]
    return [client.create(job_pod(job)) for _ in range(count)]


def pods_of_job(client: KubeClient, job: Obj) -> list[Obj]:
    """The Job's pods, found by its controller-uid label (sorted by completion index)."""
    pods = client.list(
        "v1",
        "Pod",
        job["metadata"]["namespace"],
        label_selector=f"{CONTROLLER_UID_LABELS[0]}={job['metadata']['uid']}",
    )["items"]
    return sorted(
        pods,
        key=lambda p: (
            int(p["metadata"].get("labels", {}).get(COMPLETION_INDEX, "0")),
            p["metadata"]["name"],
        ),
    )


# -- the kubelet: pod status -------------------------------------------------------------


def running_pod_status(pod: Obj, pod_ip: str, host_ip: str = "10.0.0.10") -> Obj:
    """Status of a pod whose containers all started and are ready."""
    now = now_rfc3339()
    return {
        "phase": "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
        "conditions": [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": name,
                "image": _image_of(pod, name),
                "imageID": f"{_image_of(pod, name)}@sha256:{_fake_digest(name)}",
                "containerID": f"containerd://{_fake_digest(pod['metadata']['name'] + name)}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for name in _container_names(pod)
        ],
    }


def terminated_pod_status(
    pod: Obj,
    exit_code: int,
    message: str = "",
    reason: str | None = None,
    container: str | None = None,
) -> Obj:
    """Status of a pod whose containers ended; ``container`` (default: the first) carries
    ``exit_code`` and the termination ``message``, the others exited 0."""
    now = now_rfc3339()
    names = _container_names(pod)
    target = container or names[0]
    succeeded = exit_code == 0
    previous = pod.get("status", {})
    statuses = []
    for name in names:
        code = exit_code if name == target else 0
        terminated: Obj = {
            "exitCode": code,
            "reason": (
                reason if name == target and reason else ("Completed" if code == 0 else "Error")
            ),
            "startedAt": previous.get("startTime", now),
            "finishedAt": now,
            "containerID": f"containerd://{_fake_digest(pod['metadata']['name'] + name)}",
        }
        if name == target and message:
            terminated["message"] = message
        statuses.append(
            {
                "name": name,
                "image": _image_of(pod, name),
                "imageID": f"{_image_of(pod, name)}@sha256:{_fake_digest(name)}",
                "containerID": terminated["containerID"],
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        )
    status: Obj = {
        "phase": "Succeeded" if succeeded else "Failed",
        "startTime": previous.get("startTime", now),
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {
                "type": "ContainersReady",
                "status": "False",
                "reason": "PodCompleted",
                "lastTransitionTime": now,
            },
            {
                "type": "Ready",
                "status": "False",
                "reason": "PodCompleted",
                "lastTransitionTime": now,
            },
        ],
        "containerStatuses": statuses,
    }
    for key in ("hostIP", "hostIPs", "podIP", "podIPs", "qosClass"):
        if key in previous:
            status[key] = previous[key]
    return status


def waiting_pod_status(pod: Obj, reason: str = "ImagePullBackOff", message: str = "") -> Obj:
    """Status of a pending pod whose containers cannot start (e.g. ErrImagePull)."""
    now = now_rfc3339()
    image = _image_of(pod, _container_names(pod)[0])
    text = message or f'Back-off pulling image "{image}"'
    return {
        "phase": "Pending",
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {
                "type": "ContainersReady",
                "status": "False",
                "reason": "ContainersNotReady",
                "lastTransitionTime": now,
            },
            {
                "type": "Ready",
                "status": "False",
                "reason": "ContainersNotReady",
                "lastTransitionTime": now,
            },
        ],
        "containerStatuses": [
            {
                "name": name,
                "image": _image_of(pod, name),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": text}},
            }
            for name in _container_names(pod)
        ],
    }


def _as_pod(pod: Obj) -> Obj:
    """The pod with its type: one read from a list response carries none."""
    return {"apiVersion": "v1", "kind": "Pod", **pod}


def set_pod_running(client: KubeClient, pod: Obj, pod_ip: str | None = None) -> Obj:
    ip = pod_ip or _pod_ip_for(pod)
    return _write_status(client, _as_pod(pod), running_pod_status(pod, ip))


def set_pod_terminated(
    client: KubeClient,
    pod: Obj,
    exit_code: int = 0,
    message: str = "",
    reason: str | None = None,
    container: str | None = None,
) -> Obj:
    current = client.get("v1", "Pod", pod["metadata"]["name"], pod["metadata"]["namespace"])
    status = terminated_pod_status(current, exit_code, message, reason, container)
    return _write_status(client, current, status)


def set_pod_waiting(
    client: KubeClient, pod: Obj, reason: str = "ImagePullBackOff", message: str = ""
) -> Obj:
    return _write_status(client, _as_pod(pod), waiting_pod_status(pod, reason, message))


# -- the Job controller: job status ------------------------------------------------------


def job_status(
    job: Obj,
    *,
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    ready: int | None = None,
    outcome: str | None = None,
    failure_reason: str = BACKOFF_LIMIT_EXCEEDED,
    now: str | None = None,
) -> Obj:
    """The status the Job controller writes.

    ``outcome`` is None (still running), ``"Complete"`` or ``"Failed"`` (with
    ``failure_reason`` BackoffLimitExceeded or DeadlineExceeded). A finished Job carries
    the interim condition newer controllers add first (SuccessCriteriaMet /
    FailureTarget), because API servers from 1.31 reject a finished Job without it.
    """
    timestamp = now or now_rfc3339()
    previous = job.get("status", {})
    status: Obj = {
        "startTime": previous.get("startTime", timestamp),
        "active": active,
        "succeeded": succeeded,
        "failed": failed,
        "ready": active if ready is None else ready,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    }
    if is_indexed(job) and succeeded:
        status["completedIndexes"] = "0" if succeeded == 1 else f"0-{succeeded - 1}"
    if outcome is None:
        return {k: v for k, v in status.items() if v != 0 or k in ("active", "startTime")}
    if outcome == "Complete":
        status["completionTime"] = timestamp
        reason, message = "CompletionsReached", "Reached expected number of succeeded pods"
        interim = "SuccessCriteriaMet"
    elif outcome == "Failed":
        if failure_reason not in _FAILURE_MESSAGES:
            raise ValueError(f"unknown Job failure reason {failure_reason!r}")
        reason, message = failure_reason, _FAILURE_MESSAGES[failure_reason]
        interim = "FailureTarget"
    else:
        raise ValueError(f"outcome must be None, 'Complete' or 'Failed', not {outcome!r}")
    status["active"] = 0
    status["ready"] = 0
    status["conditions"] = [
        _job_condition(interim, reason, message, timestamp),
        _job_condition(outcome, reason, message, timestamp),
    ]
    return status


def _job_condition(type_: str, reason: str, message: str, timestamp: str) -> Obj:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": timestamp,
        "lastTransitionTime": timestamp,
    }


def set_job_status(client: KubeClient, job: Obj, **counts: Any) -> Obj:
    """Write :func:`job_status` (same keyword arguments) through ``jobs/status``."""
    current = client.get("batch/v1", "Job", job["metadata"]["name"], job["metadata"]["namespace"])
    return _write_status(client, current, job_status(current, **counts))


def complete_job(
    client: KubeClient, job: Obj, exit_code: int = 0, message: str = "", **failure: Any
) -> list[Obj]:
    """Run a Job to its end: create its pods, terminate them with ``exit_code`` and the
    termination ``message``, then mark the Job Complete (exit 0) or Failed. Returns the pods."""
    pods = create_job_pods(client, job)
    finished = [set_pod_terminated(client, pod, exit_code, message) for pod in pods]
    if exit_code == 0:
        set_job_status(client, job, succeeded=len(pods), outcome="Complete")
    else:
        set_job_status(client, job, failed=len(pods), outcome="Failed", **failure)
    return finished


def expected_pod_count(job: Obj) -> int:
    """How many pods the Job controller starts at once: ``parallelism`` capped by
    ``completions``."""
    spec = job.get("spec", {})
    parallelism = int(spec.get("parallelism", 1))
    completions = spec.get("completions")
    return min(parallelism, int(completions)) if completions is not None else parallelism


def wait_for_job_pods(client: KubeClient, job: Obj, count: int, timeout: float = 60.0) -> list[Obj]:
    """The ``count`` pods a running Job controller made for ``job``."""
    deadline = time.monotonic() + timeout
    pods: list[Obj] = []
    while time.monotonic() < deadline:
        pods = pods_of_job(client, job)
        if len(pods) >= count:
            return pods[:count]
        time.sleep(0.2)
    raise AssertionError(
        f"the Job controller made {len(pods)} of {count} pods for Job "
        f"{job['metadata']['name']} in {timeout:.0f}s"
    )


def wait_for_job_condition(
    client: KubeClient, job: Obj, condition: str, timeout: float = 60.0
) -> Obj:
    """The Job once the Job controller has set ``condition`` (Complete or Failed) True."""
    meta = job["metadata"]

    def reached(current: Obj | None) -> bool:
        conditions = ((current or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == condition and c["status"] == "True" for c in conditions)

    return client.wait_for(
        "batch/v1",
        "Job",
        meta["name"],
        meta["namespace"],
        reached,
        timeout=timeout,
        description=f"Job condition {condition}=True",
    )


class Workloads:
    """The parts of a cluster a test stands in for, on any backend.

    The test always plays the kubelet (pods run nowhere, so their status is what the test
    writes). The Job controller is played only where none runs (the emulator, envtest):
    where the real one runs (a full control plane), it makes the pods and finishes the Job
    itself, and the test only waits for it.
    """

    def __init__(self, client: KubeClient, plays_job_controller: bool) -> None:
        self.client = client
        self.plays_job_controller = plays_job_controller

    def job_pods(self, job: Obj) -> list[Obj]:
        """The Job's pods: made by the test standing in, or by the real controller."""
        if self.plays_job_controller:
            return create_job_pods(self.client, job)
        return wait_for_job_pods(self.client, job, expected_pod_count(job))

    def job_active(self, job: Obj, active: int) -> None:
        """The Job's status counts ``active`` pods (written, or awaited from the controller)."""
        if self.plays_job_controller:
            set_job_status(self.client, job, active=active)
            return
        meta = job["metadata"]
        self.client.wait_for(
            "batch/v1",
            "Job",
            meta["name"],
            meta["namespace"],
            lambda j: ((j or {}).get("status") or {}).get("active", 0) == active,
            description=f"Job status active={active}",
        )

    def complete_job(
        self, job: Obj, exit_code: int = 0, message: str = "", **failure: Any
    ) -> list[Obj]:
        """Run the Job to its end with ``exit_code`` and the termination ``message``.

        With a real Job controller the outcome is its own: a failure is BackoffLimitExceeded
        when the Job's ``backoffLimit`` is spent (use 0), and DeadlineExceeded when
        ``activeDeadlineSeconds`` passes first (a short deadline and a high backoffLimit).
        """
        if self.plays_job_controller:
            return complete_job(self.client, job, exit_code, message, **failure)
        pods = self.job_pods(job)
        finished = [set_pod_terminated(self.client, pod, exit_code, message) for pod in pods]
        wait_for_job_condition(self.client, job, "Complete" if exit_code == 0 else "Failed")
        return finished


# -- the Deployment controller -----------------------------------------------------------


def deployment_status(deployment: Obj, ready: int | None = None) -> Obj:
    """Status of a rolled-out Deployment with ``ready`` (default: all) replicas available."""
    now = now_rfc3339()
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    available = replicas if ready is None else ready
    name = deployment["metadata"]["name"]
    template_hash = pod_template_hash(deployment.get("spec", {}).get("template", {}))
    is_available = available >= replicas
    status: Obj = {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "conditions": [
            {
                "type": "Available",
                "status": "True" if is_available else "False",
                "reason": "MinimumReplicasAvailable"
                if is_available
                else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if is_available
                else "Deployment does not have minimum availability.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if is_available else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{name}-{template_hash}" has successfully progressed.'
                if is_available
                else f'ReplicaSet "{name}-{template_hash}" is progressing.',
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
        ],
    }
    if available < replicas:
        status["unavailableReplicas"] = replicas - available
    if available == 0:
        del status["readyReplicas"], status["availableReplicas"]
    return status


def set_deployment_available(client: KubeClient, deployment: Obj, ready: int | None = None) -> Obj:
    meta = deployment["metadata"]
    current = client.get("apps/v1", "Deployment", meta["name"], meta["namespace"])
    return _write_status(client, current, deployment_status(current, ready))


def pod_template_hash(template: Obj) -> str:
    """A stable 10-character hash of a pod template, in the alphabet the controller uses."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:10])


def deployment_replica_set(deployment: Obj) -> Obj:
    """The ReplicaSet the Deployment controller creates for the current template."""
    spec = deployment["spec"]
    template = _deep_copy(spec["template"])
    template_hash = pod_template_hash(spec["template"])
    labels = {**template.get("metadata", {}).get("labels", {}), "pod-template-hash": template_hash}
    template.setdefault("metadata", {})["labels"] = labels
    selector = _deep_copy(spec["selector"])
    selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{deployment['metadata']['name']}-{template_hash}",
            "namespace": deployment["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [_owner_reference(deployment, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": selector,
            "template": template,
        },
    }


def replica_set_pod(replica_set: Obj) -> Obj:
    """A Pod as the ReplicaSet controller creates it: template labels, owned by the set."""
    template = replica_set["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{replica_set['metadata']['name']}-",
            "namespace": replica_set["metadata"]["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": dict(template["metadata"].get("annotations", {})),
            "ownerReferences": [_owner_reference(replica_set, "apps/v1", "ReplicaSet")],
        },
        "spec": _deep_copy(template["spec"]),
    }


def create_deployment_pods(
    client: KubeClient, deployment: Obj, count: int | None = None
) -> list[Obj]:
    """Create the Deployment's ReplicaSet (if missing) and ``count`` (default: ``replicas``)
    pods of it, as the Deployment and ReplicaSet controllers would. The pods carry the
    template's labels, so the Deployment's Services select them; set them running with
    ``set_pod_running(..., pod_ip="127.0.0.1")`` to point scrapers at a local server."""
    meta = deployment["metadata"]
    current = client.get("apps/v1", "Deployment", meta["name"], meta["namespace"])
    wanted = deployment_replica_set(current)
    replica_set = client.get_or_none(
        "apps/v1", "ReplicaSet", wanted["metadata"]["name"], meta["namespace"]
    ) or client.create(wanted)
    total = wanted["spec"]["replicas"] if count is None else count
    return [client.create(replica_set_pod(replica_set)) for _ in range(total)]


# -- plumbing ------------------------------------------------------------------------------


def _write_status(client: KubeClient, obj: Obj, status: Obj, attempts: int = 5) -> Obj:
    """PUT the whole status on ``/status`` (replacing it, as the controllers' updates do).

    Like a controller, re-read and retry when someone else (the operator) wrote the
    object in between; any other error propagates.
    """
    meta = obj["metadata"]
    for attempt in range(attempts):
        current = client.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        current["status"] = status
        try:
            return client.replace(current, subresource="status")
        except ApiError as error:
            if error.status != 409 or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _pod_ip_for(pod: Obj) -> str:
    digest = hashlib.sha256(pod["metadata"]["uid"].encode()).digest()
    return f"10.244.{digest[0]}.{digest[1] % 253 + 1}"


def _fake_digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# -- the garbage collector, where none runs (envtest) ---------------------------------------


def finish_orphaning(client: KubeClient, owner: Obj, runs_controllers: bool) -> None:
    """Complete a ``propagationPolicy=Orphan`` delete of ``owner`` as the garbage collector
    does: drop the owner's references from its dependents, then its ``orphan`` finalizer.

    Where controllers run (a real cluster, the emulator) the real collector does this and
    this function does nothing: a test must never play a controller that is running.
    """
    if runs_controllers:
        return
    meta = owner["metadata"]
    uid, namespace = meta["uid"], meta.get("namespace")
    for api_version, kind in (("batch/v1", "Job"), ("v1", "Service"), ("v1", "Pod")):
        for dependent in client.list(api_version, kind, namespace)["items"]:
            refs = dependent["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != uid]
            if len(kept) != len(refs):
                patch: Obj = {"metadata": {"ownerReferences": kept or None}}
                client.patch(api_version, kind, dependent["metadata"]["name"], namespace, patch)
    current = client.get_or_none(owner["apiVersion"], owner["kind"], meta["name"], namespace)
    if current is None:
        return
    finalizers = current["metadata"].get("finalizers") or []
    if "orphan" in finalizers:
        remaining = [f for f in finalizers if f != "orphan"]
        patch = {
            "metadata": {
                "finalizers": remaining or None,
                "resourceVersion": current["metadata"]["resourceVersion"],
            }
        }
        client.patch(owner["apiVersion"], owner["kind"], meta["name"], namespace, patch)

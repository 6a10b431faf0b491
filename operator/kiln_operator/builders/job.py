"""The batch/v1 Job of one run, and the headless Service of a distributed run.

Everything the training container learns about its run comes from here: the ``KILN_*``
environment, hyperparameters as ``KILN_HP_<NAME>``, the mounted output directory, GPU
limits and placement, and for ``workers > 1`` the rank/world-size/master environment that
torchrun and PyTorch DDP read. Pods run under a restricted security context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kiln_operator import naming
from kiln_operator.accelerators import GPU_RESOURCE
from kiln_operator.api.trainingjob import TrainingJobSpec
from kiln_operator.builders.owner import controller_reference, training_labels
from kiln_operator.builders.placement import place
from kiln_operator.runinfo import OUTPUT_MOUNT, RunOutput, RunStart, run_output

OUTPUT_VOLUME = "kiln-output"
_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def run_lineage(spec: TrainingJobSpec, output: RunOutput) -> dict[str, Any]:
    """What the run starts with, recorded on its Job for the ModelVersion's lineage."""
    lineage: dict[str, Any] = {"image": spec.image, "output": output.uri}
    if spec.dataset is not None:
        lineage["dataset"] = spec.dataset.model_dump(by_alias=True, exclude_none=True)
    if spec.hyperparameters:
        lineage["hyperparameters"] = dict(spec.hyperparameters)
    return lineage


def desired_job(
    training_job: dict[str, Any],
    spec: TrainingJobSpec,
    run: RunStart,
    node_selector: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The Job executing ``run`` of ``training_job`` (owned by it).

    ``node_selector`` holds the labels of the spec's accelerator type from the operator's
    accelerator map (None without an accelerator).
    """
    name = training_job["metadata"]["name"]
    output = run_output(spec.output.uri, run.name)
    labels = training_labels(training_job, run.name)
    annotations = {
        naming.TRAINING_JOB_ANNOTATION: name,
        naming.TRIGGER_ANNOTATION: run.trigger,
        naming.RUN_NUMBER_ANNOTATION: str(run.number),
        naming.SPEC_HASH_ANNOTATION: run.spec_hash,
        naming.LINEAGE_ANNOTATION: json.dumps(run_lineage(spec, output), sort_keys=True),
    }
    if run.message:
        annotations[naming.TRIGGER_MESSAGE_ANNOTATION] = run.message[:1024]
    if run.request_id:
        annotations[naming.REQUEST_ID_ANNOTATION] = run.request_id
    if run.generation is not None:
        annotations[naming.GENERATION_ANNOTATION] = str(run.generation)
    if run.scheduled_time:
        annotations[naming.SCHEDULED_TIME_ANNOTATION] = run.scheduled_time
    if run.request_value is not None:
        annotations[naming.REQUEST_VALUE_ANNOTATION] = run.request_value
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {naming.TRAINING_JOB_ANNOTATION: name},
            },
            "spec": _pod_spec(spec, run, output, node_selector),
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.workers > 1:
        job_spec["completionMode"] = "Indexed"
        job_spec["completions"] = spec.workers
        job_spec["parallelism"] = spec.workers
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run.name,
            "namespace": training_job["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [controller_reference(training_job)],
        },
        "spec": job_spec,
    }


def desired_headless_service(training_job: dict[str, Any], run: RunStart) -> dict[str, Any]:
    """The headless Service giving each worker of a distributed run a stable DNS name."""
    labels = training_labels(training_job, run.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": naming.service_name(run.name),
            "namespace": training_job["metadata"]["namespace"],
            "labels": labels,
            "annotations": {naming.TRAINING_JOB_ANNOTATION: training_job["metadata"]["name"]},
            "ownerReferences": [controller_reference(training_job)],
        },
        "spec": {
            "clusterIP": "None",
            # Workers must find each other before any of them is Ready.
            "publishNotReadyAddresses": True,
            "selector": {naming.RUN_LABEL: run.name},
        },
    }


def _pod_spec(
    spec: TrainingJobSpec,
    run: RunStart,
    output: RunOutput,
    node_selector: Mapping[str, str] | None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": naming.TRAINER_CONTAINER,
        "image": spec.image,
        "env": _environment(spec, run, output),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    if output.claim:
        mount: dict[str, Any] = {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT}
        if output.sub_path:
            mount["subPath"] = output.sub_path
        container["volumeMounts"] = [mount]

    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if spec.security_context is not None:
        pod_security.update(spec.security_context.model_dump(by_alias=True, exclude_none=True))
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security,
        "containers": [container],
    }
    if output.claim:
        pod["volumes"] = [
            {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": output.claim}}
        ]
    place(pod, spec.accelerator is not None, node_selector, spec.node_selector, spec.tolerations)
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s.name} for s in spec.image_pull_secrets]
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    if spec.workers > 1:
        pod["subdomain"] = naming.service_name(run.name)
    return pod


def _resources(spec: TrainingJobSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if spec.resources is not None:
        resources = spec.resources.model_dump(by_alias=True, exclude_none=True)
    if spec.accelerator is not None:
        # Extended resources are limits only; Kubernetes copies them into requests.
        limits = dict(resources.get("limits", {}))
        limits[GPU_RESOURCE] = spec.accelerator.count
        resources["limits"] = limits
    return resources


def _environment(spec: TrainingJobSpec, run: RunStart, output: RunOutput) -> list[dict[str, Any]]:
    kiln: list[dict[str, Any]] = [
        {"name": "KILN_RUN", "value": run.name},
        {"name": "KILN_RUN_NUMBER", "value": str(run.number)},
        {"name": "KILN_TRIGGER", "value": run.trigger},
        {"name": "KILN_MODEL", "value": spec.model},
        {"name": "KILN_OUTPUT_URI", "value": output.uri},
    ]
    if output.directory:
        kiln.append({"name": "KILN_OUTPUT_DIR", "value": output.directory})
    if spec.dataset is not None:
        kiln.append({"name": "KILN_DATASET_URI", "value": spec.dataset.uri})
        if spec.dataset.version:
            kiln.append({"name": "KILN_DATASET_VERSION", "value": spec.dataset.version})
    for hp_name, value in sorted((spec.hyperparameters or {}).items()):
        kiln.append({"name": naming.hyperparameter_env_name(hp_name), "value": value})
    if spec.workers > 1:
        master = f"{run.name}-0.{naming.service_name(run.name)}"
        rank = {"fieldRef": {"fieldPath": f"metadata.annotations['{_INDEX_ANNOTATION}']"}}
        for prefix in ("", "PET_"):
            kiln.append({"name": f"{prefix}MASTER_ADDR", "value": master})
            kiln.append({"name": f"{prefix}MASTER_PORT", "value": str(spec.master_port)})
        kiln += [
            {"name": "WORLD_SIZE", "value": str(spec.workers)},
            {"name": "RANK", "valueFrom": rank},
            {"name": "PET_NNODES", "value": str(spec.workers)},
            {"name": "PET_NODE_RANK", "valueFrom": rank},
        ]
    user = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env or []]
    # A variable the user sets explicitly wins over Kiln's (one definition per name).
    overridden = {e["name"] for e in user}
    return [e for e in kiln if e["name"] not in overridden] + user

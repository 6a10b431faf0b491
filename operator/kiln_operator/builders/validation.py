"""The batch/v1 Job that validates one ModelVersion's artifact with ``kiln-server validate``.

The artifact is fetched the way serving pods will fetch it: a ``pvc://`` claim is mounted
read-only at ``<pvc root>/<claim>``, ``http(s)://`` and ``s3://`` are downloaded with the
credentials of the Secret the ModelVersion names (its keys become the environment). The pod
runs under the restricted security profile with a read-only root filesystem; downloads go
to an emptyDir at ``/tmp``.

A verdict against the artifact (exit code ``VALIDATION_FAILED_EXIT_CODE``) fails the Job at
once through its ``podFailurePolicy``; transient fetch failures are retried inside the pod
first. A crash of the pod itself is retried twice, an eviction is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from kiln_operator import naming
from kiln_operator.api.modelversion import ModelVersionSpec
from kiln_operator.builders.owner import controller_reference
from kiln_server.contract import TERMINATION_MESSAGE_PATH, VALIDATION_FAILED_EXIT_CODE

#: Where the validation pod mounts ``pvc://<claim>`` claims (as ``<root>/<claim>``).
PVC_ROOT: Final = "/mnt/pvc"
SCRATCH_VOLUME: Final = "scratch"
#: Retries of a validation pod that crashed (not of a verdict, which fails the Job).
BACKOFF_LIMIT: Final = 2
#: A finished validation Job is kept this long for its logs; its result lives in status.
TTL_SECONDS_AFTER_FINISHED: Final = 86400
RESOURCES: Final = {"requests": {"cpu": "100m", "memory": "256Mi"}}


def validation_labels(model_version: dict[str, Any], spec: ModelVersionSpec) -> dict[str, str]:
    """Labels of the validation Job and its pods (never copied from the ModelVersion)."""
    return {
        naming.NAME_LABEL: "kiln-validation",
        naming.COMPONENT_LABEL: "model-validation",
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.MODEL_VERSION_OWNER_LABEL: naming.label_value(model_version["metadata"]["name"]),
        naming.MODEL_LABEL: naming.label_value(spec.model),
        naming.MODEL_VERSION_LABEL: str(spec.version),
    }


def claim_of(uri: str) -> str | None:
    """The claim of a ``pvc://<claim>/<path>`` URI; None for other schemes."""
    parts = urlsplit(uri)
    if parts.scheme != "pvc" or not parts.netloc:
        return None
    return parts.netloc


def validate_args(spec: ModelVersionSpec) -> list[str]:
    """The ``kiln-server validate`` arguments for the artifact (and baseline) of ``spec``."""
    args = ["validate", "--uri", spec.artifact.uri, "--sha256", spec.artifact.sha256]
    if spec.baseline is not None:
        args += ["--baseline-uri", spec.baseline.uri]
        if spec.baseline.sha256:
            args += ["--baseline-sha256", spec.baseline.sha256]
    return [*args, "--pvc-root", PVC_ROOT, "--termination-message-path", TERMINATION_MESSAGE_PATH]


def desired_validation_job(
    model_version: dict[str, Any],
    spec: ModelVersionSpec,
    job_name: str,
    image: str,
    deadline_seconds: int,
    pull_secrets: Sequence[str] = (),
) -> dict[str, Any]:
    """The Job ``job_name`` validating ``model_version`` (owned by it) with ``image``,
    pulled with the Secrets ``pull_secrets`` name."""
    meta = model_version["metadata"]
    labels = validation_labels(model_version, spec)
    annotations = {naming.MODEL_VERSION_ANNOTATION: meta["name"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": dict(annotations),
            "ownerReferences": [controller_reference(model_version)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": naming.VALIDATOR_CONTAINER,
                            "operator": "In",
                            "values": [VALIDATION_FAILED_EXIT_CODE],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": _pod_spec(spec, image, pull_secrets),
            },
        },
    }


def _pod_spec(spec: ModelVersionSpec, image: str, pull_secrets: Sequence[str]) -> dict[str, Any]:
    claims = sorted(
        {
            claim
            for uri in (spec.artifact.uri, spec.baseline.uri if spec.baseline else "")
            if (claim := claim_of(uri))
        }
    )
    mounts: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "emptyDir": {}}]
    for index, claim in enumerate(claims):
        volume = f"claim-{index}"
        mounts.append({"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
        volumes.append(
            {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    container: dict[str, Any] = {
        "name": naming.VALIDATOR_CONTAINER,
        "image": image,
        # The model-server image's entrypoint is kiln-server.
        "args": validate_args(spec),
        "resources": RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
    }
    if spec.credentials is not None:
        container["envFrom"] = [{"secretRef": {"name": spec.credentials.name}}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    return pod

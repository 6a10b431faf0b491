"""The children of an InferenceService: Deployments, Services, HPA, PDB and HTTPRoute.

Each served ModelVersion gets its own Deployment ``<name>-v<version>``. Its pods carry the
version but never the track: the ``stable``/``canary`` label lives on the Deployment only,
so promoting a canary relabels one object and restarts no pod. The Services select by
version, not by track, for the same reason: ``<name>`` takes every serving pod,
``<name>-stable`` and ``<name>-canary`` the pods of one version each.

A pod fetches its model before the server starts: init containers run ``kiln-server
fetch`` (the image's entrypoint) into an emptyDir the server mounts read-only, with
``pvc://`` claims mounted read-only into the init containers alone and the ModelVersion's
credentials Secret in their environment only. The server container never sees either.
Pods run under the restricted security profile with a read-only root filesystem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from kiln_operator import naming
from kiln_operator.accelerators import GPU_RESOURCE
from kiln_operator.api.inferenceservice import InferenceServiceSpec
from kiln_operator.api.modelversion import ModelVersionSpec
from kiln_operator.builders.owner import controller_reference
from kiln_operator.builders.placement import place
from kiln_operator.builders.validation import PVC_ROOT, claim_of
from kiln_server import contract

Track = Literal["stable", "canary"]

SERVER_PORT: Final = 8080
SERVICE_PORT: Final = 80
PORT_NAME: Final = "http"
#: Where the init containers put ``model.onnx`` (and ``baseline.json``) for the server.
MODEL_DIR: Final = "/models"
BASELINE_FILENAME: Final = "baseline.json"
BASELINE_FETCH_CONTAINER: Final = "fetch-baseline"
MODEL_VOLUME: Final = "model"
SCRATCH_VOLUME: Final = "scratch"
#: The server drains in-flight requests for 30 s after SIGTERM; the kubelet waits longer.
TERMINATION_GRACE_SECONDS: Final = 40
REVISION_HISTORY_LIMIT: Final = 2
READY_PATH: Final = "/v2/health/ready"
LIVE_PATH: Final = "/v2/health/live"


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def serving_selector(isvc_name: str, version: int) -> dict[str, str]:
    """The pods of one served version: a Deployment's selector, and that of the Services
    ``<name>-stable`` and ``<name>-canary``. It never names the track, so it survives a
    promotion (a Deployment's selector is immutable)."""
    return {
        naming.INFERENCE_SERVICE_LABEL: naming.label_value(isvc_name),
        naming.MODEL_VERSION_LABEL: str(version),
    }


def serving_labels(isvc: dict[str, Any]) -> dict[str, str]:
    """Labels of every child of ``isvc`` (never copied from it, so
    ``app.kubernetes.io/instance`` and ``argocd.argoproj.io/*`` stay on the parent)."""
    return {
        naming.NAME_LABEL: "kiln-server",
        naming.COMPONENT_LABEL: "model-server",
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.INFERENCE_SERVICE_LABEL: naming.label_value(isvc["metadata"]["name"]),
    }


def serving_pod_labels(isvc: dict[str, Any], model: str, version: int) -> dict[str, str]:
    """Labels of the model-server pods of one version: no track label, so that promotion
    relabels the Deployment and restarts nothing."""
    return {
        **serving_labels(isvc),
        naming.MODEL_LABEL: naming.label_value(model),
        naming.MODEL_VERSION_LABEL: str(version),
    }


def _metadata(isvc: dict[str, Any], name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    meta = isvc["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": dict(labels),
        "annotations": {naming.INFERENCE_SERVICE_ANNOTATION: meta["name"]},
        "ownerReferences": [controller_reference(isvc)],
    }


def desired_deployment(
    isvc: dict[str, Any],
    spec: InferenceServiceSpec,
    model_version: dict[str, Any],
    track: Track,
    replicas: int | None,
    image: str,
    gpu_node_selector: Mapping[str, str] | None,
    pull_secrets: Sequence[str] = (),
) -> dict[str, Any]:
    """The Deployment serving ``model_version`` (a ModelVersion object) for ``isvc``.

    ``replicas`` None leaves the field out of the body, so that an HPA owns it;
    ``gpu_node_selector`` holds the labels of the spec's accelerator type from the
    operator's accelerator map (None without an accelerator); ``pull_secrets`` name the
    Secrets for pulling ``image``.
    """
    name = isvc["metadata"]["name"]
    mv = ModelVersionSpec.model_validate(model_version["spec"])
    pod_labels = serving_pod_labels(isvc, mv.model, mv.version)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": serving_selector(name, mv.version)},
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        # A new pod is Ready before an old one goes: capacity never dips during an update.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {naming.INFERENCE_SERVICE_ANNOTATION: name},
            },
            "spec": _pod_spec(spec, mv, image, gpu_node_selector, pull_secrets),
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            isvc,
            naming.serving_deployment_name(name, mv.version),
            {**pod_labels, naming.TRACK_LABEL: track},
        ),
        "spec": deployment_spec,
    }


def _fetch_args(uri: str, sha256: str | None, filename: str | None = None) -> list[str]:
    args = ["fetch", "--uri", uri]
    if sha256:
        args += ["--sha256", sha256]
    args += ["--dest", MODEL_DIR]
    if filename is not None:
        args += ["--filename", filename]
    return [*args, "--pvc-root", PVC_ROOT]


def _serve_args(spec: InferenceServiceSpec, mv: ModelVersionSpec) -> list[str]:
    args = [
        "serve",
        "--model-dir", MODEL_DIR,
        "--model-name", spec.model.name,
        "--model-version", str(mv.version),
        "--port", str(SERVER_PORT),
        "--max-batch-size", str(spec.batching.max_batch_size),
        "--max-queue-delay-ms", _number(spec.batching.max_queue_delay_ms),
        "--device", "cuda" if spec.accelerator is not None else "cpu",
    ]  # fmt: skip
    if spec.threads is not None:
        args += ["--threads", str(spec.threads)]
    if spec.monitoring is not None and spec.monitoring.drift is not None:
        args += ["--drift-window", str(spec.monitoring.drift.window)]
    return args


def _number(value: float) -> str:
    """``2`` rather than ``2.0``; fractions as Python writes them."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _resources(spec: InferenceServiceSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if spec.resources is not None:
        resources = spec.resources.model_dump(by_alias=True, exclude_none=True)
    if spec.accelerator is not None:
        # Extended resources are limits only; Kubernetes copies them into requests.
        resources["limits"] = {**resources.get("limits", {}), GPU_RESOURCE: spec.accelerator.count}
    return resources


def _has_cpu_limit(spec: InferenceServiceSpec) -> bool:
    return spec.resources is not None and "cpu" in (spec.resources.limits or {})


def _fetch_container(
    name: str,
    image: str,
    args: list[str],
    uri: str,
    mv: ModelVersionSpec,
    resources: dict[str, Any],
) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "mountPath": MODEL_DIR},
        {"name": SCRATCH_VOLUME, "mountPath": "/tmp"},
    ]
    claim = claim_of(uri)
    if claim is not None:
        mounts.append(
            {"name": _claim_volume(claim), "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
        )
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        # The model-server image's entrypoint is kiln-server.
        "args": args,
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    if resources:
        container["resources"] = resources
    if mv.credentials is not None:
        container["envFrom"] = [{"secretRef": {"name": mv.credentials.name}}]
    return container


def _claim_volume(claim: str) -> str:
    # Claim names are DNS subdomains (up to 253 characters, dots allowed); volume names
    # must be DNS labels, so the volume is named by a digest of the claim.
    return f"claim-{naming.digest(claim)}"


def _pod_spec(
    spec: InferenceServiceSpec,
    mv: ModelVersionSpec,
    image: str,
    gpu_node_selector: Mapping[str, str] | None,
    pull_secrets: Sequence[str],
) -> dict[str, Any]:
    resources = _resources(spec)
    # The init containers get the server's CPU and memory (not its GPUs): a pod's request
    # is the larger of its init and regular containers', so this costs no extra capacity
    # and keeps the pod's QoS class what the user asked for.
    fetch_resources = {
        kind: {k: v for k, v in amounts.items() if k != GPU_RESOURCE}
        for kind, amounts in resources.items()
    }
    fetch_resources = {kind: amounts for kind, amounts in fetch_resources.items() if amounts}
    init_containers = [
        _fetch_container(
            naming.FETCH_CONTAINER,
            image,
            _fetch_args(mv.artifact.uri, mv.artifact.sha256),
            mv.artifact.uri,
            mv,
            fetch_resources,
        )
    ]
    if mv.baseline is not None:
        init_containers.append(
            _fetch_container(
                BASELINE_FETCH_CONTAINER,
                image,
                _fetch_args(mv.baseline.uri, mv.baseline.sha256, BASELINE_FILENAME),
                mv.baseline.uri,
                mv,
                fetch_resources,
            )
        )
    server: dict[str, Any] = {
        "name": naming.SERVER_CONTAINER,
        "image": image,
        "args": _serve_args(spec, mv),
        "ports": [{"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}],
        # Loading and warming a large model may take minutes; until then liveness waits.
        "startupProbe": _probe(READY_PATH, period=2, failures=150),
        "readinessProbe": _probe(READY_PATH, period=5, failures=2),
        "livenessProbe": _probe(LIVE_PATH, period=10, failures=3),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True},
            {"name": SCRATCH_VOLUME, "mountPath": "/tmp"},
        ],
    }
    if resources:
        server["resources"] = resources
    if spec.threads is None and _has_cpu_limit(spec):
        # The API promises one ONNX Runtime thread per core of the CPU limit; the server's
        # own default counts the node's cores, which a CFS quota does not shrink. A flag
        # given on the command line would win over this variable.
        server["env"] = [
            {
                "name": "KILN_THREADS",
                "valueFrom": {
                    "resourceFieldRef": {
                        "containerName": naming.SERVER_CONTAINER,
                        "resource": "limits.cpu",
                        "divisor": "1",
                    }
                },
            }
        ]

    claims = sorted(
        {
            claim
            for uri in (mv.artifact.uri, mv.baseline.uri if mv.baseline else "")
            if (claim := claim_of(uri))
        }
    )
    volumes: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "emptyDir": {}},
        {"name": SCRATCH_VOLUME, "emptyDir": {}},
    ]
    volumes += [
        {
            "name": _claim_volume(claim),
            "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
        }
        for claim in claims
    ]
    pod: dict[str, Any] = {
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # Service links put `<SERVICE>_PORT=tcp://...` into the environment: a Service named
        # `kiln` would set KILN_PORT, which kiln-server reads as its --port and rejects.
        "enableServiceLinks": False,
        "initContainers": init_containers,
        "containers": [server],
        "volumes": volumes,
    }
    place(
        pod, spec.accelerator is not None, gpu_node_selector, spec.node_selector, spec.tolerations
    )
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    else:
        # The model server never talks to the API server.
        pod["automountServiceAccountToken"] = False
    return pod


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
    }


def desired_services(
    isvc: dict[str, Any], stable_version: int, canary_version: int | None
) -> list[dict[str, Any]]:
    """``<name>`` (every serving pod: the replica-ratio split), ``<name>-stable`` and
    ``<name>-canary`` (one version each; the canary Service selects the stable version
    while there is no canary, so a weighted route always has a live backend)."""
    name = isvc["metadata"]["name"]
    labels = serving_labels(isvc)
    every_pod = {naming.INFERENCE_SERVICE_LABEL: naming.label_value(name)}
    canary = canary_version if canary_version is not None else stable_version
    return [
        _service(isvc, name, labels, every_pod),
        _service(
            isvc,
            naming.stable_service_name(name),
            {**labels, naming.TRACK_LABEL: "stable"},
            serving_selector(name, stable_version),
        ),
        _service(
            isvc,
            naming.canary_service_name(name),
            {**labels, naming.TRACK_LABEL: "canary"},
            serving_selector(name, canary),
        ),
    ]


def _service(
    isvc: dict[str, Any], name: str, labels: Mapping[str, str], selector: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(isvc, name, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def desired_pdb(isvc: dict[str, Any]) -> dict[str, Any]:
    """At most one model-server pod of ``isvc`` (over all versions) evicted at a time."""
    name = isvc["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(isvc, name, serving_labels(isvc)),
        "spec": {
            "selector": {"matchLabels": {naming.INFERENCE_SERVICE_LABEL: naming.label_value(name)}},
            "maxUnavailable": 1,
        },
    }


def desired_hpa(
    isvc: dict[str, Any],
    spec: InferenceServiceSpec,
    deployment_name: str,
    min_replicas: int,
    max_replicas: int,
) -> dict[str, Any]:
    """The HorizontalPodAutoscaler of one served version's Deployment, named like it.

    ``concurrency`` scales on the model servers' in-flight gauge per pod, which needs a
    custom-metrics adapter (e.g. prometheus-adapter) to serve it.
    """
    if spec.autoscaling is None:
        raise ValueError(f"{deployment_name}: an HPA needs spec.autoscaling")
    target = spec.autoscaling.target
    metric: dict[str, Any]
    if spec.autoscaling.metric == "cpu":
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": contract.IN_FLIGHT},
                "target": {"type": "AverageValue", "averageValue": str(target)},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(isvc, deployment_name, serving_labels(isvc)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name,
            },
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [metric],
        },
    }


def desired_http_route(
    isvc: dict[str, Any], spec: InferenceServiceSpec, stable_weight: int, canary_weight: int
) -> dict[str, Any]:
    """The Gateway API HTTPRoute splitting traffic exactly between the stable and canary
    Services (``trafficRouter: gatewayAPI``)."""
    name = isvc["metadata"]["name"]
    gateway = spec.rollout.gateway
    if gateway is None:
        raise ValueError(f"{name}: an HTTPRoute needs spec.rollout.gateway")
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway.name,
    }
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    if gateway.section_name:
        parent["sectionName"] = gateway.section_name
    route_spec: dict[str, Any] = {"parentRefs": [parent]}
    if spec.rollout.hostnames:
        route_spec["hostnames"] = list(spec.rollout.hostnames)
    route_spec["rules"] = [
        {
            "backendRefs": [
                {
                    "name": naming.stable_service_name(name),
                    "port": SERVICE_PORT,
                    "weight": stable_weight,
                },
                {
                    "name": naming.canary_service_name(name),
                    "port": SERVICE_PORT,
                    "weight": canary_weight,
                },
            ]
        }
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _metadata(isvc, name, serving_labels(isvc)),
        "spec": route_spec,
    }


def service_url(isvc_name: str, namespace: str, model: str) -> str:
    """Where clients send Open Inference Protocol v2 requests for ``model``."""
    return f"http://{isvc_name}.{namespace}.svc.cluster.local/v2/models/{model}"

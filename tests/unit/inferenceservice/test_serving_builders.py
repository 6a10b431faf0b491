"""The children of an InferenceService, built without a client: a version's Deployment
(fetching init containers, the server's flags, probes, restricted pods, GPU placement), the
three Services, the PDB, the HPA and the HTTPRoute. Built-in kinds are also checked
field by field against the Kubernetes API's own types, so a misspelt field fails here and
not on a cluster."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes.client
import pytest

from kiln_operator import naming
from kiln_operator.api.inferenceservice import InferenceServiceSpec
from kiln_operator.builders.serving import (
    desired_deployment,
    desired_hpa,
    desired_http_route,
    desired_pdb,
    desired_services,
    service_url,
    serving_pod_labels,
    serving_selector,
)
from tests.kubeemu.builtin_validation import deployment_causes

Obj = dict[str, Any]

SHA = "ab" * 32
BASELINE_SHA = "cd" * 32
IMAGE = "kiln-server:dev"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
PARENT_LABELS = {"app.kubernetes.io/instance": "argo-app", "argocd.argoproj.io/x": "y", "t": "a"}


def inference_service(name: str = "iris", **spec: Any) -> Obj:
    body: Obj = {"model": {"name": "iris", "version": 3}}
    body.update(spec)
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": "isvc-uid",
            "generation": 1,
            "labels": dict(PARENT_LABELS),
            "annotations": {"team": "a", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": body,
    }


def spec_of(isvc: Obj) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(isvc["spec"])


def model_version(version: int = 3, **spec: Any) -> Obj:
    body: Obj = {
        "model": "iris",
        "version": version,
        "artifact": {"uri": f"pvc://models/iris/v{version}/model.onnx", "sha256": SHA},
    }
    body.update(spec)
    return {
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"iris-v{version}", "namespace": "ml", "uid": "mv-uid"},
        "spec": body,
    }


def deployment(
    mv: Obj | None = None,
    track: str = "stable",
    replicas: int | None = 2,
    gpu_node_selector: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    isvc = inference_service(**spec)
    return desired_deployment(
        isvc,
        spec_of(isvc),
        mv or model_version(),
        track,  # type: ignore[arg-type]
        replicas,
        IMAGE,
        gpu_node_selector,
    )


def pod_of(body: Obj) -> Obj:
    pod: Obj = body["spec"]["template"]["spec"]
    return pod


def server_of(body: Obj) -> Obj:
    (server,) = pod_of(body)["containers"]
    assert server["name"] == naming.SERVER_CONTAINER
    return server  # type: ignore[no-any-return]


def init_of(body: Obj) -> dict[str, Obj]:
    return {c["name"]: c for c in pod_of(body)["initContainers"]}


def flags(args: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of a command line (after its subcommand)."""
    pairs = args[1:]
    assert len(pairs) % 2 == 0, args
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def mounts(container: Obj) -> dict[str, bool | None]:
    return {m["mountPath"]: m.get("readOnly") for m in container.get("volumeMounts", [])}


# -- checks against the Kubernetes API's own types ------------------------------------------

_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\(?\[?str, (.+)[\])]$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (int, str, dict, list),  # IntOrString, free-form
}
#: Quantities, which the client types as strings but the API server also takes as numbers.
_QUANTITY_MAPS = {"V1ResourceRequirements": ("limits", "requests")}


def type_problems(value: Any, type_name: str, path: str = "") -> list[str]:
    """Every field of ``value`` that the Kubernetes API type ``type_name`` (as the official
    client names it, e.g. ``V1Deployment``) does not have, or whose value has the wrong type."""
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        return [p for i, v in enumerate(value) for p in type_problems(v, match[1], f"{path}[{i}]")]
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {value!r}"]
        return [p for k, v in value.items() for p in type_problems(v, match[1], f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        wanted = _PRIMITIVES[type_name]
        ok = isinstance(value, wanted) and (bool in wanted or not isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    model = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name}), got {value!r}"]
    by_wire = {wire: attr for attr, wire in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_wire:
            problems.append(f"{path}.{key}: no such field of {type_name}")
        else:
            item_type = model.openapi_types[by_wire[key]]
            if key in _QUANTITY_MAPS.get(type_name, ()):
                item_type = "Dict[str, object]"
            problems += type_problems(item, item_type, f"{path}.{key}")
    return problems


def assert_valid(body: Obj, type_name: str) -> None:
    """``body`` has only fields of ``type_name``, of the right types, and every field the
    type requires (the client's models refuse a missing required field)."""
    assert type_problems(body, type_name) == []
    # The client's own JSON-to-model step, without its HTTP wrapper (whose signature
    # differs between client releases), on quantities as the API server returns them.
    client = kubernetes.client.ApiClient()
    client._ApiClient__deserialize(_quantities_as_strings(body), type_name)  # type: ignore[attr-defined]


def _quantities_as_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_quantities_as_strings(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: {q: str(n) for q, n in v.items()}
        if k in ("limits", "requests") and isinstance(v, dict)
        else _quantities_as_strings(v)
        for k, v in value.items()
    }


def assert_owned_and_clean(body: Obj) -> None:
    """Owned by the InferenceService as its controller; none of its labels or annotations."""
    (owner,) = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "InferenceService",
        "iris",
        "isvc-uid",
        True,
    )
    assert body["metadata"]["namespace"] == "ml"
    for key in PARENT_LABELS:
        assert key not in body["metadata"]["labels"]
    assert body["metadata"]["annotations"] == {naming.INFERENCE_SERVICE_ANNOTATION: "iris"}


# -- the Deployment ---------------------------------------------------------------------------


def test_one_deployment_per_version_owned_and_labelled_with_its_track() -> None:
    body = deployment(model_version(7), track="canary")
    assert (body["apiVersion"], body["kind"]) == ("apps/v1", "Deployment")
    assert body["metadata"]["name"] == "iris-v7"
    assert_owned_and_clean(body)
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/name": "kiln-server",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "kiln",
        naming.INFERENCE_SERVICE_LABEL: "iris",
        naming.MODEL_LABEL: "iris",
        naming.MODEL_VERSION_LABEL: "7",
        naming.TRACK_LABEL: "canary",
    }
    assert_valid(body, "V1Deployment")


def test_the_pod_template_carries_no_track_so_promotion_restarts_nothing() -> None:
    stable, canary = deployment(track="stable"), deployment(track="canary")
    assert stable["spec"]["template"] == canary["spec"]["template"]
    assert stable["spec"]["selector"] == canary["spec"]["selector"]
    template = stable["spec"]["template"]["metadata"]
    assert naming.TRACK_LABEL not in template["labels"]
    assert template["labels"] == serving_pod_labels(inference_service(), "iris", 3)
    assert template["annotations"] == {naming.INFERENCE_SERVICE_ANNOTATION: "iris"}


def test_the_selector_is_the_version_and_matches_the_template() -> None:
    body = deployment()
    assert body["spec"]["selector"] == {"matchLabels": serving_selector("iris", 3)}
    assert serving_selector("iris", 3) == {
        naming.INFERENCE_SERVICE_LABEL: "iris",
        naming.MODEL_VERSION_LABEL: "3",
    }
    # The emulator's stand-in for the API server's own Deployment validation.
    assert deployment_causes(body, None) == []


def test_long_names_become_valid_label_values_but_the_annotation_keeps_them() -> None:
    name = "a" * 70
    isvc = inference_service(name)
    body = desired_deployment(isvc, spec_of(isvc), model_version(), "stable", 1, IMAGE, None)
    label = body["metadata"]["labels"][naming.INFERENCE_SERVICE_LABEL]
    assert len(label) <= 63
    assert label == naming.label_value(name)
    assert body["spec"]["selector"]["matchLabels"][naming.INFERENCE_SERVICE_LABEL] == label
    assert body["metadata"]["annotations"][naming.INFERENCE_SERVICE_ANNOTATION] == name


def test_replicas_are_left_out_when_an_hpa_owns_them() -> None:
    assert deployment(replicas=4)["spec"]["replicas"] == 4
    assert deployment(replicas=0)["spec"]["replicas"] == 0
    assert "replicas" not in deployment(replicas=None)["spec"]


def test_updates_surge_one_pod_and_never_lose_capacity() -> None:
    spec = deployment()["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["revisionHistoryLimit"] == 2


def test_the_init_container_fetches_the_verified_artifact_from_a_read_only_claim() -> None:
    body = deployment()
    (fetch,) = init_of(body).values()
    assert fetch["name"] == naming.FETCH_CONTAINER
    assert fetch["image"] == IMAGE
    assert "command" not in fetch  # the image's entrypoint, kiln-server
    assert fetch["args"] == [
        "fetch", "--uri", "pvc://models/iris/v3/model.onnx", "--sha256", SHA,
        "--dest", "/models", "--pvc-root", "/mnt/pvc",
    ]  # fmt: skip
    assert mounts(fetch) == {"/models": None, "/tmp": None, "/mnt/pvc/models": True}
    (claim,) = [v for v in pod_of(body)["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert "envFrom" not in fetch


def test_the_baseline_is_fetched_by_a_second_init_container_with_the_credentials() -> None:
    mv = model_version(
        artifact={"uri": "https://store.example/iris/model.onnx", "sha256": SHA},
        baseline={"uri": "pvc://stats/iris/baseline.json", "sha256": BASELINE_SHA},
        credentials={"name": "store-credentials"},
    )
    body = deployment(mv)
    inits = init_of(body)
    assert list(inits) == [naming.FETCH_CONTAINER, "fetch-baseline"]
    assert inits["fetch-baseline"]["args"] == [
        "fetch", "--uri", "pvc://stats/iris/baseline.json", "--sha256", BASELINE_SHA,
        "--dest", "/models", "--filename", "baseline.json", "--pvc-root", "/mnt/pvc",
    ]  # fmt: skip
    # Each init container mounts the claim it reads, read-only; the http artifact needs none.
    assert mounts(inits["fetch"]) == {"/models": None, "/tmp": None}
    assert mounts(inits["fetch-baseline"]) == {
        "/models": None,
        "/tmp": None,
        "/mnt/pvc/stats": True,
    }
    for init in inits.values():
        assert init["envFrom"] == [{"secretRef": {"name": "store-credentials"}}]
    assert "envFrom" not in server_of(body)
    assert_valid(body, "V1Deployment")


def test_a_baseline_without_a_digest_is_fetched_without_one() -> None:
    mv = model_version(baseline={"uri": "pvc://models/iris/v3/baseline.json"})
    args = init_of(deployment(mv))["fetch-baseline"]["args"]
    assert "--sha256" not in args
    assert flags(args)["--filename"] == "baseline.json"
    # The artifact and baseline share a claim: one volume, mounted by both.
    claims = [v for v in pod_of(deployment(mv))["volumes"] if "persistentVolumeClaim" in v]
    assert len(claims) == 1


def test_claims_reach_the_init_containers_only_and_the_server_reads_the_model_read_only() -> None:
    mv = model_version(baseline={"uri": "pvc://stats/iris/baseline.json"})
    body = deployment(mv)
    assert mounts(server_of(body)) == {"/models": True, "/tmp": None}
    volumes = {v["name"]: v for v in pod_of(body)["volumes"]}
    assert volumes["model"] == {"name": "model", "emptyDir": {}}
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
    claims = sorted(
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes.values()
        if "persistentVolumeClaim" in v
    )
    assert claims == ["models", "stats"]


def test_the_server_is_told_its_model_batching_and_device() -> None:
    server = server_of(deployment(batching={"maxBatchSize": 32, "maxQueueDelayMs": 2.5}))
    assert server["image"] == IMAGE
    assert server["args"][0] == "serve"
    assert flags(server["args"]) == {
        "--model-dir": "/models",
        "--model-name": "iris",
        "--model-version": "3",
        "--port": "8080",
        "--max-batch-size": "32",
        "--max-queue-delay-ms": "2.5",
        "--device": "cpu",
    }
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_defaults_of_batching_reach_the_server() -> None:
    options = flags(server_of(deployment())["args"])
    assert options["--max-batch-size"] == "64"
    assert options["--max-queue-delay-ms"] == "0"
    assert "--threads" not in options
    assert "--drift-window" not in options


def test_threads_and_the_drift_window_are_passed_when_set() -> None:
    server = server_of(deployment(threads=4, monitoring={"drift": {"window": 500}}))
    options = flags(server["args"])
    assert options["--threads"] == "4"
    assert options["--drift-window"] == "500"
    assert "env" not in server
    default_window = flags(server_of(deployment(monitoring={"drift": {}}))["args"])
    assert default_window["--drift-window"] == "1000"


def test_without_threads_the_server_uses_one_thread_per_core_of_its_cpu_limit() -> None:
    server = server_of(deployment(resources={"limits": {"cpu": "2", "memory": "1Gi"}}))
    assert server["env"] == [
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
    assert "env" not in server_of(deployment(resources={"requests": {"cpu": "2"}}))


def test_probes_wait_for_the_model_then_watch_readiness_and_liveness() -> None:
    server = server_of(deployment())
    http = {"path": "/v2/health/ready", "port": "http"}
    assert server["startupProbe"] == {"httpGet": http, "periodSeconds": 2, "failureThreshold": 150}
    assert server["readinessProbe"] == {"httpGet": http, "periodSeconds": 5, "failureThreshold": 2}
    assert server["livenessProbe"] == {
        "httpGet": {"path": "/v2/health/live", "port": "http"},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }


def test_the_pod_runs_restricted_and_outlasts_the_drain() -> None:
    body = deployment(baseline={"uri": "pvc://stats/iris/baseline.json"})
    pod = pod_of(body)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        }
    assert pod["terminationGracePeriodSeconds"] == 40
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert pod["enableServiceLinks"] is False


def test_a_service_account_is_used_when_named() -> None:
    pod = pod_of(deployment(serviceAccountName="model-reader"))
    assert pod["serviceAccountName"] == "model-reader"
    assert "automountServiceAccountToken" not in pod


def test_resources_go_to_the_server_and_cpu_memory_to_the_init_containers() -> None:
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    body = deployment(resources=resources)
    assert server_of(body)["resources"] == resources
    assert init_of(body)["fetch"]["resources"] == resources
    assert "resources" not in server_of(deployment())


def test_an_accelerator_places_the_pod_on_gpu_nodes_and_selects_cuda() -> None:
    body = deployment(
        gpu_node_selector=H100,
        accelerator={"type": "nvidia-h100", "count": 2},
        resources={"limits": {"memory": "8Gi"}},
        nodeSelector={"zone": "a"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml"}],
    )
    server = server_of(body)
    assert server["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 2}
    assert flags(server["args"])["--device"] == "cuda"
    # GPUs are the server's alone; the fetch does not hold any.
    assert init_of(body)["fetch"]["resources"] == {"limits": {"memory": "8Gi"}}
    pod = pod_of(body)
    assert pod["nodeSelector"] == {**H100, "zone": "a"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    assert_valid(body, "V1Deployment")


def test_the_spec_node_selector_wins_over_the_accelerator_map() -> None:
    pod = pod_of(
        deployment(
            gpu_node_selector=H100,
            accelerator={"type": "nvidia-h100"},
            nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-NVL"},
        )
    )
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-NVL"}


def test_a_user_gpu_toleration_is_not_repeated() -> None:
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    pod = pod_of(deployment(gpu_node_selector=H100, accelerator={"type": "x"}, tolerations=[gpu]))
    assert pod["tolerations"] == [gpu]


def test_without_an_accelerator_the_pod_stays_off_gpus() -> None:
    body = deployment()
    pod = pod_of(body)
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert flags(server_of(body)["args"])["--device"] == "cpu"
    assert "nvidia.com/gpu" not in json.dumps(body)


# -- Services, PDB, HPA, HTTPRoute ------------------------------------------------------------


def test_three_services_select_every_track_the_stable_and_the_canary_version() -> None:
    everything, stable, canary = desired_services(inference_service(), 3, 4)
    assert [s["metadata"]["name"] for s in (everything, stable, canary)] == [
        "iris",
        "iris-stable",
        "iris-canary",
    ]
    assert everything["spec"]["selector"] == {naming.INFERENCE_SERVICE_LABEL: "iris"}
    assert stable["spec"]["selector"] == serving_selector("iris", 3)
    assert canary["spec"]["selector"] == serving_selector("iris", 4)
    assert naming.TRACK_LABEL not in everything["metadata"]["labels"]
    assert stable["metadata"]["labels"][naming.TRACK_LABEL] == "stable"
    assert canary["metadata"]["labels"][naming.TRACK_LABEL] == "canary"
    for service in (everything, stable, canary):
        assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
        ]
        assert service["metadata"]["labels"][naming.NAME_LABEL] == "kiln-server"
        assert naming.MODEL_VERSION_LABEL not in service["metadata"]["labels"]
        assert_owned_and_clean(service)
        assert_valid(service, "V1Service")


def test_without_a_canary_the_canary_service_selects_the_stable_version() -> None:
    _, stable, canary = desired_services(inference_service(), 3, None)
    assert canary["spec"]["selector"] == stable["spec"]["selector"] == serving_selector("iris", 3)


def test_the_pdb_covers_every_serving_pod() -> None:
    pdb = desired_pdb(inference_service())
    assert (pdb["apiVersion"], pdb["kind"], pdb["metadata"]["name"]) == (
        "policy/v1",
        "PodDisruptionBudget",
        "iris",
    )
    assert pdb["spec"] == {
        "selector": {"matchLabels": {naming.INFERENCE_SERVICE_LABEL: "iris"}},
        "maxUnavailable": 1,
    }
    assert_owned_and_clean(pdb)
    assert_valid(pdb, "V1PodDisruptionBudget")


@pytest.mark.parametrize(
    ("autoscaling", "metric"),
    [
        pytest.param(
            {"maxReplicas": 5, "target": 60},
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 60},
                },
            },
            id="cpu",
        ),
        pytest.param(
            {"maxReplicas": 5, "metric": "concurrency", "target": 8},
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "kiln_inference_requests_in_flight"},
                    "target": {"type": "AverageValue", "averageValue": "8"},
                },
            },
            id="concurrency",
        ),
    ],
)
def test_the_hpa_scales_a_version_on_its_metric(autoscaling: Obj, metric: Obj) -> None:
    isvc = inference_service(autoscaling=autoscaling)
    hpa = desired_hpa(isvc, spec_of(isvc), "iris-v3", 2, 5)
    assert (hpa["apiVersion"], hpa["kind"], hpa["metadata"]["name"]) == (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "iris-v3",
    )
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-v3"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [metric],
    }
    assert_owned_and_clean(hpa)
    assert_valid(hpa, "V2HorizontalPodAutoscaler")


def test_an_hpa_without_autoscaling_is_a_programming_error() -> None:
    isvc = inference_service(replicas=2)
    with pytest.raises(ValueError, match=r"needs spec\.autoscaling"):
        desired_hpa(isvc, spec_of(isvc), "iris-v3", 1, 1)


def test_the_http_route_splits_exactly_between_stable_and_canary() -> None:
    isvc = inference_service(
        rollout={
            "trafficRouter": "gatewayAPI",
            "gateway": {"name": "public", "namespace": "gateways", "sectionName": "https"},
            "hostnames": ["iris.example.com"],
        }
    )
    route = desired_http_route(isvc, spec_of(isvc), 90, 10)
    assert (route["apiVersion"], route["kind"], route["metadata"]["name"]) == (
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "iris",
    )
    assert route["spec"] == {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "public",
                "namespace": "gateways",
                "sectionName": "https",
            }
        ],
        "hostnames": ["iris.example.com"],
        "rules": [
            {
                "backendRefs": [
                    {"name": "iris-stable", "port": 80, "weight": 90},
                    {"name": "iris-canary", "port": 80, "weight": 10},
                ]
            }
        ],
    }
    assert_owned_and_clean(route)


def test_a_route_to_a_gateway_of_the_same_namespace_names_only_the_gateway() -> None:
    isvc = inference_service(rollout={"trafficRouter": "gatewayAPI", "gateway": {"name": "gw"}})
    route = desired_http_route(isvc, spec_of(isvc), 100, 0)
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    ]
    assert "hostnames" not in route["spec"]
    weights = [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [100, 0]


def test_the_url_is_the_all_tracks_service_in_cluster_dns() -> None:
    assert service_url("iris", "ml", "iris") == ("http://iris.ml.svc.cluster.local/v2/models/iris")


def test_the_schema_check_catches_a_misspelt_field() -> None:
    body = deployment()
    pod_of(body)["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    pod_of(body)["terminationGracePeriodSeconds"] = "40"
    problems = sorted(type_problems(body, "V1Deployment"))
    assert problems == [
        ".spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem: "
        "no such field of V1SecurityContext",
        ".spec.template.spec.terminationGracePeriodSeconds: expected int, got '40'",
    ]


def test_serving_pods_pull_with_the_operators_model_server_secrets_only_when_given() -> None:
    assert "imagePullSecrets" not in pod_of(deployment())
    isvc = inference_service()
    body = desired_deployment(
        isvc, spec_of(isvc), model_version(), "stable", 1, IMAGE, None, ("regcred", "b.c")
    )
    assert pod_of(body)["imagePullSecrets"] == [{"name": "regcred"}, {"name": "b.c"}]

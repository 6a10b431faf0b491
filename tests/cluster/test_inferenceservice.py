"""InferenceService end to end at the API level: the real ``kiln-operator`` validates
ModelVersions (their validation pods really run ``kiln-server validate`` here), serves them
with Deployments whose pods really run ``kiln-server`` on loopback addresses reported as
pod IPs, and judges canaries from those servers' real ``/metrics`` while the test sends
traffic to the pods in the proportion the status reports.

Covers: a pinned version served (children, labels, status, url, no writes when steady); a
healthy canary promoted through every step with no pod restarted; a canary answering 5xx
and one too slow, each rolled back within one analysis interval with stable unharmed; low
traffic inconclusive, not aborted; pause holding the step; SIGKILL mid-rollout resuming at
the same step; Immediate switching; Gateway API weights; a missing pinned version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_modelversion import CLAIM, model_version, place, wait_for_validation_job
from tests.cluster.test_trainingjob import condition, wait_until
from tests.server import models
from tests.support.backends import Cluster, install_crds, open_schema_crd
from tests.support.kube import KubeClient, Obj
from tests.support.kubelet import Workloads
from tests.support.operator import OperatorProcess
from tests.support.serving import ModelServers, Traffic, infer_body
from tests.support.validation import run_validation_job

KILN = "kiln.dev/v1alpha1"
API_REQUESTS = "kiln_operator_api_requests_total"
WRITE_VERBS = ("create", "apply", "patch", "delete")
#: Short steps and intervals, so a whole rollout takes seconds.
INTERVAL = 2.0
FAST_ANALYSIS = {"interval": "2s", "minRequests": 15, "maxErrorRate": 0.05}
HEALTHY_INPUT = infer_body(8, 0.5)
#: The first feature 7: the canary that looks rows up by it fails on these.
LIVE_INPUT = infer_body(8, 7.0)


@dataclass
class Rig:
    kube: KubeClient
    namespace: str
    workloads: Workloads
    operator: OperatorProcess
    servers: ModelServers
    pvc_root: Path
    cluster: Cluster

    def register(
        self, version: int, build: Callable[[str], str] = models.tabular, **spec: Any
    ) -> Obj:
        """A ModelVersion of model iris, validated for real; returns its status."""
        uri, sha256 = place(self.pvc_root, f"iris/v{version}", build)
        body = model_version(f"iris-v{version}", uri, sha256, version=version, **spec)
        body["metadata"]["labels"] = {"kiln.dev/model": "iris"}
        self.kube.apply_manifest([body], self.namespace)
        job = wait_for_validation_job(self.kube, self.namespace, f"iris-v{version}")
        run_validation_job(self.kube, self.workloads, job, self.pvc_root)
        return wait_until(  # type: ignore[no-any-return]
            f"iris-v{version} Ready",
            lambda: (
                (s := mv_status(self.kube, self.namespace, version)).get("phase") == "Ready" and s
            ),
        )

    def status(self, name: str = "iris") -> Obj:
        return self.kube.get(KILN, "InferenceService", name, self.namespace).get("status") or {}

    def deployment(self, version: int, name: str = "iris") -> Obj | None:
        return self.kube.get_or_none("apps/v1", "Deployment", f"{name}-v{version}", self.namespace)

    def serve_version(self, version: int, name: str = "iris") -> Obj:
        """Wait for the version's Deployment, then run its pods."""
        deployment = wait_until(
            f"Deployment {name}-v{version}", lambda: self.deployment(version, name)
        )
        self.servers.run_deployment(deployment)
        return deployment  # type: ignore[no-any-return]

    def wait_status(self, what: str, check: Callable[[Obj], Any], timeout: float = 60.0) -> Obj:
        return wait_until(  # type: ignore[no-any-return]
            what, lambda: (s := self.status()) and check(s) and s, timeout=timeout
        )

    def writes(self) -> float:
        return sum(self.operator.metric(API_REQUESTS, verb=verb) for verb in WRITE_VERBS)


def mv_status(kube: KubeClient, namespace: str, version: int) -> Obj:
    return kube.get(KILN, "ModelVersion", f"iris-v{version}", namespace).get("status") or {}


def inference_service(name: str = "iris", model: Obj | None = None, **spec: Any) -> Obj:
    body: Obj = {"model": model or {"name": "iris", "select": {}}}
    body.update(spec)
    return {
        "apiVersion": KILN,
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": body,
    }


def canary_rollout(**overrides: Any) -> Obj:
    rollout: Obj = {
        "strategy": "Canary",
        "steps": [{"weight": 20, "duration": "3s"}, {"weight": 50, "duration": "3s"}],
        "analysis": dict(FAST_ANALYSIS),
    }
    rollout.update(overrides)
    return rollout


@pytest.fixture
def rig(
    cluster: Cluster, kube: KubeClient, namespace: str, workloads: Workloads, tmp_path: Path
) -> Iterator[Rig]:
    pvc_root = tmp_path / "pvc"
    (pvc_root / CLAIM).mkdir(parents=True)
    servers = ModelServers(
        kube,
        pvc_root,
        plays_deployment_controller=not cluster.runs_workload_controllers,
        workdir=tmp_path,
    )
    process = OperatorProcess(
        cluster.kubeconfig,
        namespace,
        tmp_path / "kiln-operator.log",
        extra_args=[
            *("--model-server-image", "kiln-server:test", "--resync-seconds", "30"),
            *("--model-server-pull-secret", "registry-creds"),
        ],
    )
    try:
        with process.running():
            yield Rig(kube, namespace, workloads, process, servers, pvc_root, cluster)
        process.assert_no_unhandled_exceptions()
    finally:
        servers.stop_all()


def serve_v1(rig: Rig, **spec: Any) -> Obj:
    """v1 registered and serving as stable."""
    rig.register(1)
    rig.kube.apply_manifest([inference_service(**spec)], rig.namespace)
    rig.serve_version(1)
    return rig.wait_status("v1 serving", lambda s: (s.get("serving") or {}).get("version") == 1)


def serving_pods(rig: Rig, version: int) -> list[Obj]:
    selector = f"kiln.dev/inferenceservice=iris,kiln.dev/model-version={version}"
    return list(rig.kube.list("v1", "Pod", rig.namespace, label_selector=selector)["items"])


def history_events(status: Obj) -> list[tuple[int, str]]:
    return [(h["version"], h["event"]) for h in status.get("history") or []]


# -- serving one version ----------------------------------------------------------------------


def test_a_pinned_version_is_served_by_real_model_servers_and_costs_no_writes_when_steady(
    rig: Rig,
) -> None:
    rig.register(1)
    rig.kube.apply_manifest(
        [inference_service(model={"name": "iris", "version": 1}, replicas=2)], rig.namespace
    )
    deployment = wait_until("Deployment iris-v1", lambda: rig.deployment(1))
    template = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["kiln.dev/track"] == "stable"
    assert "kiln.dev/track" not in template["metadata"]["labels"]
    (server,) = template["spec"]["containers"]
    assert server["args"][:7] == [
        "serve", "--model-dir", "/models", "--model-name", "iris", "--model-version", "1",
    ]  # fmt: skip
    assert server["image"] == "kiln-server:test"
    assert template["spec"]["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"

    pods = rig.servers.run_deployment(deployment)
    status = rig.wait_status("v1 serving", lambda s: s.get("serving"))
    assert status["serving"]["modelVersion"] == "iris-v1"
    assert status["url"] == f"http://iris.{rig.namespace}.svc.cluster.local/v2/models/iris"
    assert status["desiredVersion"] == 1
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Progressing")["status"] == "False"
    assert history_events(status) == [(1, "Deployed")]
    # The operator wrote the status and nothing of what the user wrote.
    managed = rig.kube.get(KILN, "InferenceService", "iris", rig.namespace)["metadata"]
    by_operator = [m for m in managed.get("managedFields") or [] if m["manager"] == "kiln-operator"]
    assert by_operator
    assert all(m.get("subresource") == "status" for m in by_operator), by_operator
    for pod in pods:
        code, answer = pod.post("/v2/models/iris/infer", HEALTHY_INPUT)
        assert code == 200, answer
        assert answer["outputs"][0]["shape"] == [1, 3]

    services = {
        s["metadata"]["name"]: s["spec"]["selector"]
        for s in rig.kube.list("v1", "Service", rig.namespace)["items"]
    }
    assert services["iris"] == {"kiln.dev/inferenceservice": "iris"}
    assert services["iris-stable"]["kiln.dev/model-version"] == "1"
    assert services["iris-canary"]["kiln.dev/model-version"] == "1"
    assert rig.kube.get("policy/v1", "PodDisruptionBudget", "iris", rig.namespace)

    # Steady: resyncs read, and write nothing.
    rig.operator.wait_for_log(r"Deployed: version 1", timeout=10)
    time.sleep(1.0)
    before = rig.writes()
    reconciles = rig.operator.metric("kiln_operator_reconciles_total", kind="InferenceService")
    rig.kube.patch(
        KILN, "InferenceService", "iris", rig.namespace, {"metadata": {"labels": {"touch": "1"}}}
    )
    wait_until(
        "a reconcile after the touch",
        lambda: (
            rig.operator.metric("kiln_operator_reconciles_total", kind="InferenceService")
            > reconciles
        ),
    )
    time.sleep(1.0)
    assert rig.writes() == before, "a steady InferenceService was written to"


def test_a_pinned_version_that_does_not_exist_is_a_condition_and_serving_goes_on(
    rig: Rig,
) -> None:
    serve_v1(rig, model={"name": "iris", "version": 1})
    rig.kube.apply_manifest(
        [inference_service(model={"name": "iris", "version": 7})], rig.namespace
    )
    status = rig.wait_status(
        "Degraded VersionNotFound",
        lambda s: (condition(s, "Degraded") or {}).get("reason") == "VersionNotFound",
    )
    assert "version 7" in condition(status, "Degraded")["message"]
    wait_until(
        "a Warning event VersionNotFound",
        lambda: [
            e
            for e in rig.kube.list("v1", "Event", rig.namespace)["items"]
            if e["type"] == "Warning" and e["reason"] == "VersionNotFound"
        ],
    )
    assert status["serving"]["version"] == 1
    assert condition(status, "Ready")["status"] == "True"
    assert rig.deployment(1) is not None


# -- canaries ------------------------------------------------------------------------------------


def test_a_healthy_canary_is_promoted_through_every_step_without_restarting_a_pod(
    rig: Rig,
) -> None:
    serve_v1(rig, rollout=canary_rollout())
    with Traffic(
        rig.servers, rig.kube, rig.namespace, "iris", {1: LIVE_INPUT, 2: LIVE_INPUT}
    ) as traffic:
        rig.register(2)
        rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
        rig.serve_version(2)
        (canary_pod,) = rig.servers.of_version(2)
        step_two = rig.wait_status(
            "step 2", lambda s: (s.get("canary") or {}).get("step") == 1, timeout=60
        )
        assert step_two["canary"]["weight"] == 50
        promoted = rig.wait_status(
            "v2 promoted", lambda s: (s.get("serving") or {}).get("version") == 2, timeout=60
        )
    assert "canary" not in promoted
    assert history_events(promoted)[-1] == (2, "Promoted")
    assert "analyses over 2 steps" in promoted["history"][-1]["reason"]
    assert step_two["canary"]["analysis"][-1]["verdict"] == "Passed"
    assert set(traffic.codes[1]) == {200}, "stable answered something other than 200"
    assert set(traffic.codes[2]) == {200}
    # The canary became stable by relabelling: same pod, same Deployment template.
    deployment = rig.deployment(2)
    assert deployment is not None
    assert deployment["metadata"]["labels"]["kiln.dev/track"] == "stable"
    pods = serving_pods(rig, 2)
    assert [p["metadata"]["uid"] for p in pods] == [canary_pod.uid]
    services = {
        s["metadata"]["name"]: s["spec"]["selector"]
        for s in rig.kube.list("v1", "Service", rig.namespace)["items"]
    }
    assert services["iris-stable"]["kiln.dev/model-version"] == "2"
    wait_until("v1's Deployment drained and removed", lambda: rig.deployment(1) is None, timeout=30)


def rollout_with_breach(
    rig: Rig, build: Callable[[str], str], **analysis: Any
) -> tuple[Obj, Traffic, float]:
    serve_v1(rig, rollout=canary_rollout(analysis={**FAST_ANALYSIS, **analysis}))
    with Traffic(
        rig.servers, rig.kube, rig.namespace, "iris", {1: LIVE_INPUT, 2: LIVE_INPUT}
    ) as traffic:
        rig.register(2, build)
        rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
        rig.serve_version(2)
        breach_began = time.monotonic()
        aborted = rig.wait_status("v2 aborted", lambda s: s.get("abortedVersion") == 2, timeout=60)
        took = time.monotonic() - breach_began
        rig.servers.stop_version(2)
        time.sleep(0.5)
    return aborted, traffic, took


def assert_rolled_back(rig: Rig, aborted: Obj, traffic: Traffic, took: float, words: str) -> None:
    assert aborted["serving"]["version"] == 1
    assert "canary" not in aborted
    assert history_events(aborted)[-1] == (2, "Aborted")
    assert words in aborted["history"][-1]["reason"]
    assert condition(aborted, "Degraded")["reason"] == "RolloutAborted"
    # The first analysis after the canary's step began judged it: within about one interval
    # (plus the wait for the canary to be counted available and one reconcile).
    assert took < 3 * INTERVAL + 3, f"rolled back {took:.1f}s after the canary took traffic"
    assert set(traffic.codes[1]) == {200}, "a stable request failed"
    wait_until("the canary Deployment deleted", lambda: rig.deployment(2) is None)
    warnings = [
        e for e in rig.kube.list("v1", "Event", rig.namespace)["items"]
        if e["type"] == "Warning" and e["reason"] == "RolloutAborted"
    ]  # fmt: skip
    assert warnings
    # GitOps-stable: the aborted version is not tried again while nothing changes.
    time.sleep(2 * INTERVAL)
    assert "canary" not in rig.status()
    assert rig.deployment(2) is None


def test_a_canary_answering_5xx_is_rolled_back_within_one_interval(rig: Rig) -> None:
    aborted, traffic, took = rollout_with_breach(rig, models.fails_on_live_inputs)
    assert 500 in traffic.codes[2]
    assert_rolled_back(rig, aborted, traffic, took, "error rate")


def test_a_canary_that_is_too_slow_is_rolled_back_within_one_interval(rig: Rig) -> None:
    aborted, traffic, took = rollout_with_breach(rig, models.slow_tabular, maxLatencyP99="10ms")
    assert set(traffic.codes[2]) == {200}
    assert_rolled_back(rig, aborted, traffic, took, "p99")


def test_low_traffic_is_inconclusive_and_holds_the_step_instead_of_aborting(rig: Rig) -> None:
    serve_v1(rig, rollout=canary_rollout())
    rig.register(2)
    rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
    rig.serve_version(2)
    held = rig.wait_status(
        "an inconclusive hold",
        lambda s: (condition(s, "Progressing") or {}).get("reason") == "AnalysisInconclusive",
        timeout=30,
    )
    assert held["canary"]["step"] == 0
    assert {a["verdict"] for a in held["canary"]["analysis"]} == {"Inconclusive"}
    assert "fewer than" in held["canary"]["analysis"][-1]["message"]
    assert "abortedVersion" not in held
    assert condition(held, "Degraded")["status"] == "False"


def test_pause_holds_the_step_until_unpaused(rig: Rig) -> None:
    serve_v1(rig, rollout=canary_rollout(paused=True))
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", {1: LIVE_INPUT, 2: LIVE_INPUT}):
        rig.register(2)
        rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
        rig.serve_version(2)
        rig.wait_status(
            "passed analyses while paused",
            lambda s: (
                sum(a["verdict"] == "Passed" for a in (s.get("canary") or {}).get("analysis") or [])
                >= 3
            ),
            timeout=30,
        )
        paused = rig.status()
        assert paused["canary"]["step"] == 0, "a paused rollout moved on"
        assert condition(paused, "Paused")["status"] == "True"
        rig.kube.patch(
            KILN,
            "InferenceService",
            "iris",
            rig.namespace,
            {"spec": {"rollout": {"paused": False}}},
        )
        rig.wait_status(
            "step 2 once unpaused", lambda s: (s.get("canary") or {}).get("step") == 1, timeout=30
        )


def test_an_operator_killed_mid_rollout_resumes_at_the_same_step(rig: Rig) -> None:
    serve_v1(
        rig,
        rollout=canary_rollout(
            steps=[{"weight": 20, "duration": "6s"}, {"weight": 50, "duration": "3s"}]
        ),
    )
    with Traffic(rig.servers, rig.kube, rig.namespace, "iris", {1: LIVE_INPUT, 2: LIVE_INPUT}):
        rig.register(2)
        rig.wait_status("a canary of v2", lambda s: (s.get("canary") or {}).get("version") == 2)
        rig.serve_version(2)
        (pod,) = rig.servers.of_version(2)
        before = rig.wait_status(
            "a first analysis", lambda s: (s.get("canary") or {}).get("analysis")
        )
        rig.operator.kill()
        rig.operator.start()
        after = rig.wait_status(
            "another analysis after the restart",
            lambda s: (
                len((s.get("canary") or {}).get("analysis") or [])
                > len(before["canary"]["analysis"])
            ),
            timeout=30,
        )
        assert after["canary"]["stepStartedAt"] == before["canary"]["stepStartedAt"]
        assert after["canary"]["step"] == before["canary"]["step"] == 0
        promoted = rig.wait_status(
            "v2 promoted", lambda s: (s.get("serving") or {}).get("version") == 2, timeout=60
        )
    deployments = rig.kube.list("apps/v1", "Deployment", rig.namespace)["items"]
    assert len([d for d in deployments if d["metadata"]["name"] == "iris-v2"]) == 1
    pods = serving_pods(rig, 2)
    assert [p["metadata"]["uid"] for p in pods] == [pod.uid], "a pod was restarted"
    assert history_events(promoted)[-1] == (2, "Promoted")


def test_immediate_switches_once_the_new_version_is_available(rig: Rig) -> None:
    serve_v1(rig, rollout={"strategy": "Immediate"})
    rig.register(2)
    rig.serve_version(2)
    switched = rig.wait_status("v2 serving", lambda s: (s.get("serving") or {}).get("version") == 2)
    assert history_events(switched)[-1] == (2, "Promoted")
    assert not switched.get("canary")
    wait_until("v1 removed after the drain", lambda: rig.deployment(1) is None, timeout=30)


#: The Gateway API's own CRDs carry the approval annotation: *.k8s.io groups are protected.
HTTP_ROUTE_CRD: Obj = open_schema_crd(
    "gateway.networking.k8s.io",
    "HTTPRoute",
    "httproutes",
    {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"},
)


def test_gateway_api_routes_the_exact_step_weight(rig: Rig) -> None:
    install_crds(rig.kube, [HTTP_ROUTE_CRD])
    rig.kube.forget_discovery()
    rollout = canary_rollout(
        trafficRouter="gatewayAPI", gateway={"name": "web", "namespace": "infra"}
    )
    serve_v1(rig, rollout=rollout)
    route = wait_until(
        "the HTTPRoute",
        lambda: rig.kube.get_or_none(
            "gateway.networking.k8s.io/v1", "HTTPRoute", "iris", rig.namespace
        ),
    )
    weights = [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [("iris-stable", 100), ("iris-canary", 0)]
    assert route["spec"]["parentRefs"][0]["name"] == "web"
    rig.register(2)
    rig.serve_version(2)

    def split() -> list[tuple[str, int]]:
        got = rig.kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", "iris", rig.namespace)
        return [(b["name"], b["weight"]) for b in got["spec"]["rules"][0]["backendRefs"]]

    wait_until("an 80/20 split", lambda: split() == [("iris-stable", 80), ("iris-canary", 20)])
    assert rig.status()["canary"]["weight"] == 20


def test_an_accelerator_type_the_operator_does_not_know_is_a_condition_and_no_pods(
    rig: Rig,
) -> None:
    rig.register(1)
    body = inference_service(
        model={"name": "iris", "version": 1}, accelerator={"type": "nvidia-z9", "count": 1}
    )
    rig.kube.apply_manifest([body], rig.namespace)
    status = rig.wait_status(
        "UnknownAccelerator",
        lambda s: (condition(s, "Ready") or {}).get("reason") == "UnknownAccelerator",
    )
    assert "nvidia-z9" in condition(status, "Ready")["message"]
    assert condition(status, "Degraded")["status"] == "True"
    time.sleep(1.0)
    assert rig.deployment(1) is None

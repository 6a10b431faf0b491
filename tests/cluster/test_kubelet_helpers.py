"""The kubelet and controller stand-ins write what the real components write.

Reconciler tests rely on these helpers to move Jobs, Pods and Deployments along, so they
are held to the API here: pods as the Job controller creates them (labels, owner, index),
pod and Job status through ``/status`` as the kubelet and Job controller report it, and a
Deployment's availability as its controller reports it.
"""

from __future__ import annotations

import json

import pytest

from tests.support import kubelet
from tests.support.kube import KubeClient, Obj

pytestmark = pytest.mark.usefixtures("stand_in_controllers")


def indexed_job(name: str, workers: int) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "trainer"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "train", "image": "python:3.11-slim", "args": ["train.py"]}
                    ],
                },
            },
        },
    }


def test_job_pods_are_created_as_the_job_controller_would(kube: KubeClient, namespace: str) -> None:
    job = kube.create(indexed_job("train", 3), namespace)
    pods = kubelet.create_job_pods(kube, job)
    assert len(pods) == 3
    found = kubelet.pods_of_job(kube, job)
    assert [p["metadata"]["name"] for p in found] == [p["metadata"]["name"] for p in pods]
    for index, pod in enumerate(found):
        labels = pod["metadata"]["labels"]
        assert labels["batch.kubernetes.io/job-name"] == labels["job-name"] == "train"
        assert (
            labels["batch.kubernetes.io/controller-uid"]
            == labels["controller-uid"]
            == job["metadata"]["uid"]
        )
        assert labels["batch.kubernetes.io/job-completion-index"] == str(index)
        assert pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == str(
            index
        )
        assert labels["app.kubernetes.io/name"] == "trainer"
        assert pod["metadata"]["name"].startswith(f"train-{index}-")
        assert pod["spec"]["hostname"] == f"train-{index}"
        (owner,) = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Job",
            "train",
            job["metadata"]["uid"],
            True,
        )
        assert pod["spec"]["containers"][0]["args"] == ["train.py"]


def test_a_running_pod_has_an_ip_and_ready_containers(kube: KubeClient, namespace: str) -> None:
    job = kube.create(indexed_job("train", 1), namespace)
    (pod,) = kubelet.create_job_pods(kube, job)
    running = kubelet.set_pod_running(kube, pod, pod_ip="10.244.1.5")
    stored = kube.get("v1", "Pod", running["metadata"]["name"], namespace)
    assert stored["status"]["phase"] == "Running"
    assert stored["status"]["podIP"] == "10.244.1.5"
    assert stored["status"]["podIPs"] == [{"ip": "10.244.1.5"}]
    assert {c["type"]: c["status"] for c in stored["status"]["conditions"]}["Ready"] == "True"
    assert stored["status"]["containerStatuses"][0]["ready"] is True


def test_a_terminated_pod_carries_its_exit_code_and_termination_message(
    kube: KubeClient, namespace: str
) -> None:
    job = kube.create(indexed_job("train", 1), namespace)
    (pod,) = kubelet.create_job_pods(kube, job)
    kubelet.set_pod_running(kube, pod)
    result = json.dumps({"metrics": {"accuracy": 0.97}, "artifact": "pvc://models/iris/model.onnx"})
    kubelet.set_pod_terminated(kube, pod, exit_code=0, message=result)
    stored = kube.get("v1", "Pod", pod["metadata"]["name"], namespace)
    assert stored["status"]["phase"] == "Succeeded"
    terminated = stored["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert json.loads(terminated["message"]) == json.loads(result)


def test_a_failed_pod_reports_its_reason(kube: KubeClient, namespace: str) -> None:
    job = kube.create(indexed_job("train", 1), namespace)
    (pod,) = kubelet.create_job_pods(kube, job)
    kubelet.set_pod_terminated(
        kube, pod, exit_code=137, reason="OOMKilled", message="out of memory"
    )
    stored = kube.get("v1", "Pod", pod["metadata"]["name"], namespace)
    assert stored["status"]["phase"] == "Failed"
    terminated = stored["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (
        137,
        "OOMKilled",
        "out of memory",
    )


def test_a_pod_that_cannot_pull_its_image_waits_with_the_reason(
    kube: KubeClient, namespace: str
) -> None:
    job = kube.create(indexed_job("train", 1), namespace)
    (pod,) = kubelet.create_job_pods(kube, job)
    kubelet.set_pod_waiting(kube, pod, reason="ErrImagePull")
    stored = kube.get("v1", "Pod", pod["metadata"]["name"], namespace)
    assert stored["status"]["phase"] == "Pending"
    waiting = stored["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull"
    assert "python:3.11-slim" in waiting["message"]


def test_a_completed_job_has_the_job_controllers_status(kube: KubeClient, namespace: str) -> None:
    job = kube.create(indexed_job("train", 2), namespace)
    kubelet.set_job_status(kube, job, active=2)
    running = kube.get("batch/v1", "Job", "train", namespace)["status"]
    assert running["active"] == 2
    assert "conditions" not in running
    pods = kubelet.complete_job(kube, job, exit_code=0, message='{"metrics": {}}')
    assert len(pods) == 2
    status = kube.get("batch/v1", "Job", "train", namespace)["status"]
    # A real server drops the zero count (`active` is an omitempty int32).
    assert (status["succeeded"], status.get("active", 0)) == (2, 0)
    assert "active" not in status
    assert status["startTime"] == running["startTime"]
    assert status["completionTime"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["SuccessCriteriaMet"]["status"] == "True"


def test_a_failed_job_names_the_reason(kube: KubeClient, namespace: str) -> None:
    job = kube.create(indexed_job("train", 1), namespace)
    kubelet.complete_job(
        kube, job, exit_code=1, message="boom", failure_reason=kubelet.DEADLINE_EXCEEDED
    )
    status = kube.get("batch/v1", "Job", "train", namespace)["status"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert (failed["status"], failed["reason"]) == ("True", "DeadlineExceeded")
    assert status["failed"] == 1
    assert "completionTime" not in status


def test_an_available_deployment_reports_its_replicas(kube: KubeClient, namespace: str) -> None:
    labels = {"app": "serve"}
    deployment = kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "serve"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "server", "image": "kiln/server:1"}]},
                },
            },
        },
        namespace,
    )
    kubelet.set_deployment_available(kube, deployment, ready=1)
    partial = kube.get("apps/v1", "Deployment", "serve", namespace)["status"]
    assert (partial["replicas"], partial["availableReplicas"], partial["unavailableReplicas"]) == (
        3,
        1,
        2,
    )
    assert {c["type"]: c["status"] for c in partial["conditions"]}["Available"] == "False"
    kubelet.set_deployment_available(kube, deployment)
    status = kube.get("apps/v1", "Deployment", "serve", namespace)["status"]
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert (
        status["replicas"],
        status["readyReplicas"],
        status["availableReplicas"],
        status["updatedReplicas"],
    ) == (
        3,
        3,
        3,
        3,
    )
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Available": "True",
        "Progressing": "True",
    }


def test_deployment_pods_come_from_a_replica_set_with_the_template_labels(
    kube: KubeClient, namespace: str
) -> None:
    labels = {"app": "serve", "kiln.dev/track": "stable"}
    deployment = kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "serve"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "server", "image": "kiln/server:1"}]},
                },
            },
        },
        namespace,
    )
    pods = kubelet.create_deployment_pods(kube, deployment)
    assert len(pods) == 2
    (replica_set,) = kube.list("apps/v1", "ReplicaSet", namespace)["items"]
    (rs_owner,) = replica_set["metadata"]["ownerReferences"]
    assert (rs_owner["kind"], rs_owner["uid"]) == ("Deployment", deployment["metadata"]["uid"])
    template_hash = replica_set["metadata"]["labels"]["pod-template-hash"]
    assert replica_set["metadata"]["name"] == f"serve-{template_hash}"
    selected = kube.list("v1", "Pod", namespace, label_selector="app=serve,kiln.dev/track=stable")
    assert sorted(p["metadata"]["name"] for p in selected["items"]) == sorted(
        p["metadata"]["name"] for p in pods
    )
    for pod in pods:
        assert pod["metadata"]["labels"]["pod-template-hash"] == template_hash
        (owner,) = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("ReplicaSet", replica_set["metadata"]["name"])
    local = kubelet.set_pod_running(kube, pods[0], pod_ip="127.0.0.1")
    assert local["status"]["podIP"] == "127.0.0.1"
    more = kubelet.create_deployment_pods(kube, deployment, count=1)
    assert more[0]["metadata"]["ownerReferences"][0]["uid"] == replica_set["metadata"]["uid"]

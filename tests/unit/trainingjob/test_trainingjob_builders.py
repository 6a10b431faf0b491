"""The desired Job, headless Service and ModelVersion of a run, built without a client."""

from __future__ import annotations

import json
from typing import Any

from kiln_operator.builders.job import desired_headless_service, desired_job
from kiln_operator.builders.modelversion import Registration, desired_model_version
from tests.unit.trainingjob.factories import run_start, spec_of, training_job

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def build(**spec: Any) -> dict[str, Any]:
    tj = training_job(**spec)
    node_selector = H100 if "accelerator" in spec else None
    return desired_job(tj, spec_of(tj), run_start(), node_selector)


def test_the_job_is_owned_by_the_training_job_and_labelled() -> None:
    job = build()
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "TrainingJob",
        "iris",
        "uid-1234",
        True,
    )
    labels = job["metadata"]["labels"]
    assert labels["kiln.dev/trainingjob"] == "iris"
    assert labels["kiln.dev/run"] == "iris-r1-0123abcd"
    assert labels["app.kubernetes.io/managed-by"] == "kiln"
    assert job["spec"]["template"]["metadata"]["labels"] == labels


def test_parent_labels_never_reach_the_children() -> None:
    tj = training_job()
    tj["metadata"]["labels"] = {"app.kubernetes.io/instance": "argo-app", "team": "a"}
    job = desired_job(tj, spec_of(tj), run_start(), None)
    assert "app.kubernetes.io/instance" not in job["metadata"]["labels"]
    assert "team" not in job["metadata"]["labels"]


def test_the_pod_runs_restricted() -> None:
    pod = build(securityContext={"runAsUser": 1000, "fsGroup": 2000})["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000,
        "fsGroup": 2000,
    }
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert pod["restartPolicy"] == "Never"


def test_the_environment_tells_the_run_what_it_is() -> None:
    env = env_of(
        build(
            dataset={"uri": "s3://data/iris", "version": "2026-01"},
            hyperparameters={"learning-rate": "0.1", "max_depth": "4"},
            env=[{"name": "EXTRA", "value": "1"}],
        )
    )
    assert env["KILN_RUN"] == "iris-r1-0123abcd"
    assert env["KILN_MODEL"] == "iris"
    assert env["KILN_OUTPUT_DIR"] == "/kiln/output/iris-r1-0123abcd"
    assert env["KILN_OUTPUT_URI"] == "pvc://models/iris/iris-r1-0123abcd"
    assert env["KILN_DATASET_URI"] == "s3://data/iris"
    assert env["KILN_DATASET_VERSION"] == "2026-01"
    assert env["KILN_HP_LEARNING_RATE"] == "0.1"
    assert env["KILN_HP_MAX_DEPTH"] == "4"
    assert env["EXTRA"] == "1"


def test_a_user_variable_overrides_kilns_without_duplicates() -> None:
    job = build(env=[{"name": "KILN_MODEL", "value": "mine"}])
    names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("KILN_MODEL") == 1
    assert env_of(job)["KILN_MODEL"] == "mine"


def test_a_pvc_output_is_mounted_with_its_sub_path() -> None:
    pod = build()["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "kiln-output", "persistentVolumeClaim": {"claimName": "models"}}
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "kiln-output", "mountPath": "/kiln/output", "subPath": "iris"}
    ]


def test_an_s3_output_is_passed_as_a_uri_only() -> None:
    job = build(output={"uri": "s3://bucket/iris"})
    pod = job["spec"]["template"]["spec"]
    assert "volumes" not in pod
    assert env_of(job)["KILN_OUTPUT_URI"] == "s3://bucket/iris/iris-r1-0123abcd"
    assert "KILN_OUTPUT_DIR" not in env_of(job)


def test_an_accelerator_asks_for_gpus_on_matching_nodes() -> None:
    job = build(
        accelerator={"type": "nvidia-h100", "count": 2},
        resources={"limits": {"memory": "8Gi"}},
        nodeSelector={"zone": "a"},
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 2}
    assert pod["nodeSelector"] == {**H100, "zone": "a"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_workers_make_an_indexed_job_with_rendezvous_environment() -> None:
    job = build(workers=4, masterPort=23456)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert spec["template"]["spec"]["subdomain"] == "iris-r1-0123abcd"
    env = env_of(job)
    assert env["MASTER_ADDR"] == "iris-r1-0123abcd-0.iris-r1-0123abcd"
    assert env["MASTER_PORT"] == "23456"
    assert env["WORLD_SIZE"] == "4"
    rank_path = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["RANK"] == {"fieldRef": {"fieldPath": rank_path}}
    assert env["PET_NNODES"] == "4"


def test_a_single_worker_is_a_plain_job() -> None:
    job = build()
    assert "completionMode" not in job["spec"]
    assert "MASTER_ADDR" not in env_of(job)


def test_limits_of_the_spec_reach_the_job() -> None:
    spec = build(backoffLimit=2, activeDeadlineSeconds=600)["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 600)


def test_the_job_records_its_lineage_and_trigger() -> None:
    annotations = build(hyperparameters={"c": "1"})["metadata"]["annotations"]
    assert annotations["kiln.dev/trigger"] == "spec"
    assert annotations["kiln.dev/run-number"] == "1"
    lineage = json.loads(annotations["kiln.dev/lineage"])
    assert lineage == {
        "image": "train:1",
        "output": "pvc://models/iris/iris-r1-0123abcd",
        "hyperparameters": {"c": "1"},
    }


def test_the_headless_service_selects_the_runs_pods() -> None:
    service = desired_headless_service(training_job(workers=2), run_start())
    assert service["metadata"]["name"] == "iris-r1-0123abcd"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"kiln.dev/run": "iris-r1-0123abcd"}
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_the_model_version_links_but_is_not_owned() -> None:
    registration = Registration(
        run="iris-r1-0123abcd",
        artifact_uri="pvc://models/iris/iris-r1-0123abcd/model.onnx",
        sha256="ab" * 32,
        metrics={"accuracy": 0.97},
        baseline_uri="pvc://models/iris/iris-r1-0123abcd/baseline.json",
        lineage={"image": "train:1", "dataset": {"uri": "s3://d"}, "hyperparameters": {"c": "1"}},
    )
    mv = desired_model_version(training_job(), "iris", 3, registration)
    assert mv["metadata"]["name"] == "iris-v3"
    assert "ownerReferences" not in mv["metadata"]
    assert mv["metadata"]["labels"]["kiln.dev/run"] == "iris-r1-0123abcd"
    assert mv["metadata"]["labels"]["kiln.dev/trainingjob-uid"] == "uid-1234"
    assert mv["spec"] == {
        "model": "iris",
        "version": 3,
        "artifact": {"uri": registration.artifact_uri, "sha256": "ab" * 32},
        "metrics": {"accuracy": 0.97},
        "baseline": {"uri": registration.baseline_uri},
        "lineage": {
            "trainingJob": {"name": "iris", "uid": "uid-1234"},
            "run": "iris-r1-0123abcd",
            "image": "train:1",
            "dataset": {"uri": "s3://d"},
            "hyperparameters": {"c": "1"},
        },
    }

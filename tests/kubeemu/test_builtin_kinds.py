"""Built-in kinds get the defaults a real API server fills in, and its key checks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kubeemu.api import APPLY_PATCH, MERGE_PATCH, STRATEGIC_PATCH, Api
from tests.kubeemu.conftest import AS_TEST, api_with_namespace, served
from tests.kubeemu.errors import ApiError
from tests.kubeemu.options import WriteOptions


@pytest.fixture
def api() -> Api:
    return api_with_namespace()


def pod_template(image: str = "app:1") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 80}]}]},
    }


def test_deployment_defaults(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    body = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template("app")},
    }
    spec = api.create(deployments, "ns", body, AS_TEST)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    pod = spec["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["schedulerName"]) == (
        "Always",
        "ClusterFirst",
        "default-scheduler",
    )
    [container] = pod["containers"]
    assert container["imagePullPolicy"] == "Always"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_job_gets_a_selector_and_labels_from_its_uid(api: Api) -> None:
    jobs = served(api, "batch", "v1", "jobs")
    template = pod_template()
    template["spec"]["restartPolicy"] = "Never"
    job = api.create(
        jobs, "ns", {"metadata": {"name": "run"}, "spec": {"template": template}}, AS_TEST
    )
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "run"
    assert labels["controller-uid"] == uid
    assert (job["spec"]["backoffLimit"], job["spec"]["completions"]) == (6, 1)


def test_service_keeps_its_cluster_ip_across_updates(api: Api) -> None:
    services = served(api, "", "v1", "services")
    body = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}
    created = api.create(services, "ns", body, AS_TEST)
    cluster_ip = created["spec"]["clusterIP"]
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert created["spec"]["type"] == "ClusterIP"
    updated = api.update(services, "ns", "web", body, "", AS_TEST)
    assert updated["spec"]["clusterIP"] == cluster_ip
    headless = {"metadata": {"name": "workers"}, "spec": {"clusterIP": "None"}}
    assert api.create(services, "ns", headless, AS_TEST)["spec"]["clusterIP"] == "None"


def test_reapplying_a_config_that_omits_defaults_changes_nothing(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    config = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()},
    }
    options = WriteOptions(manager="kiln")
    first, _ = api.patch(deployments, "ns", "web", APPLY_PATCH, config, "", options)
    again, _ = api.patch(deployments, "ns", "web", APPLY_PATCH, config, "", options)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    scaled, _ = api.patch(
        deployments, "ns", "web", MERGE_PATCH, {"spec": {"replicas": 3}}, "", AS_TEST
    )
    assert scaled["metadata"]["generation"] == 2


def job_body(restart_policy: str = "Never", image: str = "app:1") -> dict[str, Any]:
    template = {
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "c", "image": image}]}
    }
    return {"metadata": {"name": "run"}, "spec": {"template": template}}


def test_a_job_pod_template_is_immutable(api: Api) -> None:
    jobs = served(api, "batch", "v1", "jobs")
    created = api.create(jobs, "ns", job_body(), AS_TEST)
    changed = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "app:2"}]}}}}
    with pytest.raises(ApiError) as caught:
        api.patch(jobs, "ns", "run", STRATEGIC_PATCH, changed, "", AS_TEST)
    assert caught.value.code == 422
    assert caught.value.message == (
        'Job.batch "run" is invalid: spec.template: Invalid value: core.PodTemplateSpec{...}: '
        "field is immutable"
    )
    assert (
        api.get(jobs, "ns", "run")["metadata"]["resourceVersion"]
        == (created["metadata"]["resourceVersion"])
    )


def test_a_job_restarts_only_on_failure_or_never(api: Api) -> None:
    jobs = served(api, "batch", "v1", "jobs")
    with pytest.raises(ApiError) as caught:
        api.create(jobs, "ns", job_body(restart_policy="Always"), AS_TEST)
    [cause] = caught.value.causes
    assert (cause.field, cause.message) == (
        "spec.template.spec.restartPolicy",
        'Unsupported value: "Always": supported values: "OnFailure", "Never"',
    )


def test_a_deployment_selector_must_match_its_template(api: Api) -> None:
    deployments = served(api, "apps", "v1", "deployments")
    body = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "other"}}, "template": pod_template()},
    }
    with pytest.raises(ApiError) as caught:
        api.create(deployments, "ns", body, AS_TEST)
    [cause] = caught.value.causes
    assert cause.field == "spec.template.metadata.labels"
    assert cause.message.endswith("`selector` does not match template `labels`")


def test_a_pod_may_change_only_its_images(api: Api) -> None:
    pods = served(api, "", "v1", "pods")
    api.create(pods, "ns", {"metadata": {"name": "p"}, "spec": pod_template()["spec"]}, AS_TEST)
    new_image = {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}
    updated, _ = api.patch(pods, "ns", "p", STRATEGIC_PATCH, new_image, "", AS_TEST)
    assert updated["spec"]["containers"][0]["image"] == "app:2"
    with pytest.raises(ApiError) as caught:
        api.patch(pods, "ns", "p", MERGE_PATCH, {"spec": {"hostname": "h"}}, "", AS_TEST)
    assert caught.value.causes[0].message.startswith("Forbidden: pod updates may not change")


def test_a_service_needs_ports_unless_headless(api: Api) -> None:
    services = served(api, "", "v1", "services")
    with pytest.raises(ApiError) as caught:
        api.create(services, "ns", {"metadata": {"name": "s"}, "spec": {}}, AS_TEST)
    assert [(c.field, c.message) for c in caught.value.causes] == [("spec.ports", "Required value")]

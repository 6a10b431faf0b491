"""The Kiln chart, rendered by the real ``helm template``.

Covers: ``helm lint`` is clean; the CRDs are crds/ plus the chart's labels, kept on
uninstall unless ``crds.keep`` is off, absent with ``crds.install`` off; the operator pod
meets the restricted Pod Security Standard with probes on the liveness endpoint; its flags
follow the values (scope, images, accelerator map, tuning); cluster-wide and namespaced
RBAC, with no wildcard anywhere; the aggregated user roles; the approval policy in the API
version the cluster serves, and none where it serves none; the schema refusing bad values
with their path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.accelerators import parse_accelerator_map
from kiln_operator.api.kinds import ALL_KINDS
from tests.support.helm import CHART, kinds, render, run_helm, template

ROOT = Path(__file__).resolve().parents[3]
V1_POLICY = ("--api-versions", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy")
V1BETA1_POLICY = (
    "--api-versions",
    "admissionregistration.k8s.io/v1beta1/ValidatingAdmissionPolicy",
)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


def test_helm_lint_reports_no_warning_or_error() -> None:
    result = run_helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


# -- CRDs ---------------------------------------------------------------------------------


def test_crds_are_the_generated_ones_with_the_chart_labels(default: list[dict[str, Any]]) -> None:
    rendered = {
        d["metadata"]["name"]: d for d in default if d["kind"] == "CustomResourceDefinition"
    }
    assert sorted(rendered) == sorted(f"{info.plural}.kiln.dev" for info in ALL_KINDS)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        generated = yaml.safe_load(path.read_text())
        crd = rendered[generated["metadata"]["name"]]
        assert crd["spec"] == generated["spec"]
        assert generated["metadata"]["labels"].items() <= crd["metadata"]["labels"].items()
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "kiln"
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_lose_the_keep_policy_with_crds_keep_off() -> None:
    docs = render({"crds": {"keep": False}})
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert len(crds) == len(ALL_KINDS)
    assert all("annotations" not in crd["metadata"] for crd in crds)


def test_no_crds_are_rendered_with_crds_install_off() -> None:
    docs = render({"crds": {"install": False}})
    assert "CustomResourceDefinition" not in kinds(docs)
    assert "Deployment" in kinds(docs)


# -- the operator pod ---------------------------------------------------------------------


def test_operator_pod_meets_the_restricted_pod_security_standard(
    default: list[dict[str, Any]],
) -> None:
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
    assert all("hostPath" not in volume for volume in pod["volumes"])


def test_operator_probes_its_liveness_endpoint_and_exposes_metrics(
    default: list[dict[str, Any]],
) -> None:
    container = operator_container(default)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert "--liveness-port=8080" in container["args"]
    assert "--metrics-port=9090" in container["args"]
    service = one(default, "Service", "kiln-operator-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"].items() <= (
        one(default, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_operator_watches_every_namespace_by_default(default: list[dict[str, Any]]) -> None:
    args = operator_container(default)["args"]
    assert "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--namespace")]


def test_operator_watches_only_the_listed_namespaces() -> None:
    args = operator_container(render({"watchNamespaces": ["team-a", "team-b"]}))["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_operator_flags_follow_the_values() -> None:
    docs = render(
        {
            "modelServer": {"image": "reg.example/kiln-server:1.2", "gpuImage": "reg/gpu:9"},
            "operator": {
                "logFormat": "plain",
                "resyncSeconds": 15,
                "workers": 8,
                "validationDeadlineSeconds": 120,
                "verbose": True,
            },
            "image": {"tag": "1.2.3"},
            "replicas": 2,
        }
    )
    container = operator_container(docs)
    for flag in (
        "--model-server-image=reg.example/kiln-server:1.2",
        "--model-server-gpu-image=reg/gpu:9",
        "--log-format=plain",
        "--resync-seconds=15",
        "--workers=8",
        "--validation-deadline=120",
        "--verbose",
    ):
        assert flag in container["args"]
    assert container["image"] == "ghcr.io/kiln-dev/kiln-operator:1.2.3"
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


def test_model_server_pull_secrets_reach_the_operator_and_default_to_none(
    default: list[dict[str, Any]],
) -> None:
    from kiln_operator.cli import parse_args

    assert not [a for a in operator_container(default)["args"] if "pull-secret" in a]
    docs = render({"modelServer": {"imagePullSecrets": ["regcred", "mirror.creds"]}})
    args = operator_container(docs)["args"]
    assert [a for a in args if "pull-secret" in a] == [
        "--model-server-pull-secret=regcred",
        "--model-server-pull-secret=mirror.creds",
    ]
    assert parse_args(args).model_server_pull_secrets == ("regcred", "mirror.creds")


def test_several_replicas_get_a_disruption_budget(default: list[dict[str, Any]]) -> None:
    assert "PodDisruptionBudget" not in kinds(default)
    docs = render({"replicas": 3})
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_operator_flags_parse_with_the_operators_own_command_line() -> None:
    from kiln_operator.cli import parse_args

    docs = render({"watchNamespaces": ["team-a"], "accelerators": {"l4": {"gpu": "L4"}}})
    options = parse_args(operator_container(docs)["args"])
    assert options.namespaces == ("team-a",)
    assert options.accelerator_map == "/etc/kiln/accelerators.yaml"


def test_gpu_image_is_left_to_the_operators_default_when_unset(
    default: list[dict[str, Any]],
) -> None:
    args = operator_container(default)["args"]
    assert "--model-server-image=ghcr.io/kiln-dev/kiln-server:0.1.0" in args
    assert not [a for a in args if a.startswith("--model-server-gpu-image")]


def test_image_digest_wins_over_the_tag() -> None:
    digest = "sha256:" + "a" * 64
    container = operator_container(render({"image": {"digest": digest, "tag": "9"}}))
    assert container["image"] == f"ghcr.io/kiln-dev/kiln-operator@{digest}"


def test_accelerator_map_is_a_configmap_the_operator_reads() -> None:
    accelerators = {
        "nvidia-h100": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "nvidia-l4": {"nvidia.com/gpu.product": "NVIDIA-L4", "cloud.example/pool": "gpu"},
    }
    docs = render({"accelerators": accelerators})
    config_map = one(docs, "ConfigMap", "kiln-operator-accelerators")
    parsed = parse_accelerator_map(yaml.safe_load(config_map["data"]["accelerators.yaml"]))
    assert {k: dict(v) for k, v in parsed.node_selectors.items()} == accelerators
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert "--accelerator-map=/etc/kiln/accelerators.yaml" in operator_container(docs)["args"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "accelerators")
    assert mount["mountPath"] == "/etc/kiln"
    volume = next(v for v in pod["volumes"] if v["name"] == "accelerators")
    assert volume["configMap"]["name"] == "kiln-operator-accelerators"
    # A changed map restarts the operator, which reads it only at start-up.
    changed = render({"accelerators": {"nvidia-l4": {"nvidia.com/gpu.product": "NVIDIA-L4"}}})
    annotation = "kiln.dev/accelerator-map-sha256"
    assert (
        deployment["spec"]["template"]["metadata"]["annotations"][annotation]
        != one(changed, "Deployment")["spec"]["template"]["metadata"]["annotations"][annotation]
    )


def test_no_accelerator_map_without_accelerators(default: list[dict[str, Any]]) -> None:
    assert "ConfigMap" not in kinds(default)
    assert not [a for a in operator_container(default)["args"] if "accelerator" in a]


def test_scheduling_and_pull_secrets_reach_the_operator_pod() -> None:
    values = {
        "imagePullSecrets": ["regcred"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "system-cluster-critical",
    }
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"


# -- RBAC ---------------------------------------------------------------------------------

OPERATOR_NEEDS = {
    ("kiln.dev", "trainingjobs", "watch"),
    ("kiln.dev", "trainingjobs", "patch"),
    ("kiln.dev", "modelversions", "create"),
    ("kiln.dev", "inferenceservices/status", "patch"),
    ("batch", "jobs", "create"),
    ("apps", "deployments", "patch"),
    ("", "events", "create"),
}


def test_cluster_wide_mode_grants_the_operator_one_cluster_role(
    default: list[dict[str, Any]],
) -> None:
    role = one(default, "ClusterRole", "kiln-operator")
    assert granted(role["rules"]) >= OPERATOR_NEEDS
    binding = one(default, "ClusterRoleBinding", "kiln-operator")
    assert binding["roleRef"]["name"] == "kiln-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kiln-operator", "namespace": "kiln-system"}
    ]
    assert "Role" not in kinds(default)
    assert "RoleBinding" not in kinds(default)


def test_namespaced_mode_grants_a_role_per_watched_namespace() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert granted(role["rules"]) >= OPERATOR_NEEDS
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "kiln-system" for b in bindings)
    # Cluster-wide, only kopf's reads of CRDs and namespaces remain.
    cluster_rules = granted(one(docs, "ClusterRole", "kiln-operator")["rules"])
    assert cluster_rules == {
        (group, resource, verb)
        for group, resource in (
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("", "namespaces"),
        )
        for verb in ("get", "list", "watch")
    }


@pytest.mark.parametrize(
    "values",
    [{}, {"watchNamespaces": ["team-a"]}],
    ids=["cluster-wide", "namespaced"],
)
def test_no_rule_uses_a_wildcard(values: dict[str, Any]) -> None:
    for doc in render(values):
        for rule in doc.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)


def test_aggregated_roles_extend_the_built_in_roles(default: list[dict[str, Any]]) -> None:
    edit = one(default, "ClusterRole", "kiln-edit")
    view = one(default, "ClusterRole", "kiln-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for info in ALL_KINDS:
        assert ("kiln.dev", info.plural, "create") in granted(edit["rules"])
        assert ("kiln.dev", info.plural, "list") in granted(view["rules"])
    assert not {verb for _, _, verb in granted(view["rules"])} - {"get", "list", "watch"}


def test_no_rbac_is_rendered_with_rbac_create_off() -> None:
    docs = render({"rbac": {"create": False}})
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & set(kinds(docs))


def test_an_existing_service_account_must_be_named() -> None:
    result = template({"serviceAccount": {"create": False}}, check=False)
    assert result.returncode != 0
    assert "serviceAccount.name must name an existing ServiceAccount" in result.stderr
    docs = render({"serviceAccount": {"create": False, "name": "platform-kiln"}})
    assert "ServiceAccount" not in kinds(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-kiln"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-kiln"


# -- the approval policy ------------------------------------------------------------------


def test_approval_policy_needs_an_api_the_cluster_serves(default: list[dict[str, Any]]) -> None:
    assert "ValidatingAdmissionPolicy" not in kinds(default)


@pytest.mark.parametrize(
    ("api", "version"),
    [
        (V1_POLICY, "admissionregistration.k8s.io/v1"),
        (V1BETA1_POLICY, "admissionregistration.k8s.io/v1beta1"),
    ],
    ids=["v1", "v1beta1"],
)
def test_approval_policy_uses_the_api_version_the_cluster_serves(
    api: tuple[str, str], version: str
) -> None:
    docs = render({}, *api)
    policy = one(docs, "ValidatingAdmissionPolicy")
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert policy["apiVersion"] == binding["apiVersion"] == version
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {
            "apiGroups": ["kiln.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["modelversions"],
        }
    ]


def test_approval_policy_names_the_configured_approvers() -> None:
    docs = render(
        {"approval": {"groups": ["ml-leads"], "users": ["alice@example.com"]}}, *V1_POLICY
    )
    variables = {
        v["name"]: v["expression"]
        for v in one(docs, "ValidatingAdmissionPolicy")["spec"]["variables"]
    }
    assert yaml.safe_load(variables["approvers"]) == ["ml-leads"]
    assert yaml.safe_load(variables["approverUsers"]) == ["alice@example.com"]


def test_approval_policy_can_be_turned_off() -> None:
    docs = render({"approval": {"policy": {"enabled": False}}}, *V1_POLICY)
    assert "ValidatingAdmissionPolicy" not in kinds(docs)


# -- values.schema.json -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces.0: Does not match pattern"),
        ({"replicas": -1}, "replicas: Must be greater than or equal to 0"),
        ({"replicas": "two"}, "replicas: Invalid type. Expected: integer, given: string"),
        (
            {"operator": {"logFormat": "yaml"}},
            "operator.logFormat: operator.logFormat must be one of",
        ),
        ({"operator": {"workers": 100}}, "operator.workers: Must be less than or equal to 64"),
        ({"operator": {"resyncSeconds": 0}}, "operator.resyncSeconds: Must be greater than 0"),
        ({"crds": {"install": "yes"}}, "crds.install: Invalid type. Expected: boolean"),
        (
            {"accelerators": {"nvidia-h100": {}}},
            "accelerators.nvidia-h100: Must have at least 1 properties",
        ),
        (
            {"accelerators": {"nvidia-h100": {"gpu": 1}}},
            "accelerators.nvidia-h100.gpu: Invalid type",
        ),
        ({"image": {"digest": "latest"}}, "image.digest: Does not match pattern"),
        (
            {"modelServer": {"image": ""}},
            "modelServer.image: String length must be greater than or equal to 1",
        ),
        ({"watchNamespace": ["a"]}, "Additional property watchNamespace is not allowed"),
        ({"rbac": {"aggregate": True}}, "rbac: Additional property aggregate is not allowed"),
        (
            {"modelServer": {"imagePullSecrets": ["Reg_Cred"]}},
            "modelServer.imagePullSecrets.0: Does not match pattern",
        ),
        (
            {"monitoring": {"prometheusRule": {"driftFor": "half an hour"}}},
            "monitoring.prometheusRule.driftFor: Does not match pattern",
        ),
    ],
    ids=lambda case: str(case) if isinstance(case, str) else None,
)
def test_schema_refuses_bad_values_with_their_path(values: dict[str, Any], message: str) -> None:
    result = template(values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr

"""dist/install.yaml, the ``kubectl apply`` install, is the chart rendered, current, and runs
the operator the way a restricted namespace demands.

Covers: dist/install.yaml and dist/approval-policy.yaml equal a fresh render of the chart
(``make chart``, with the real helm); the manifest creates its restricted namespace first
and puts everything namespaced in it; the CRDs are kept on a Helm uninstall and equal
crds/; the operator runs non-root and read-only, watching every namespace, with rights on
every Kiln kind and its status; the approval policy is separate (v1, Kubernetes 1.30+);
there is no second, hand-kept copy of the installation (operator/deploy is gone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.api.kinds import ALL_KINDS
from tests.support.helm import require_helm
from tests.unit.chart.test_chart_generated import STALE, generate

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "dist" / "install.yaml"
APPROVAL = ROOT / "dist" / "approval-policy.yaml"


@pytest.fixture(scope="module")
def installed() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(INSTALL.read_text()) if doc]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_install_manifests_are_the_chart_rendered_now() -> None:
    require_helm()
    for path, text in generate.expected_manifests().items():
        assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `make chart`"
        assert path.read_text(encoding="utf-8") == text, f"{path.relative_to(ROOT)} {STALE}"


def test_install_manifest_creates_its_restricted_namespace_first(
    installed: list[dict[str, Any]],
) -> None:
    namespace = installed[0]
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["name"] == "kiln-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    namespaced = [d for d in installed if d["kind"] in {"ServiceAccount", "Deployment", "Service"}]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"kiln-system"}
    binding = _one(installed, "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "kiln-system"


def test_install_manifest_holds_the_generated_crds(installed: list[dict[str, Any]]) -> None:
    crds = {d["metadata"]["name"]: d for d in installed if d["kind"] == "CustomResourceDefinition"}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        generated = yaml.safe_load(path.read_text())
        assert crds[generated["metadata"]["name"]]["spec"] == generated["spec"]
    assert len(crds) == len(ALL_KINDS)


def test_operator_runs_non_root_read_only_without_privileges(
    installed: list[dict[str, Any]],
) -> None:
    pod = _one(installed, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--all-namespaces" in container["args"]


def test_operator_may_manage_every_kiln_kind_and_its_status(
    installed: list[dict[str, Any]],
) -> None:
    operator_role = next(
        d
        for d in installed
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "kiln-operator"
    )
    granted = {
        (group, resource, verb)
        for rule in operator_role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for info in ALL_KINDS:
        assert ("kiln.dev", info.plural, "watch") in granted
        assert ("kiln.dev", f"{info.plural}/status", "patch") in granted
    assert ("batch", "jobs", "create") in granted


def test_approval_policy_is_a_separate_v1_manifest() -> None:
    docs = [d for d in yaml.safe_load_all(APPROVAL.read_text()) if d]
    assert [d["kind"] for d in docs] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert {d["apiVersion"] for d in docs} == {"admissionregistration.k8s.io/v1"}


def test_there_is_no_hand_kept_copy_of_the_installation() -> None:
    assert not (ROOT / "operator" / "deploy").exists()
